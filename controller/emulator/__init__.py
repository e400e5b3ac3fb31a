"""A fake Azure (Container Apps ARM + Azure Monitor metrics) with a workload model.

It speaks JSON on the wire the way the official async SDK clients expect, so the
controller's real clients can be pointed at ``http://127.0.0.1:PORT`` in tests and
demos. It shares no code with the controller.
"""

from .app import Emulator
from .config_writer import write_settings
from .faults import FAULT_KINDS
from .scenario import Scenario, ScenarioError, list_scenarios, load_scenario

__all__ = [
    "FAULT_KINDS",
    "Emulator",
    "Scenario",
    "ScenarioError",
    "list_scenarios",
    "load_scenario",
    "write_settings",
]
