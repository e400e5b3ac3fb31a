"""A fake Azure (Container Apps ARM + Azure Monitor metrics) with a workload model.

It speaks JSON on the wire the way the official async SDK clients expect, so the
controller's real clients can be pointed at ``http://127.0.0.1:PORT`` in tests and
demos. It shares no code with the controller.
"""

from typing import TYPE_CHECKING, Any

from .config_writer import write_settings
from .faults import FAULT_KINDS
from .scenario import Scenario, ScenarioError, list_scenarios, load_scenario

if TYPE_CHECKING:
    from .app import Emulator


def __getattr__(name: str) -> Any:
    """The server (aiohttp's web app and every route) is imported when first asked for:
    the command line lists and reads scenarios in every command, serves them in few."""
    if name == "Emulator":
        from .app import Emulator

        return Emulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FAULT_KINDS",
    "Emulator",
    "Scenario",
    "ScenarioError",
    "list_scenarios",
    "load_scenario",
    "write_settings",
]
