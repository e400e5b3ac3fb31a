"""Remediator: guarded, automated remediation of Azure workloads from SLO policies.

The public surface is what plug-in authors and embedders need: the policy language,
settings, the registry they add sources and actions to, the plain data that flows
through a pass, and the clocks. Everything else is internal and may change.
"""

from controller.clock import Clock, ScaledClock, SystemClock, VirtualClock
from controller.config import Settings, SettingsError, load_settings
from controller.model import (
    ActionRecord,
    ContainerSize,
    Decision,
    DecisionKind,
    Mode,
    Observation,
    Outcome,
    OutcomeKind,
    Proposal,
    Quality,
    ResourceState,
    Sample,
    Verdict,
    VerdictState,
)
from controller.policy.loader import LoadedPolicy, PolicyError, Problem, load_policies
from controller.policy.schema import Objective, Policy, Target
from controller.registry import ApplyAction, ReadState, Registry, SignalSource, UnknownPlugin

__all__ = [
    "ActionRecord",
    "ApplyAction",
    "Clock",
    "ContainerSize",
    "Decision",
    "DecisionKind",
    "LoadedPolicy",
    "Mode",
    "Objective",
    "Observation",
    "Outcome",
    "OutcomeKind",
    "Policy",
    "PolicyError",
    "Problem",
    "Proposal",
    "Quality",
    "ReadState",
    "Registry",
    "ResourceState",
    "Sample",
    "ScaledClock",
    "Settings",
    "SettingsError",
    "SignalSource",
    "SystemClock",
    "Target",
    "UnknownPlugin",
    "Verdict",
    "VerdictState",
    "VirtualClock",
    "load_policies",
    "load_settings",
]
