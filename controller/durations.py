"""Human durations (``30s``, ``5m``, ``1h30m``, ``1d``) for policies and settings."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Longer than any cooldown or window can mean; small enough that clock + duration (and
# the few multiples of it the controller takes) stay far inside datetime's range.
MAX_DURATION = timedelta(days=3650)
_EXAMPLE = "a duration such as 30s, 5m or 1h"


def parse_duration(text: object) -> timedelta:
    """Parse ``1h30m``-style text. A bare number is refused: seconds or minutes, it is
    a guess either way. Raises ValueError with why."""
    if isinstance(text, timedelta):
        seconds = text.total_seconds()
    elif isinstance(text, int | float) and not isinstance(text, bool):
        raise ValueError(
            f"a duration needs a unit: write {text:g}s (or m, h, d), got a bare number {text!r}"
        )
    elif isinstance(text, str):
        compact = text.strip().replace(" ", "")
        parts = _PART.findall(compact)
        if not compact or "".join(n + u for n, u in parts) != compact:
            if re.fullmatch(r"\d+(?:\.\d+)?", compact):
                raise ValueError(f"a duration needs a unit: write {compact}s (or m, h, d)")
            raise ValueError(f"expected {_EXAMPLE}, got {text!r}")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise ValueError(f"expected {_EXAMPLE}, got {text!r}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {text!r}")
    if not seconds <= MAX_DURATION.total_seconds():  # also NaN and infinity
        raise ValueError(f"a duration may be at most {format_duration(MAX_DURATION)}, got {text}")
    return text if isinstance(text, timedelta) else timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest ``1h30m``-style spelling of ``delta``."""
    total = int(delta.total_seconds())
    if total == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)
