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
MIN_INTERVAL = timedelta(seconds=1)


def _at_least_a_second(delta: timedelta) -> timedelta:
    if delta < MIN_INTERVAL:
        seconds = delta.total_seconds()
        raise ValueError(
            f"must be at least 1s (each pass reads over the network), got {seconds:g}s"
        )
    return delta


# how often a target is reconciled: finer than a second would hammer the APIs it reads
Interval = Annotated[PositiveDuration, AfterValidator(_at_least_a_second)]


class Strict(BaseModel):
    """Unknown keys are errors; YAML spells fields in camelCase."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        allow_inf_nan=False,  # a threshold of NaN never breaches, one of inf always does
    )
