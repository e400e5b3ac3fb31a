"""One reconcile pass for one policy's target.

settle an interrupted action → observe → evaluate → judge the last action → plan →
guard → act → record.

The pass is level-based: it re-reads signals and, when there is a breach, the
resource itself every time. What it must remember between passes lives in
:class:`~controller.memory.TargetMemory`, changed here and by the audit replay through
the same functions, and every change of it is written to the audit log first.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import anyio
import structlog

from controller import capacity
from controller.audit.log import AuditSink, AuditUnavailable, Kind, Record
from controller.audit.replay import NEEDS_HUMAN, baseline_of
from controller.azure import retry
from controller.azure.clients import WriteRefused
from controller.clock import Clock
from controller.core import breaker as breakers
from controller.core import guards, step_back
from controller.core.evaluate import evaluate
from controller.core.plan import REVISION_SCOPE, NoProposal, nothing_to_do, plan
from controller.core.settle import evidence, landed, view
from controller.core.verify import judge
from controller.durations import format_duration
from controller.fleet import Fleet
from controller.memory import (
    ApprovalRequest,
    PendingVerification,
    TargetMemory,
    breaker_json,
    target_key,
)
from controller.model import (
    Decision,
    DecisionKind,
    Efficacy,
    Mode,
    Observation,
    Outcome,
    OutcomeKind,
    Proposal,
    Quality,
    ResourceState,
    Verdict,
    VerdictState,
)
from controller.policy.schema import Objective, Policy
from controller.registry import Registry
from controller.telemetry import Metrics
from controller.track import Point, Track

log = structlog.get_logger("remediator.reconcile")

ACTION_DEADLINE = 300.0  # seconds an action may run, shielded from shutdown

PauseCheck = Callable[[ResourceState], Awaitable[str | None]]  # why acting is paused, if it is
# a target's intents still without a result, oldest first: given, or asked for at its first pass
OpenIntents = Sequence[dict[str, Any]] | Callable[[], Sequence[dict[str, Any]]]

_SEVERITY = {
    VerdictState.OK: 0,
    VerdictState.PENDING: 1,
    VerdictState.RECOVERING: 2,
    VerdictState.UNKNOWN: 3,
    VerdictState.BREACH: 4,
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
    efficacy: Efficacy | None = None  # the last action's judgement, when made in this pass
    breaker_opened: str | None = None  # the action whose breaker this pass's failure opened
    needs_human: bool = False  # a breach no rung can fix: watch-only, or the ladder used up
    target: str = ""  # the resource: a selector policy has many

    @property
    def worst(self) -> VerdictState:
        return worst(self.verdicts)

    @property
    def failed_signals(self) -> tuple[Verdict, ...]:
        """The objectives whose signal could not be read (each verdict's ``error`` says
        why): their state is unknown, and "nothing to do" may only mean "could not see"."""
        return tuple(v for v in self.verdicts if v.error is not None)


def with_failures(reason: str, verdicts: Iterable[Verdict]) -> str:
    """A pass's reason with the cause of each failed signal after it, so the plan, the
    log, the audit line and the status page say why an objective is unknown."""
    failed = [f"{v.objective}: signal failed: {v.error}" for v in verdicts if v.error is not None]
    return "; ".join([reason, *failed]) if failed else reason


_BREAKER_VALUE = {
    breakers.BreakerState.CLOSED: 0,
    breakers.BreakerState.HALF_OPEN: 1,
    breakers.BreakerState.OPEN: 2,
}


def worst(verdicts: tuple[Verdict, ...]) -> VerdictState:
    return most_severe(v.state for v in verdicts)


def most_severe(states: Iterable[VerdictState]) -> VerdictState:
    """Breach over unknown over recovering over pending over ok; unknown when empty."""
    return max(states, key=_SEVERITY.__getitem__, default=VerdictState.UNKNOWN)


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
        open_intents: OpenIntents = (),
        paused: PauseCheck | None = None,
        decision_ttl: timedelta = timedelta(minutes=1),
        fleet: Fleet | None = None,
        standby: Callable[[], str | None] | None = None,
        write_check: Callable[[], str | None] | None = None,
        escalate: Callable[[dict[str, Any]], None] | None = None,
        answers: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
        action_deadline: float = ACTION_DEADLINE,
        key: str | None = None,
        succeeds: Reconciler | None = None,
        fleet_audit: AuditSink | None = None,
    ) -> None:
        self.policy = policy
        # the target's name in schedules and status: the policy's own name when it names
        # one resource; a selector policy's targets add their resource
        self.key = key or policy.name
        self.memory = memory or TargetMemory()
        # actions a crash (or an audit write that failed after the action) left without a
        # result, oldest first: each is settled, by reading the resource, before anything else
        self.open_intents: list[dict[str, Any]] = []
        # open intents whose action memory already counts (made when the first is: rare)
        self._noted: set[int] | None = None
        # taken at the first pass, not now: a replaced reconciler's action in flight (the
        # loop lets it finish first) may still add to what is open, or close it
        self._inherit: tuple[OpenIntents, Reconciler | None] | None = (open_intents, succeeds)
        self._last_intent: dict[str, Any] = {}  # the last intent written, as stored
        self._read_in_pass: ResourceState | None = None
        self._registry = registry
        self._clock = clock
        self._mode = mode
        self._audit = audit
        # where the fleet's own lines go (fail static): with shards, the replica's log,
        # not the partition's (a partition's next owner must not inherit a hold)
        self._fleet_audit = fleet_audit or audit
        self._metrics = metrics
        self._paused = paused
        self._ttl = decision_ttl  # two intervals: older decisions are dropped, not run
        self._fleet = fleet
        self._standby = standby  # why this replica may not act (not the leader), if so
        self._write_check = write_check  # why a write may not be sent now, asked right before
        self._notify = escalate  # queues a webhook POST; never blocks
        self._answers = answers  # operators' answers to approval requests, by request id
        self._action_deadline = action_deadline
        # for the status page: the resource as last read, and the recent passes
        self.state: ResourceState | None = None
        self.state_at: datetime | None = None
        self.track = Track()
        self._capacity: float | None = None

    def register(self) -> None:
        """Tell each signal source about this target before the first pass."""
        for kind, objectives in self._by_signal().items():
            self._registry.signal(kind).register(self.policy.target, objectives)

    def unregister(self) -> None:
        """The target is gone (or replaced): its signal sources stop reading it."""
        for kind, objectives in self._by_signal().items():
            self._registry.signal(kind).unregister(self.policy.target, objectives)

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
        """One pass. Raises when the resource cannot be read or the audit cannot be written
        (the loop backs off); nothing is changed in either case."""
        reconcile_id = uuid.uuid4().hex[:12]
        # bound and reset by token: ``bound_contextvars`` copies the whole context to
        # save what it replaces, a cost every pass of every target paid
        tokens = structlog.contextvars.bind_contextvars(
            reconcile_id=reconcile_id,
            policy=self.policy.name,
            target=self.policy.target.resource_id,
        )
        try:
            result = await self._pass(reconcile_id)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)
        return replace(result, target=self.policy.target.resource_id)

    @property
    def target(self) -> str:
        return self.policy.target.resource_id

    async def read_state(self) -> ResourceState:
        """The target as Azure has it now."""
        state = await self._registry.read_state(self.policy.target.type)(self.policy.target)
        self.state, self.state_at = state, self._clock.now()
        self._capacity = capacity.of_state(state).value
        return state

    async def settle(self) -> None:
        """Close every interrupted action by reading the resource: never by running it again.

        A settled action succeeded only if the resource shows exactly what its intent meant
        to write; otherwise it failed, and feeds the action's breaker like any failure.
        """
        self._take_open_intents()
        if not self.open_intents:
            return
        state = await self.read_state()
        while self.open_intents:
            intent = self.open_intents[0]
            later = self.open_intents[1] if len(self.open_intents) > 1 else None
            self._settle_one(intent, state, later)
            self.open_intents.pop(0)

    def _take_open_intents(self) -> None:
        """What is still open for this target: a reconciler this one replaces (a reloaded
        policy) hands over its own list, with what it already counted; otherwise what the
        log holds open for the target."""
        if self._inherit is None:
            return
        given, succeeds = self._inherit
        self._inherit = None
        if succeeds is not None:
            succeeds._take_open_intents()
            self.open_intents, self._noted = succeeds.open_intents, succeeds._noted
            return
        self.open_intents = list(given() if callable(given) else given)

    def _settle_one(
        self, intent: dict[str, Any], state: ResourceState, later: dict[str, Any] | None
    ) -> None:
        action = str(intent["action"])
        intended = intent.get("after") or intent.get("params") or {}  # older logs: params
        shown = evidence(action, intended, later.get("before") if later else None)
        shown = shown or view(action, intended, state)
        result = landed(action, intended, shown, intent.get("before") or None)
        outcome = OutcomeKind.SUCCEEDED if result else OutcomeKind.FAILED
        why = {
            True: "the resource shows the change",
            False: "the resource does not show the change",
            None: "the resource cannot show whether it ran; counted as failed",
        }[result]
        now = self._clock.now()
        step = intent.get("step")
        opened = False
        verify_at = None
        # this process already counted the action (its result line was refused): the line
        # is written now, but memory, breaker and verification are not fed a second time
        noted = self._noted is not None and intent["seq"] in self._noted
        if not noted and outcome is OutcomeKind.SUCCEEDED and isinstance(step, int) and step >= 0:
            # landed: judged after it settles, like any action (it feeds the breaker too)
            verify_at = now + self.policy.settle
            baseline = baseline_of(intent)
            watched = self.policy.escalate_only
            self.memory.pending = PendingVerification(
                action,
                step,
                now,
                verify_at,
                {k: v for k, v in baseline.items() if k not in watched},
            )
        if outcome is OutcomeKind.FAILED and not noted:
            self._metrics.efficacy.labels(self.policy.name, action, Efficacy.FAILED).inc()
            opened = self._feed_breaker(action, Efficacy.FAILED, now)
        fields = {k: v for k, v in intent.items() if k not in ("seq", "prev", "hash")}
        fields.update(
            ts=now,
            kind="result",
            outcome=outcome.value,
            after=state.summary(),
            reason=f"settled after an interruption: {why}",
            intent=intent["seq"],
            verify_at=verify_at,
            breaker=breaker_json(self.memory.breakers[action])
            if action in self.memory.breakers
            else None,
        )
        self._audit.append(Record.model_validate(fields))
        if self._noted is not None:
            self._noted.discard(intent["seq"])
        if not noted:
            self.memory.note_action(now, action, outcome, step)
            self._metrics.actions.labels(self.policy.name, action, outcome).inc()
        log.warning("settled an interrupted action", action=action, outcome=outcome.value)
        if opened:
            self._escalate(now, str(intent.get("reconcile_id", "")), (), action)

    async def _pass(self, reconcile_id: str) -> PassResult:
        policy, memory = self.policy, self.memory
        self._read_in_pass = None  # the resource as read in this pass, once
        await self.settle()
        observations = await self.observe()
        now = self._clock.now()
        verdicts = []
        for objective in policy.objectives:
            observation = observations.get(objective.name) or Observation(
                policy.target.resource_id, objective.measures, (), Quality.MISSING, now
            )
            self._metrics.observations.labels(objective.signal.type, observation.quality).inc()
            verdict = evaluate(objective, observation, now, memory.last_known.get(objective.name))
            self._metrics.verdict_state(policy.name, objective.name, verdict.state)
            verdicts.append(verdict)
        changed = memory.note_verdicts({v.objective: v.state for v in verdicts}, now)
        if self._fleet is not None:
            failing = any(o.quality is Quality.ERROR for o in observations.values())
            alarm = self._fleet.note(
                policy.target.resource_id, worst(tuple(verdicts)), failing, now
            )
            if alarm is not None:
                self._metrics.escalations.labels(policy.name, "fail-static").inc()
                self._line(
                    now,
                    reconcile_id,
                    "escalation",
                    tuple(verdicts),
                    sink=self._fleet_audit,
                    reason=alarm,
                )
                self._send("fail-static", alarm, now)
        efficacy = await self._judge(tuple(verdicts), now, reconcile_id)
        result = await self._decide(tuple(verdicts), now, reconcile_id)
        result = replace(result, reason=with_failures(result.reason, verdicts))
        if efficacy is not None:
            result = PassResult(**{**result.__dict__, "efficacy": efficacy})
        if result.intent is not None:
            self._record_result(result, now, reconcile_id)
        elif result.decision is not None:
            self._record(result, now, reconcile_id, "decision")
        elif changed or result.reason != memory.last_reason:
            self._record(result, now, reconcile_id, "verdict")
        if result.breaker_opened is not None:
            self._escalate(now, reconcile_id, result.verdicts, result.breaker_opened)
        watched = policy.escalate_only
        watched_breach = any(
            v.objective in watched and v.state is VerdictState.BREACH for v in result.verdicts
        )
        # a used-up ladder is told once the last action is judged: it may yet fix it
        exhausted = result.needs_human and memory.pending is None
        if (exhausted or watched_breach) and not memory.told_human:
            memory.told_human = True
            self._tell_human(now, reconcile_id, result)
        memory.last_reason = result.reason
        self._gauges(result, now)
        self._note_track(result, now)
        return result

    def _note_track(self, result: PassResult, now: datetime) -> None:
        values = tuple(v.value for v in result.verdicts)
        outcome = result.outcome
        if outcome is not None and outcome.kind is OutcomeKind.SUCCEEDED:
            before = capacity.plotted(outcome.before)
            if before is not None:  # the step the action made, at the pass it ran
                self.track.note(Point(now, values, before))
            self._capacity = capacity.plotted(outcome.after) or self._capacity
        self.track.note(Point(now, values, self._capacity))

    def _gauges(self, result: PassResult, now: datetime) -> None:
        """The state a dashboard shows: breakers, budgets left, the kill switch as seen."""
        self.publish(now)
        # 1 only while the kill switch is what holds this target's action back
        held = result.decision is not None and result.decision.guard == "paused"
        self._metrics.paused.set(1 if held else 0, self.policy.name)

    def publish(self, now: datetime) -> None:
        """The gauges memory alone tells (breakers, budgets left): set by every pass, and
        when the target starts, so a breaker open before a restart shows open at once."""
        policy, metrics = self.policy, self._metrics
        open_for = policy.guards.breaker.open_for
        for action, breaker in self.memory.breakers.items():
            state = breaker.state(now, open_for)
            metrics.breaker_state.labels(policy.name, action).set(_BREAKER_VALUE[state])
        spent = sum(1 for r in self.memory.history if now - r.ts < timedelta(hours=1))
        left = max(policy.guards.max_actions_per_hour - spent, 0)
        metrics.budget_remaining.set(left, "target", policy.name)
        if self._fleet is not None:
            subscription = policy.target.subscription
            tokens, overall = self._fleet.remaining(subscription, now)
            metrics.budget_remaining.set(tokens, "subscription", subscription)
            metrics.budget_remaining.set(overall, "global", "all")

    async def _judge(
        self, verdicts: tuple[Verdict, ...], now: datetime, reconcile_id: str
    ) -> Efficacy | None:
        """Judge the last action once it settled; feed its breaker; escalate an opening.

        A change that made a new revision shows only once that revision is ready: each
        pass reads whether it is, and the settle time runs again from each pass that finds
        it still provisioned."""
        pending = self.memory.pending
        if pending is None:
            return None
        if pending.action in REVISION_SCOPE and not pending.revision_ready:
            self._read_in_pass = await self.read_state()  # the decision after uses it too
            provisioning = self._read_in_pass.provisioning
            if provisioning is not None:
                due = max(pending.due, now + self.policy.settle)
                self.memory.pending = replace(pending, due=due)
                log.info("verification waits for the new revision", revision=provisioning)
                return None
            self.memory.pending = pending = replace(pending, revision_ready=True)
        if now < pending.due:
            return None
        efficacy = judge(
            self.policy.objectives,
            pending.baseline,
            verdicts,
            OutcomeKind.SUCCEEDED,
            self.policy.verification.margin,
        )
        if efficacy is None and now < pending.due + self.policy.settle:
            return None  # the data cannot tell yet; give it one more settle period
        efficacy = efficacy or Efficacy.NOT_IMPROVED
        opened = self._feed_breaker(pending.action, efficacy, now)
        self._metrics.efficacy.labels(self.policy.name, pending.action, efficacy).inc()
        self.memory.note_judgement(pending, efficacy)
        values = ", ".join(
            f"{v.objective} {pending.baseline[v.objective]:.4g} → "
            f"{'?' if v.value is None else f'{v.value:.4g}'}"
            for v in verdicts
            if v.objective in pending.baseline
        )
        self._line(
            now,
            reconcile_id,
            "verification",
            verdicts,
            action=pending.action,
            step=pending.step,
            efficacy=efficacy.value,
            reason=f"{pending.action} {efficacy.value}: {values}",
            breaker=breaker_json(self.memory.breakers[pending.action]),
        )
        if opened:
            self._escalate(now, reconcile_id, verdicts, pending.action)
        return efficacy

    def _feed_breaker(self, action: str, efficacy: Efficacy, now: datetime) -> bool:
        current = self.memory.breakers.get(action, breakers.Breaker())
        updated, opened = breakers.after_outcome(
            current, efficacy, now, self.policy.guards.breaker.failures
        )
        self.memory.breakers[action] = updated
        return opened

    def _escalate(
        self, now: datetime, reconcile_id: str, verdicts: tuple[Verdict, ...], action: str
    ) -> None:
        breaker = self.memory.breakers[action]
        self._metrics.escalations.labels(self.policy.name, "breaker-open").inc()
        reason = (
            f"circuit breaker for {action} opened after {breaker.consecutive_bad} "
            "failed or ineffective outcomes: a human should look"
        )
        self._line(
            now,
            reconcile_id,
            "escalation",
            verdicts,
            action=action,
            reason=reason,
            breaker=breaker_json(breaker),
        )
        self._send("breaker-open", reason, now, action=action)

    def _tell_human(self, now: datetime, reconcile_id: str, result: PassResult) -> None:
        """Once per breach: a breach the policy only watches, or one its ladder could not
        fix (quota, image pulls, firewall rules …), is marked for a person."""
        breaches = ", ".join(v.objective for v in result.verdicts if v.state is VerdictState.BREACH)
        reason = f"{NEEDS_HUMAN}: {breaches} in breach; {result.reason}"
        self._metrics.escalations.labels(self.policy.name, "needs-human").inc()
        self._line(now, reconcile_id, "escalation", result.verdicts, reason=reason)
        self._send("needs-human", reason, now)

    def _send(self, kind: str, reason: str, now: datetime, **extra: Any) -> None:
        """Queue the webhook POST, after the audit line is safely written."""
        if self._notify is not None:
            self._notify(
                {
                    "text": f"Remediator: {self.policy.name}: {reason}",
                    "kind": kind,
                    "policy": self.policy.name,
                    "target": self.policy.target.resource_id,
                    "reason": reason,
                    "ts": now.isoformat(),
                    **extra,
                }
            )

    async def _decide(
        self, verdicts: tuple[Verdict, ...], now: datetime, reconcile_id: str
    ) -> PassResult:
        policy = self.policy
        proposed = await self._propose(verdicts, now)
        if isinstance(proposed, NoProposal):
            return PassResult(
                policy.name, verdicts, None, None, proposed.reason, needs_human=proposed.needs_human
            )
        proposal, state = proposed
        return await self._guard_and_act(proposal, state, verdicts, now, reconcile_id)

    async def _propose(
        self, verdicts: tuple[Verdict, ...], now: datetime
    ) -> tuple[Proposal, ResourceState] | NoProposal:
        """The ladder's next step for a breach, or a step back toward the baseline."""
        policy, memory = self.policy, self.memory
        idle = nothing_to_do(policy, verdicts)
        if idle is None:
            state = self._read_in_pass or await self.read_state()
            proposal = plan(policy, verdicts, state, memory.episode_steps, now)
            return proposal if isinstance(proposal, NoProposal) else (proposal, state)
        held = self.holding(idle, verdicts, now)
        if held is not None:
            return held
        state = self._read_in_pass or await self.read_state()
        back = self.stepping_back(idle, verdicts, state)
        if isinstance(back, NoProposal):
            memory.at_baseline = back.reason == f"{idle.reason}; {step_back.AT_BASELINE}"
            return back
        return back, state

    def holding(
        self, idle: NoProposal, verdicts: Sequence[Verdict], now: datetime
    ) -> NoProposal | None:
        """Why a pass with no breach to fix changes nothing, decided without reading the
        resource; None when it must read the resource to see whether to step back."""
        if idle.needs_human:
            return idle
        memory = self.memory
        waiting = step_back.when_due(self.policy, verdicts, memory.ok_since, memory.history, now)
        if waiting is not None:
            return NoProposal(
                idle.reason
                if waiting.reason == "all objectives met"
                else f"{idle.reason}; {waiting.reason}"
            )
        if memory.at_baseline:
            return NoProposal(f"{idle.reason}; {step_back.AT_BASELINE}")
        return None

    def stepping_back(
        self, idle: NoProposal, verdicts: Sequence[Verdict], state: ResourceState
    ) -> Proposal | NoProposal:
        """The step back toward the baseline once it is due, or why there is none (the
        pass's reason). Changes nothing: the pass remembers a target found at baseline."""
        back = step_back.propose(self.policy, verdicts, state)
        return back if isinstance(back, Proposal) else NoProposal(f"{idle.reason}; {back.reason}")

    async def _guard_and_act(
        self,
        proposal: Proposal,
        state: ResourceState,
        verdicts: tuple[Verdict, ...],
        now: datetime,
        reconcile_id: str,
    ) -> PassResult:
        policy, memory = self.policy, self.memory
        open_for = policy.guards.breaker.open_for
        breaker = memory.breakers.get(proposal.action, breakers.Breaker())
        pending = memory.pending
        decision = guards.check(
            policy,
            proposal,
            memory.history,
            now,
            self._mode,
            verifying=(pending.action, pending.due) if pending else None,
            breaker=breaker,
            paused=await self._paused(state) if self._paused else None,
            standby=self._standby() if self._standby else None,
            changed_at=state.last_modified,
            fleet=self._fleet.holds(policy.target.subscription, now, policy.target.resource_id)
            if self._fleet
            else None,
        )
        age = self._clock.now() - now
        if decision.kind is DecisionKind.ALLOW and age > self._ttl:
            reason = (
                f"stale decision: made on data {int(age.total_seconds())}s old "
                f"(limit {int(self._ttl.total_seconds())}s); dropped, not run"
            )
            decision = Decision(DecisionKind.DENY, reason, proposal, "ttl")
        if decision.kind is DecisionKind.DENY:
            self._count(decision)
            return PassResult(policy.name, verdicts, decision, None, decision.reason)
        gate = self._approval_gate(proposal, decision, verdicts, now, reconcile_id)
        if gate is not None:
            self._count(gate.decision or decision)
            return gate
        memory.breakers[proposal.action] = breakers.on_allowed(breaker, now, open_for)
        if self._fleet is not None:
            key = target_key(policy.name, policy.target.resource_id)
            self._fleet.spend(policy.target.subscription, now, key)
        intent: int | None = None
        if self._mode is Mode.DRY_RUN:
            outcome = Outcome(OutcomeKind.WOULD_RUN, proposal.before, proposal.after)
        else:
            # Fail closed: the intent is on disk before the resource is touched, or
            # AuditUnavailable propagates and nothing runs.
            planned = PassResult(policy.name, verdicts, decision, None, decision.reason)
            intent = self._record(planned, now, reconcile_id, "intent")
            acted = await self._act(proposal)
            if isinstance(acted, str):  # leadership not proven at the write: nothing sent
                memory.breakers[proposal.action] = breaker  # no trial was taken
                refused = Decision(DecisionKind.DENY, acted, proposal, "leader")
                self._count(refused)
                return PassResult(policy.name, verdicts, refused, None, acted, intent)
            outcome = acted
        self._count(decision)
        memory.note_action(now, proposal.action, outcome.kind, proposal.step_index)
        self._metrics.actions.labels(policy.name, proposal.action, outcome.kind).inc()
        if outcome.kind is OutcomeKind.SUCCEEDED and proposal.step_index >= 0:
            # judged on what it was meant to fix: escalate-only objectives are no rung's doing
            watched = policy.escalate_only
            baseline = {
                v.objective: v.value
                for v in verdicts
                if v.state is VerdictState.BREACH and v.objective not in watched
            }
            memory.pending = PendingVerification(
                proposal.action,
                proposal.step_index,
                now,
                now + policy.settle,
                {k: v for k, v in baseline.items() if v is not None},
            )
        opened = None
        if outcome.kind is OutcomeKind.FAILED and not outcome.busy:  # busy is not broken
            self._metrics.efficacy.labels(policy.name, proposal.action, Efficacy.FAILED).inc()
            if self._feed_breaker(proposal.action, Efficacy.FAILED, now):
                opened = proposal.action
        return PassResult(
            policy.name,
            verdicts,
            decision,
            outcome,
            decision.reason,
            intent,
            breaker_opened=opened,
        )

    def _count(self, decision: Decision) -> None:
        """The decisions metric, counted once the decision is final (a write refused at
        the last moment is a deny, as its audit line says)."""
        proposal = decision.proposal
        action = proposal.action if proposal else ""
        self._metrics.decisions.labels(
            self.policy.name, action, decision.kind, decision.guard or ""
        ).inc()

    def _approval_gate(
        self,
        proposal: Proposal,
        decision: Decision,
        verdicts: tuple[Verdict, ...],
        now: datetime,
        reconcile_id: str,
    ) -> PassResult | None:
        """A rung marked ``approval: required`` runs only once an operator approved this
        very proposal, while it is still valid; None lets the action run."""
        policy, memory = self.policy, self.memory
        step = policy.remediation[proposal.step_index] if proposal.step_index >= 0 else None
        if step is None or step.params.approval != "required":
            return None
        request = memory.approval
        same = (
            request is not None
            and request.action == proposal.action
            and request.params == dict(proposal.params)
            and now - request.asked_at <= policy.guards.approval_ttl
        )
        if request is None or not same:
            request = ApprovalRequest(
                uuid.uuid4().hex[:8], proposal.action, dict(proposal.params), now
            )
            memory.approval = request
            reason = (
                f"approval required: run `remediator approve {request.id}` (or reject) "
                f"within {format_duration(policy.guards.approval_ttl)}"
            )
            self._metrics.escalations.labels(policy.name, "approval").inc()
            self._send("approval", reason, now, action=proposal.action, approval=request.id)
            pending = Decision(DecisionKind.PENDING_APPROVAL, reason, proposal, "approval")
            return PassResult(policy.name, verdicts, pending, None, reason)
        if request.answer is None and self._answers is not None:
            given = self._answers().get(request.id)
            if given is not None:
                request = replace(request, answer=str(given["answer"]))
                memory.approval = request
                self._line(
                    now,
                    reconcile_id,
                    "approval",
                    verdicts,
                    action=request.action,
                    params=request.params,
                    decision=request.answer,
                    approval_id=request.id,
                    reason=f"{request.answer} by {given.get('by', 'an operator')}",
                )
        if request.answer == "approve":
            memory.approval = None
            return None
        if request.answer == "reject":
            memory.approval = None
            memory.episode_steps.add(proposal.step_index)
            reason = f"rejected by an operator ({request.id}): not tried again in this breach"
            return PassResult(
                policy.name,
                verdicts,
                Decision(DecisionKind.DENY, reason, proposal, "approval"),
                None,
                reason,
            )
        return PassResult(
            policy.name,
            verdicts,
            None,
            None,
            f"waiting for approval {request.id} of {request.action}",
        )

    async def _act(self, proposal: Proposal) -> Outcome | str:
        """Run the action to its end even if the controller is asked to stop meanwhile;
        or, when leadership cannot be proven right before the write, why nothing was sent.

        A shutdown must not leave a write half-known: the action is shielded from
        cancellation (bounded by the action deadline) so its result is recorded.
        """
        apply = self._registry.apply(self.policy.target.type, proposal.action)
        limit = self._action_deadline
        with anyio.CancelScope(shield=True), anyio.move_on_after(limit) as deadline:
            # the last moment before Azure is changed: a leader paused since its guard
            # step may have lost the lease meanwhile, and must not write
            refused = self._write_check() if self._write_check is not None else None
            if refused is not None:
                log.warning("action not sent", action=proposal.action, reason=refused)
                return refused
            try:
                return await apply(self.policy.target, proposal)
            except WriteRefused as stopped:  # the same check, as the write itself left
                # nothing of this action ran: a write is tried again only after an answer
                # that proves it did not run (409 busy, 412, 429), never after a timeout
                log.warning("action not sent", action=proposal.action, reason=str(stopped))
                return str(stopped)
            except Exception as exc:  # the outcome is recorded; the loop keeps going
                log.warning("action failed", action=proposal.action, error=repr(exc))
                detail = repr(exc)[:500]
                busy = retry.is_busy(exc)
                return Outcome(OutcomeKind.FAILED, proposal.before, proposal.before, detail, busy)
        assert deadline.cancel_called
        detail = f"no answer within {limit:g}s; the next pass reads what landed"
        return Outcome(OutcomeKind.FAILED, proposal.before, proposal.before, detail)

    def _record_result(self, result: PassResult, now: datetime, reconcile_id: str) -> None:
        """Write an action's result; when that fails, the intent stays open in this process
        too, so the next pass settles it from the resource before anything else runs."""
        intent = self._last_intent
        try:
            self._record(result, now, reconcile_id, "result")
        except AuditUnavailable as exc:
            if exc.written:  # the result is on disk; only its head or anchor failed
                raise
            if result.intent is not None and intent.get("seq") == result.intent:
                self.open_intents.append(intent)
                if self._noted is None:
                    self._noted = set()
                self._noted.add(result.intent)
            raise

    def _record(self, result: PassResult, now: datetime, reconcile_id: str, kind: Kind) -> int:
        decision, outcome = result.decision, result.outcome
        proposal = decision.proposal if decision else None
        pending = self.memory.pending
        action = proposal.action if proposal else None
        verify_at = None
        if kind == "result" and pending is not None and pending.decided_at == now:
            verify_at = pending.due
        return self._line(
            now,
            reconcile_id,
            kind,
            result.verdicts,
            action=action,
            params=dict(proposal.params) if proposal else {},
            decision=decision.kind.value if decision else None,
            reason=result.reason,
            guard=decision.guard if decision else None,
            outcome=outcome.kind.value if outcome else None,
            before=dict(outcome.before if outcome else (proposal.before if proposal else {})),
            # an intent records what it means to write: settling after a crash compares it
            after=dict(
                outcome.after
                if outcome
                else (proposal.after if proposal is not None and kind == "intent" else {})
            ),
            step=proposal.step_index if proposal else None,
            intent=result.intent if kind == "result" else None,
            verify_at=verify_at,
            breaker=breaker_json(self.memory.breakers[action])
            if action in self.memory.breakers and kind in ("result", "decision")
            else None,
            approval_id=self.memory.approval.id
            if decision is not None
            and decision.kind is DecisionKind.PENDING_APPROVAL
            and self.memory.approval is not None
            else None,
        )

    def _line(
        self,
        now: datetime,
        reconcile_id: str,
        kind: Kind,
        verdicts: tuple[Verdict, ...],
        sink: AuditSink | None = None,
        **fields: Any,
    ) -> int:
        """Write one audit line for this target (to ``sink``: its own log unless told);
        return its seq."""
        record = Record.model_validate(
            {
                "action": None,
                "params": {},
                "decision": None,
                "outcome": None,
                "before": {},
                "after": {},
                **fields,
                "ts": now,
                "kind": kind,
                "policy": self.policy.name,
                "target": self.policy.target.resource_id,
                "verdict": worst(verdicts).value,
                "verdicts": [v.as_dict() for v in verdicts],
                "mode": self._mode.value,
                "reconcile_id": reconcile_id,
            }
        )
        seq = (sink or self._audit).append(record)
        if kind == "intent":  # kept to settle it, should its result fail to be written
            self._last_intent = {**record.model_dump(mode="json"), "seq": seq}
        # a signal that could not be read is a warning: the line may say "nothing to do"
        failed = any(v.error is not None for v in verdicts)
        (log.warning if failed else log.info)(
            kind,
            verdict=record.verdict,
            action=record.action,
            decision=record.decision,
            outcome=record.outcome,
            efficacy=record.efficacy,
            reason=record.reason,
        )
        return seq
