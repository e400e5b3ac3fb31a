"""JSON Merge Patch (RFC 7396), which is what ARM PATCH bodies mean.

Objects merge key by key, ``null`` deletes, and anything else (arrays included)
replaces whole: a PATCH that sends ``containers`` must send the full list.
"""

from __future__ import annotations

import copy
from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """Return ``target`` with ``patch`` applied; neither argument is modified."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
