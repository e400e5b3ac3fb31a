"""The policy language as a JSON Schema, for editors that check YAML as it is typed.

Generated from the pydantic models, so it cannot drift from what ``validate`` accepts,
then adjusted where pydantic's rendering would reject a valid policy: durations are
written ``5m`` (not ISO 8601), a signal without ``type`` is an Azure Monitor metric,
and a ladder step names exactly one action. Checks that span keys (bounds against
rungs, one owner per target …) stay with ``remediator validate``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from controller.durations import format_duration
from controller.policy.schema import Policy

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "urn:remediator:policy:v1"
# parse_duration's grammar: one or more NUMBER UNIT parts (spaces ignored); a bare number
# is refused (seconds or minutes would be a guess)
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)\s*)+$"


class _PolicySchema(GenerateJsonSchema):
    """Durations as policies spell them: ``30s``, ``5m``, ``1h30m``, always with a unit."""

    def timedelta_schema(self, schema: core_schema.TimedeltaSchema) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "a duration such as 30s, 5m, 1h30m or 1d (a unit is required)",
        }

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return format_duration(dft)
        return super().encode_default(dft)


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of one policy document (draft 2020-12)."""
    body = Policy.model_json_schema(by_alias=True, schema_generator=_PolicySchema)
    defs: dict[str, Any] = body.get("$defs", {})
    # `signal: {metric: …}` defaults its type; a discriminator would demand it
    objective = defs["Objective"]["properties"]["signal"]
    objective.pop("discriminator", None)
    defs["Step"].update(minProperties=1, maxProperties=1)
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        **body,
        "title": "Remediator policy (remediator/v1)",
        "description": "One target, its objectives, the remediation ladder and its guards.",
    }
