"""One reconcile pass for one policy's target: observe → evaluate → plan → guard → act → record.

The pass is level-based: it re-reads signals and, when there is a breach, the
resource itself every time. What it must remember between passes — the last known
verdict of each objective, the actions taken, the one-shot steps used in the current
breach — lives in :class:`TargetMemory`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from controller.audit.log import AuditSink, Kind, Record
from controller.audit.replay import remember_action
from controller.clock import Clock
from controller.core import guards
from controller.core.evaluate import evaluate
from controller.core.plan import ONE_SHOT_ACTIONS, NoProposal, nothing_to_do, plan
from controller.core.settle import landed
from controller.memory import TargetMemory
from controller.model import (
    ActionRecord,
    Decision,
    DecisionKind,
    Mode,
    Observation,
    Outcome,
    OutcomeKind,
    Proposal,
    Quality,
    Verdict,
    VerdictState,
)
from controller.policy.schema import Objective, Policy
from controller.registry import Registry
from controller.telemetry import Metrics

log = structlog.get_logger("remediator.reconcile")

_SEVERITY = {
    VerdictState.OK: 0,
    VerdictState.RECOVERING: 1,
    VerdictState.UNKNOWN: 2,
    VerdictState.BREACH: 3,
}


@dataclass(frozen=True)
class PassResult:
    """What a pass saw and did, for the loop, the CLI and tests."""

    policy: str
    verdicts: tuple[Verdict, ...]
    decision: Decision | None
    outcome: Outcome | None
    reason: str
    intent: int | None = None  # the seq of the intent line written before a live action

    @property
    def worst(self) -> VerdictState:
        return worst(self.verdicts)


def worst(verdicts: tuple[Verdict, ...]) -> VerdictState:
    if not verdicts:
        return VerdictState.UNKNOWN
    return max((v.state for v in verdicts), key=_SEVERITY.__getitem__)


class Reconciler:
    """Runs passes for one policy; owns that target's memory."""

    def __init__(
        self,
        policy: Policy,
        registry: Registry,
        clock: Clock,
        mode: Mode,
        audit: AuditSink,
        metrics: Metrics,
        memory: TargetMemory | None = None,
        open_intent: dict[str, Any] | None = None,
    ) -> None:
        self.policy = policy
        self.memory = memory or TargetMemory()
        self.open_intent = open_intent  # an action a crash interrupted, to settle first
        self._registry = registry
        self._clock = clock
        self._mode = mode
        self._audit = audit
        self._metrics = metrics

    def register(self) -> None:
        """Tell each signal source about this target before the first pass."""
        for kind, objectives in self._by_signal().items():
            self._registry.signal(kind).register(self.policy.target, objectives)

    def _by_signal(self) -> dict[str, list[Objective]]:
        grouped: dict[str, list[Objective]] = {}
        for objective in self.policy.objectives:
            grouped.setdefault(objective.signal.type, []).append(objective)
        return grouped

    async def observe(self) -> dict[str, Observation]:
        now = self._clock.now()
        observations: dict[str, Observation] = {}
        for kind, objectives in self._by_signal().items():
            source = self._registry.signal(kind)
            observations.update(await source.observe(self.policy.target, objectives, now))
        return observations

    async def reconcile(self) -> PassResult:
        """One pass. Raises only when the resource cannot be read (the loop backs off)."""
        reconcile_id = uuid.uuid4().hex[:12]
        with structlog.contextvars.bound_contextvars(
            reconcile_id=reconcile_id, policy=self.policy.name
        ):
            return await self._pass(reconcile_id)

    async def settle(self) -> None:
        """Close an interrupted action by reading the resource: never by running it again."""
        intent = self.open_intent
        if intent is None:
            return
        state = await self._registry.read_state(self.policy.target.type)(self.policy.target)
        action = str(intent["action"])
        result = landed(action, intent.get("after") or {}, state)
        outcome = OutcomeKind.SUCCEEDED if result else OutcomeKind.FAILED
        why = {
            True: "the resource shows the change",
            False: "the resource does not show the change",
            None: "the resource cannot show whether it ran; counted as failed",
        }[result]
        fields = {k: v for k, v in intent.items() if k not in ("seq", "prev", "hash")}
        fields.update(
            ts=self._clock.now(),
            kind="result",
            outcome=outcome.value,
            after=state.summary(),
            reason=f"settled after an interruption: {why}",
            intent=intent["seq"],
        )
        self._audit.append(Record.model_validate(fields))
        remember_action(self.memory, {**fields, "ts": fields["ts"].isoformat()})
        self.open_intent = None
        log.warning("settled an interrupted action", action=action, outcome=outcome.value)

    async def _pass(self, reconcile_id: str) -> PassResult:
        policy, memory = self.policy, self.memory
        await self.settle()
        observations = await self.observe()
        now = self._clock.now()
        verdicts = []
        for objective in policy.objectives:
            observation = observations.get(objective.name) or Observation(
                policy.target.resource_id, objective.signal.metric, (), Quality.MISSING, now
            )
            self._metrics.observations.labels(objective.signal.type, observation.quality).inc()
            verdict = evaluate(objective, observation, now, memory.last_known.get(objective.name))
            self._metrics.verdict_state(policy.name, objective.name, verdict.state)
            verdicts.append(verdict)
        changed = any(
            memory.last_known.get(v.objective) != v.state
            for v in verdicts
            if v.state is not VerdictState.UNKNOWN
        )
        for v in verdicts:
            if v.state is not VerdictState.UNKNOWN:
                memory.last_known[v.objective] = v.state
        if all(v.state is VerdictState.OK for v in verdicts):
            memory.episode_steps.clear()
        result = await self._decide(tuple(verdicts), now, reconcile_id)
        if result.intent is not None:
            self._record(result, now, reconcile_id, "result")
        elif result.decision is not None:
            self._record(result, now, reconcile_id, "decision")
        elif changed or result.reason != memory.last_reason:
            self._record(result, now, reconcile_id, "verdict")
        memory.last_reason = result.reason
        return result

    async def _decide(
        self, verdicts: tuple[Verdict, ...], now: datetime, reconcile_id: str
    ) -> PassResult:
        policy, memory = self.policy, self.memory
        idle = nothing_to_do(policy, verdicts)
        if idle is not None:
            return PassResult(policy.name, verdicts, None, None, idle.reason)
        state = await self._registry.read_state(policy.target.type)(policy.target)
        proposal = plan(policy, verdicts, state, memory.episode_steps)
        if isinstance(proposal, NoProposal):
            return PassResult(policy.name, verdicts, None, None, proposal.reason)
        decision = guards.check(policy, proposal, memory.history, now, self._mode)
        self._metrics.decisions.labels(proposal.action, decision.kind, decision.guard or "").inc()
        if decision.kind is DecisionKind.DENY:
            return PassResult(policy.name, verdicts, decision, None, decision.reason)
        intent: int | None = None
        if self._mode is Mode.DRY_RUN:
            outcome = Outcome(OutcomeKind.WOULD_RUN, proposal.before, proposal.after)
        else:
            # Fail closed: the intent is on disk before the resource is touched, or
            # AuditUnavailable propagates and nothing runs.
            planned = PassResult(policy.name, verdicts, decision, None, decision.reason)
            intent = self._record(planned, now, reconcile_id, "intent")
            outcome = await self._act(proposal.action, proposal)
        memory.history.append(ActionRecord(now, proposal.action, outcome.kind))
        if proposal.action in ONE_SHOT_ACTIONS:
            memory.episode_steps.add(proposal.step_index)
        self._metrics.actions.labels(proposal.action, outcome.kind).inc()
        return PassResult(policy.name, verdicts, decision, outcome, decision.reason, intent)

    async def _act(self, action: str, proposal: Proposal) -> Outcome:
        apply = self._registry.apply(self.policy.target.type, action)
        try:
            return await apply(self.policy.target, proposal)
        except Exception as exc:  # the outcome is recorded; the loop keeps going
            log.warning("action failed", action=action, error=repr(exc))
            return Outcome(OutcomeKind.FAILED, proposal.before, proposal.before, repr(exc)[:500])

    def _record(self, result: PassResult, now: datetime, reconcile_id: str, kind: Kind) -> int:
        decision, outcome = result.decision, result.outcome
        proposal = decision.proposal if decision else None
        record = Record(
            ts=now,
            kind=kind,
            policy=self.policy.name,
            target=self.policy.target.resource_id,
            verdict=result.worst.value,
            verdicts=[v.as_dict() for v in result.verdicts],
            action=proposal.action if proposal else None,
            params=dict(proposal.params) if proposal else {},
            decision=decision.kind.value if decision else None,
            reason=result.reason,
            guard=decision.guard if decision else None,
            mode=self._mode.value,
            outcome=outcome.kind.value if outcome else None,
            before=dict(outcome.before if outcome else (proposal.before if proposal else {})),
            after=dict(outcome.after if outcome else {}),
            reconcile_id=reconcile_id,
            step=proposal.step_index if proposal else None,
            intent=result.intent if kind == "result" else None,
        )
        seq = self._audit.append(record)
        log.info(
            kind,
            verdict=record.verdict,
            action=record.action,
            decision=record.decision,
            outcome=record.outcome,
            reason=record.reason,
        )
        return seq
