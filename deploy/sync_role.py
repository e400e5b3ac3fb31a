"""Write Remediator's custom role into deploy/ from ``controller.permissions.role_actions()``.

    .venv/bin/python deploy/sync_role.py          # rewrite the files
    .venv/bin/python deploy/sync_role.py --check  # exit 1 if they differ (what the test checks)

Two places carry the role's actions: ``role-definition.json`` (for ``az role definition
create``) and the ``remediatorActions`` block of ``bicep/identity-and-role.bicep``. Both must
equal the allow-list the controller is tested against, exactly: no wildcard, no delete.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent
sys.path.insert(0, str(DEPLOY.parent))

from controller.permissions import role_actions  # noqa: E402

ROLE_JSON = DEPLOY / "role-definition.json"
BICEP = DEPLOY / "bicep" / "identity-and-role.bicep"
BLOCK = re.compile(r"(var remediatorActions = \[\n)(.*?)(\n\]\n// END role_actions)", re.S)


def role_definition() -> dict[str, object]:
    return {
        "Name": "Remediator operator",
        "IsCustom": True,
        "Description": (
            "Remediator: read signals and resources; scale, resize, restart and roll back "
            "Container Apps; change Cosmos DB throughput; scale and reboot Azure Cache for "
            "Redis. No delete, no wildcard. Generated from `remediator permissions` by "
            "deploy/sync_role.py."
        ),
        "Actions": role_actions(),
        "NotActions": [],
        "DataActions": [],
        "NotDataActions": [],
        "AssignableScopes": ["/subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}"],
    }


def role_json() -> str:
    return json.dumps(role_definition(), indent=2) + "\n"


def bicep_text(current: str) -> str:
    lines = "\n".join(f"  '{action}'" for action in role_actions())
    updated, count = BLOCK.subn(lambda m: m.group(1) + lines + m.group(3), current)
    if count != 1:
        raise SystemExit(f"{BICEP}: the remediatorActions block was not found")
    return updated


def main(argv: list[str]) -> int:
    check = "--check" in argv
    wanted = {ROLE_JSON: role_json(), BICEP: bicep_text(BICEP.read_text(encoding="utf-8"))}
    stale = [path for path, text in wanted.items() if path.read_text(encoding="utf-8") != text]
    if check:
        for path in stale:
            print(f"{path.relative_to(DEPLOY.parent)}: differs from role_actions()")
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path], encoding="utf-8")
        print(f"wrote {path.relative_to(DEPLOY.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
