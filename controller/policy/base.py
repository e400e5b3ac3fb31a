"""What every policy model shares: strict camelCase models and duration fields."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict
from pydantic.alias_generators import to_camel

from controller.durations import parse_duration

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _positive(delta: timedelta) -> timedelta:
    if delta <= timedelta(0):
        raise ValueError("must be longer than zero")
    return delta


PositiveDuration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]


class Strict(BaseModel):
    """Unknown keys are errors; YAML spells fields in camelCase."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )
