"""Duration and timestamp parsing shared by the scenario loader and the HTTP routes.

Two duration dialects meet here: the short human form used in scenario files
(``30s``, ``5m``, ``1h30m``) and the ISO 8601 form Azure puts on the wire (``PT1M``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_SHORT = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")
_ISO = re.compile(
    r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)

MINUTE = timedelta(minutes=1)


def parse_duration(text: str) -> timedelta:
    """Parse ``30s`` / ``5m`` / ``1h30m``; raise ValueError otherwise."""
    match = _SHORT.match(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"bad duration {text!r} (expected e.g. 30s, 5m, 1h, 1h30m)")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Render a timedelta in the short form (``1h30m``, ``30s``); inverse of parse_duration."""
    total = value.total_seconds()
    if total <= 0:
        return "0s"
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{int(hours)}h")
    if minutes:
        parts.append(f"{int(minutes)}m")
    if seconds:
        parts.append(f"{seconds:g}s")
    return "".join(parts)


def parse_iso_duration(text: str) -> timedelta:
    """Parse the ISO 8601 durations Azure uses (``PT1M``, ``PT300.0S``, ``P1D``)."""
    match = _ISO.match(text.strip())
    if match is None or not any(match.groups()):
        raise ValueError(f"bad ISO 8601 duration {text!r}")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def format_iso_duration(value: timedelta) -> str:
    """Render a whole-minute-ish timedelta as Azure does (``PT1M``, ``PT1H``, ``PT1H30M``)."""
    total = int(value.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    out = "PT"
    if hours:
        out += f"{hours}H"
    if minutes:
        out += f"{minutes}M"
    if seconds or out == "PT":
        out += f"{seconds}S"
    return out


def parse_datetime(text: str) -> datetime:
    """Parse an ISO timestamp; naive values are taken as UTC."""
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_datetime(value: datetime) -> str:
    """``2026-01-01T00:04:00Z`` (fractions kept only when present)."""
    value = value.astimezone(UTC)
    text = value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def floor_minute(value: datetime) -> datetime:
    """The start of the minute containing ``value``."""
    return value.replace(second=0, microsecond=0)
