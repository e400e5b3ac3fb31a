"""Starting the command loads no Azure SDK it may not need: each management package, the
storage SDK (leases) and azure-identity are imported with their first client, so a
controller watching only Container Apps through batched metrics carries none of the
others (together ~50 MiB of its resident memory)."""

from __future__ import annotations

import json
import subprocess
import sys

LAZY = (
    "azure.identity",
    "azure.storage.blob",
    "azure.mgmt.appcontainers",
    "azure.mgmt.cosmosdb",
    "azure.mgmt.redis",
    "azure.mgmt.monitor",
    "azure.mgmt.resource",
    "azure.mgmt.resourcegraph",
    "azure.monitor.query",
)


def loaded_after(statement: str) -> list[str]:
    """The modules a fresh interpreter holds after ``statement``."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules: list[str] = json.loads(out.stdout)
    return modules


def test_the_command_and_the_runtime_import_no_azure_sdk_before_its_first_client() -> None:
    modules = loaded_after("import controller.cli, controller.runtime, controller.plugins")
    heavy = sorted({m for m in modules for p in LAZY if m == p or m.startswith(p + ".")})
    assert heavy == []
    assert "controller.runtime" in modules  # the statement ran


def test_the_emulator_credential_needs_no_azure_identity() -> None:
    modules = loaded_after(
        "from controller.azure.credentials import make_credential\nmake_credential('emulator')"
    )
    assert not [m for m in modules if m.startswith("azure.identity")]


def test_the_command_imports_the_emulator_demo_and_backtest_only_for_their_subcommands() -> None:
    modules = loaded_after("import controller.cli")
    for command_only in (
        "controller.emulator.app",
        "controller.demo",
        "controller.backtest.commands",
        "controller.backtest.report",
    ):
        assert command_only not in modules
    assert "controller.emulator.scenario" in modules  # scenarios are listed in --help
