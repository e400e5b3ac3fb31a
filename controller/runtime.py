"""Assemble a controller from settings: clock, clients, plug-ins, audit, loop."""

from __future__ import annotations

import copy
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import structlog
from aiohttp import web
from azure.core.credentials_async import AsyncTokenCredential

from controller import approvals
from controller.audit.anchor import AnchorUnreadable
from controller.audit.keys import load_key
from controller.audit.log import (
    AuditCorrupt,
    AuditKeyError,
    AuditLog,
    AuditSink,
    AuditUnavailable,
)
from controller.audit.migrate import Importer, ImportRefused, remembered_targets
from controller.audit.partitions import CannotLock, PartitionLogs, partition_log
from controller.audit.replay import Replayed
from controller.audit.rotation import Rotation
from controller.audit.snapshot import Retention
from controller.azure.clients import AzureClients
from controller.azure.credentials import make_credential
from controller.clock import Clock, ScaledClock, SystemClock
from controller.config import LeaseSettings, Settings
from controller.discovery import Discovery, Found
from controller.escalation import Escalator
from controller.fleet import Fleet, HandOver
from controller.fleet_memory import budget_line, count_spent, rebuild_fleet, release_line
from controller.kill_switch import KillSwitch
from controller.lease import LeaderElector, LeaseTiming
from controller.loop import Loop
from controller.memory import TargetMemory, target_key
from controller.model import Mode, VerdictState
from controller.plugins import default_registry
from controller.policy.loader import LoadedPolicy, PolicyError, load_policies
from controller.policy.schema import Policy
from controller.readiness import Readiness
from controller.reconcile import OpenIntents, PassResult, Reconciler
from controller.registry import Registry, UnknownPlugin
from controller.server import make_app
from controller.shards import PartitionOwner, partition_of
from controller.status import LastPasses, pause_check
from controller.targets import Expanded, expand, name_of
from controller.telemetry import Metrics

if TYPE_CHECKING:
    from azure.storage.blob.aio import ContainerClient

log = structlog.get_logger("remediator.runtime")


@dataclass
class Runtime:
    """Everything one run of the controller owns."""

    settings: Settings
    clock: Clock
    loop: Loop
    metrics: Metrics
    audit: AuditSink
    registry: Registry
    policies: list[LoadedPolicy]
    readiness: Readiness
    elector: LeaderElector | None = None  # set when leader election is enabled
    escalator: Escalator | None = None  # set when an escalation webhook is configured
    # a reconciler for a (re)loaded policy, keeping the memory of the one it replaces
    rebuild: Callable[[LoadedPolicy, Reconciler | None], Reconciler] | None = None
    fleet: Fleet | None = None
    mode: Mode = Mode.DRY_RUN  # the mode it runs in (settings, or the command's override)
    passes: LastPasses = field(default_factory=LastPasses)  # the newest pass per target
    discovery: Discovery | None = None  # what selector policies found, the last good sets
    expanded: Expanded | None = None  # the targets running now, and what was refused
    owner: PartitionOwner | None = None  # set when shards are enabled
    # with shards: one audit log per partition, opened while this replica owns it
    partition_logs: PartitionLogs | None = None
    # partitions lost whose log closes once their targets' actions in flight are written
    closing: dict[int, list[str]] = field(default_factory=dict)
    starved: str | None = None  # shards: why this replica's budget share never acts

    def app(self) -> web.Application:
        """The HTTP face: /, /metrics, /healthz, /readyz — all read-only."""
        return make_app(
            self.loop,
            self.clock,
            self.metrics,
            self.elector,
            self.readiness,
            audit_path=self.settings.audit_path,
            audit_paths=self._partition_paths if self.partition_logs is not None else None,
            mode=self.mode,
            paused=pause_check(self.settings),
            passes=self.passes.by_target,
        )

    def _partition_paths(self) -> list[Path]:
        """The logs of the partitions this replica holds now (for the status page)."""
        logs = self.partition_logs
        if logs is None:
            return []
        return [partition_log(logs.directory, p) for p in sorted(logs.opened())]

    async def reload(self) -> bool:
        """Load the policies again; apply the set only if all of it is good.

        An invalid set is rejected whole — the running set carries on, and the error goes
        to the log, the metrics and ``/readyz``; so is a set whose loading raised anything
        at all (a reload never ends the controller). The files are read and parsed in a
        worker thread: a large or slow file never stalls the loop or ``/healthz``.
        Unchanged policies keep their reconciler (and its schedule); a changed one keeps
        its memory (cooldowns, budgets, breakers).
        """
        try:
            loaded = await anyio.to_thread.run_sync(load_policies, self.settings.policies)
            missing = [m for item in loaded for m in self.registry.missing(item.policy)]
            if missing:
                raise UnknownPlugin("; ".join(missing))
        except (PolicyError, UnknownPlugin) as exc:
            self._rejected(str(exc))
            await self.discover()  # the running set's selectors still ask again (SIGHUP)
            return False
        except Exception as exc:  # a bug a file found: reject the set, keep running
            self._rejected(f"loading the policies failed: {type(exc).__name__}: {exc}"[:2000])
            log.exception("policy reload raised")
            await self.discover()
            return False
        gone = {item.policy.name for item in self.policies} - {i.policy.name for i in loaded}
        self.policies = loaded
        await self.discover()  # every selector asks again (a reload, or SIGHUP)
        for name in gone:
            self.metrics.forget(name)
            if self.discovery is not None:
                self.discovery.sets.pop(name, None)
            self.readiness.discovery.pop(name, None)
        rotation = rotation_for(self.settings, [item.policy for item in loaded])
        if isinstance(self.audit, AuditLog):  # a new budget window may need more history
            self.audit.rotation = rotation
        if self.partition_logs is not None:
            self.partition_logs.set_rotation(rotation)
        self.metrics.policies_loaded.set(len(loaded))
        self.metrics.policy_reloads.labels("applied").inc()
        self.readiness.policy_error = None
        log.info("policies reloaded", policies=len(loaded), targets=len(self.loop.reconcilers))
        return True

    async def discover(self) -> None:
        """Ask Resource Graph again for every selector policy's resources, then run the
        targets they give. A query not believed keeps that policy's last good set."""
        if self.discovery is not None:
            for policy, found in (await self.discovery.refresh_all(self.policies)).items():
                self._note_discovery(policy, found.problem, found.seconds)
        self.apply_targets()

    def _note_discovery(self, policy: str, problem: str | None, seconds: float) -> None:
        self.metrics.discovery_seconds.labels(policy).observe(seconds)
        self.metrics.discovery_stale.labels(policy).set(1 if problem else 0)
        if problem is None:
            self.readiness.discovery.pop(policy, None)
            return
        self.metrics.discovery_errors.labels(policy).inc()
        self.readiness.discovery[policy] = problem

    def apply_targets(self) -> None:
        """Run one reconciler per target of the policies and what their selectors found:
        an unchanged target keeps its reconciler (and schedule), a changed one its memory;
        a new one starts from what the audit log remembers of it; one that is gone stops
        once its action in flight has finished."""
        assert self.rebuild is not None
        found = self.discovery.found() if self.discovery is not None else {}
        running = {r.key: r for r in self.loop.reconcilers}
        expanded = expand(self.policies, found, {key: r.policy for key, r in running.items()})
        fresh = []
        for item in self.mine(expanded.targets):
            old = running.get(name_of(item))
            keep = old is not None and old.policy == item.policy
            fresh.append(old if keep and old is not None else self.rebuild(item, old))
        if self.owner is not None and self.partition_logs is not None:
            kept = {r.key for r in fresh}
            for gone in running.values():  # a lost partition's log closes after these end
                if gone.key not in kept:
                    partition = partition_of(gone.target, self.owner.partitions)
                    if partition in self.closing or not self.owner.owns(partition):
                        self.closing.setdefault(partition, []).append(gone.key)
        self.loop.replace(fresh)
        # every series the policies imply exists before its first event (alerts on
        # increase() see that event), and a new target shows its memory at once
        self.metrics.prepare(item.policy for item in self.policies)
        now = self.clock.now()
        for reconciler in fresh:
            if reconciler is not running.get(reconciler.key):
                reconciler.publish(now)
        if self.fleet is not None:  # a target that is gone counts toward no share or round
            self.fleet.keep({r.target for r in fresh})
        # what this replica runs (with shards its share: the replicas' series add up to
        # the estate), every policy named, those with none too
        running_now = dict.fromkeys(expanded.per_policy, 0)
        for reconciler in fresh:
            running_now[reconciler.policy.name] = running_now.get(reconciler.policy.name, 0) + 1
        for policy, count in running_now.items():
            self.metrics.targets.labels(policy).set(count)
        self.metrics.target_conflicts.set(len(expanded.refused))
        known = self.expanded.refused if self.expanded is not None else {}
        for resource, why in expanded.refused.items():
            if resource not in known:  # said once, while it lasts; the gauge keeps it visible
                log.error("target refused", reason=why)
        self.expanded = expanded

    def mine(self, targets: Sequence[LoadedPolicy]) -> list[LoadedPolicy]:
        """The targets this replica runs: all of them, or with shards those whose
        partition it owns now (each replica observes and acts for its share only)."""
        owner = self.owner
        if owner is None:
            return list(targets)
        owned = set(owner.owned())
        self.metrics.partitions_owned.set(len(owned))
        if self.partition_logs is not None:  # run only what this replica remembers
            owned = self._remember(owned)
        if self.fleet is not None:  # budgets: this replica's share of the estate's
            self.fleet.reshare(owned, owner.partitions, self.clock.now())
            starved = self.fleet.starved()
            if starved is not None and starved != self.starved:
                log.error("budget share under one action", reason=starved)
            self.starved = starved
        return [
            item
            for item in targets
            if partition_of(item.policy.target.resource_id, owner.partitions) in owned
        ]

    def _remember(self, owned: set[int]) -> set[int]:
        """Open (and replay) the log of each partition gained; the partitions whose log
        this replica holds. One still held by another writer waits; one that cannot be
        trusted is refused (the replica not ready): none of its targets runs until it opens.
        Each reason is logged once, not every retry period."""
        logs = self.partition_logs
        assert logs is not None
        for partition in sorted(owned - logs.opened() - set(self.closing)):
            try:
                replayed = logs.open(partition)
            except (
                AuditCorrupt,
                AuditKeyError,
                AnchorUnreadable,
                CannotLock,
                ImportRefused,
                OSError,
            ) as exc:
                logs.refuse(partition, str(exc))
                if why := logs.news(partition):
                    log.error("partition audit log refused", partition=partition, error=why)
                continue
            if replayed is None:
                if why := logs.news(partition):
                    log.warning(
                        "partition audit log held; waiting", partition=partition, holder=why
                    )
                continue
            imported = logs.newly_imported(partition)
            if imported is not None and logs.importer is not None:
                log.info(
                    "partition memory imported",
                    partition=partition,
                    source=str(logs.importer.source),
                    targets=imported,
                    notes=logs.importer.notes,
                )
            counted = 0
            if self.fleet is not None:
                counted = count_spent(self.fleet, replayed, self.clock.now(), partition)
            log.info(
                "partition memory replayed",
                partition=partition,
                targets=len(replayed.memories),
                actions_counted=counted,
                open_intents=sum(map(len, replayed.open_intents.values())),
            )
        if logs.importer is not None:
            logs.importer.forget()  # the estate's memory, read once for this round
        logs.keep(owned)
        for partition in logs.opened() - owned:  # lost: closed once its targets have ended
            self.closing.setdefault(partition, [])
        self.metrics.partitions_waiting.set(len(owned - logs.opened()))
        self.metrics.partitions_refused.set(len(owned & set(logs.refused)))
        return owned & logs.opened() - set(self.closing)

    async def close_lost(self, partition: int) -> None:
        """Close a lost partition's log once its targets' actions in flight have their
        results: the log's lock keeps the next owner waiting until then."""
        keys = self.closing.get(partition, [])
        await self.loop.stopped(keys)
        logs = self.partition_logs
        if logs is not None:
            if self.fleet is not None and logs.is_open(partition):
                self._hand_over(partition, logs.sink(partition))
            logs.close(partition)
        self.closing.pop(partition, None)
        log.info("partition audit log closed", partition=partition)

    def _hand_over(self, partition: int, sink: AuditSink) -> None:
        """Write into a lost partition's log what this replica spent beyond its new share
        this hour, and what the partition's slice of each subscription's bucket lacks: the
        partition's next owner counts it (see :meth:`Fleet.hand_over`)."""
        assert self.fleet is not None
        now = self.clock.now()
        self._write_hand_over(sink, self.fleet.hand_over(now, partition), now)

    def _write_hand_over(self, sink: AuditSink, handed: HandOver, now: datetime) -> bool:
        """Write a ``budget`` line, if there is anything to hand over; whether it was."""
        assert self.fleet is not None
        if not handed:
            return False
        line = budget_line(handed, self.fleet.global_cap, now, self.mode)
        try:
            sink.append(line)
        except AuditUnavailable as exc:
            log.error(
                "budget hand-over not written",
                error=str(exc),
                actions=len(handed.spent),
                subscriptions=len(handed.owed),
            )
            return False
        return True

    async def leave(self, wait: float) -> None:
        """An orderly stop with shards, before the partitions' leases are let go: every
        target stops (an action in flight finishes and writes its result, waited for up
        to ``wait`` seconds), then each partition whose log this replica holds gets a
        ``budget`` line — all it spent this hour, dealt out across them, and what each
        one's slices of the buckets lack — and its log closes. Whoever takes a partition
        next counts it as after any move (see :meth:`Fleet.leave`). Shielded: a second
        signal does not cut it short."""
        logs = self.partition_logs
        if self.owner is None or logs is None:
            return
        with anyio.CancelScope(shield=True):
            keys = [r.key for r in self.loop.reconcilers]
            keys += [key for lost in self.closing.values() for key in lost]
            self.loop.replace([])
            with anyio.move_on_after(wait) as waiting:
                await self.loop.stopped(keys)
            if waiting.cancelled_caught:
                log.warning("actions still in flight as the replica leaves", waited=wait)
            opened = sorted(logs.opened())
            now = self.clock.now()
            handed = self.fleet.leave(now, opened) if self.fleet is not None else {}
            written = [
                p
                for p in opened
                if p in handed and self._write_hand_over(logs.sink(p), handed[p], now)
            ]
            for partition in opened:
                logs.close(partition)
            self.closing.clear()
        log.info(
            "partitions left",
            partitions=opened,
            budget_lines=written,
            actions_handed=sum(len(h.spent) for h in handed.values()),
            subscriptions_short=sorted({sub for h in handed.values() for sub in h.owed}),
        )

    def _rejected(self, problem: str) -> None:
        self.metrics.policy_reloads.labels("rejected").inc()
        self.readiness.policy_error = (
            f"policy reload rejected; still running the last good set: {problem}"
        )
        log.error("policy reload rejected", error=problem)


def rotation_for(settings: Settings, policies: Sequence[Policy]) -> Rotation:
    """The audit rotation the settings ask for; snapshots keep every action the longest
    budget window of these policies still counts."""
    windows = [b.per for p in policies for b in p.guards.action_budgets]
    rule, budgets = settings.audit_rotation, settings.budgets
    retention = Retention(
        max([rule.keep_actions, *windows]),
        budgets.subscription_burst,
        budgets.subscription_per_hour,
    )
    return Rotation(rule.max_bytes, rule.max_age, retention)


def wall_now() -> datetime:
    """Wall time, whatever the runtime's clock says (a scenario's, a test's)."""
    return datetime.now(UTC)


def clock_for(settings: Settings) -> Clock:
    """Scenario time when the settings carry an emulator's clock anchor, else wall time."""
    if settings.clock is None:
        return SystemClock()
    c = settings.clock
    return ScaledClock(c.anchor_wall, c.anchor_scenario, c.speed)


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    mode: Mode | None = None,
    policies: Sequence[LoadedPolicy] | None = None,
    registry_factory: Callable[[AzureClients, Clock], Registry] = default_registry,
    audit: AuditSink | None = None,
    rng: random.Random | None = None,
    on_pass: Callable[[PassResult], None] | None = None,
) -> AsyncIterator[Runtime]:
    """Build a runtime; close every client and the audit file on exit."""
    clock = clock or clock_for(settings)
    loaded = list(policies) if policies is not None else load_policies(settings.policies)
    async with AsyncExitStack() as stack:
        metrics = Metrics()
        metrics.policies_loaded.set(len(loaded))
        clients = await stack.enter_async_context(
            AzureClients(
                settings,
                make_credential(settings.credential, settings.identity_client_id),
                call_metrics=metrics,
            )
        )
        # ARM's write headroom, as RateLimitPolicy last read it (NaN before any write)
        limits = clients.rate_limits
        metrics.arm_writes_remaining.set_function(
            lambda: float("nan") if limits.writes is None else float(limits.writes)
        )
        replayed = Replayed()
        partition_logs: PartitionLogs | None = None
        if audit is None:
            key = load_key(settings.audit_key, settings.audit_key_file)
            log_file = AuditLog(
                settings.audit_path,
                metrics.audit_write,
                rotation_for(settings, [item.policy for item in loaded]),
                key=key,
                anchor=settings.audit_anchor,
                wall=None if isinstance(clock, SystemClock) else wall_now,
            )
            replayed = stack.enter_context(log_file).memory()
            for note in log_file.notes:
                log.warning("audit log", note=note)
            audit = log_file
            if settings.shards.enabled:
                partition_logs = partition_logs_for(
                    settings, loaded, key, metrics, log_file, clock.now
                )
                if settings.shards.import_from is None and (left := remembered_targets(replayed)):
                    log.warning(
                        "the replica's audit log holds target memory from before shards; "
                        "it is not read with shards on",
                        path=str(settings.audit_path),
                        targets=left,
                        hint="give auditPath a new file and set shards.importFrom to this one",
                    )
                stack.callback(partition_logs.close_all)
        registry = registry_factory(clients, clock)
        missing = [m for item in loaded for m in registry.missing(item.policy)]
        if missing:
            raise UnknownPlugin("; ".join(missing))
        kill_switch = KillSwitch(settings, clients, clock)
        discovery = Discovery(clients, clock, stale_after=settings.discovery_hold_after)
        run_mode = mode or settings.mode
        sink = audit

        def released(why: str, target: str, state: VerdictState, now: datetime) -> None:
            by_target = {r.policy.target.resource_id: r.policy.name for r in loop.reconcilers}
            sink.append(release_line(why, by_target.get(target, ""), target, state, now, run_mode))

        fleet = Fleet(
            settings.budgets,
            settings.fail_static,
            0,  # sized by the targets, once known
            arm_pressure=clients.rate_limits.low_on_writes,
            on_release=released,
        )
        rebuild_fleet(fleet, replayed)
        elector = await stack.enter_async_context(elector_for(settings, clients.credential))
        owner = await stack.enter_async_context(owner_for(settings, clients.credential))
        # asked again by the pipeline as each write leaves: a pause between the action's
        # own read and its write is caught too
        clients.write_gate = elector.write_check if elector else None
        clients.resource_gate = owner.may_act if owner else None
        # 1 when this replica may act: it holds the lease, or it is the only one
        metrics.leader.set_function(lambda: 0.0 if elector and not elector.is_leader else 1.0)
        escalator = Escalator(settings.escalation_webhook) if settings.escalation_webhook else None

        def answers() -> Mapping[str, Mapping[str, object]]:  # one for all targets
            return approvals.answers(settings.approvals_path)

        def reconciler(
            item: LoadedPolicy, memory: TargetMemory | None, old: Reconciler | None
        ) -> Reconciler:
            policy = item.policy
            resource = policy.target.resource_id
            # with shards, asked before deciding and again right before each write: a
            # partition lost stops this target's actions at once
            gate = (lambda: owner.may_act(resource)) if owner else None
            sink: AuditSink = audit
            intents = open_intents(item)
            if partition_logs is not None and owner is not None:
                partition = partition_of(resource, owner.partitions)
                sink = partition_logs.sink(partition)
                intents = partition_logs.open_intents_of(partition, policy.name, resource)
            return Reconciler(
                item.policy,
                registry,
                clock,
                run_mode,
                sink,
                metrics,
                memory=memory,
                open_intents=intents,
                succeeds=old,
                fleet_audit=audit,
                # a selector's target also waits while its last good set is stale
                paused=(
                    discovery.holding(policy.name, kill_switch.reason)
                    if item.selected
                    else kill_switch.reason
                ),
                decision_ttl=2 * (item.policy.interval or settings.interval),
                fleet=fleet,
                standby=elector.standby_reason if elector else gate,
                write_check=elector.write_check if elector else gate,
                escalate=escalator.escalate if escalator else None,
                answers=answers,
                action_deadline=settings.action_deadline.total_seconds(),
                key=name_of(item),
            )

        def remembered(item: LoadedPolicy) -> TargetMemory | None:
            """A target's memory from the log: at start what replay rebuilt; later (a
            target a selector finds again) what the log has folded since, copied."""
            policy = item.policy
            if partition_logs is not None and owner is not None:
                resource = policy.target.resource_id
                partition = partition_of(resource, owner.partitions)
                return partition_logs.memory_of(partition, policy.name, resource)
            if isinstance(audit, AuditLog) and started:
                return copy.deepcopy(audit.state.memory_of(policy.name, policy.target.resource_id))
            return replayed.memory_of(policy.name, policy.target.resource_id)

        def open_intents(item: LoadedPolicy) -> OpenIntents:
            """A target's intents still without a result: at start what replay found; later
            (a target found again, or a policy added back) what the log holds open for it
            when it first runs."""
            policy = item.policy
            if isinstance(audit, AuditLog) and started:
                kept, key = audit, target_key(policy.name, policy.target.resource_id)
                return lambda: copy.deepcopy(kept.state.open_intents.get(key, []))
            return replayed.intents_of(policy.name, policy.target.resource_id)

        started = False
        passes = LastPasses()

        def noted(result: PassResult) -> None:
            passes.note(result)
            if on_pass is not None:
                on_pass(result)

        loop = Loop(
            [],  # the targets come from the policies and what their selectors find
            clock,
            metrics,
            interval=settings.interval,
            jitter=settings.jitter,
            backoff_max=settings.backoff_max,
            rng=rng,
            on_pass=noted,
        )
        readiness = Readiness(
            clock,
            loop,
            clients.credential,
            scope=settings.endpoints().arm_audience + "/.default",
            audit=partition_logs or audit,
            elector=elector,
            owner=owner,
            waiting=(lambda: partition_logs.waiting) if partition_logs is not None else None,
            refused=(lambda: partition_logs.refused) if partition_logs is not None else None,
            starved=fleet.starved if owner is not None else None,
        )
        runtime = Runtime(
            settings, clock, loop, metrics, audit, registry, loaded, readiness, elector, escalator
        )
        if owner is not None:
            readiness.policies_loaded = lambda: len(runtime.policies)
        runtime.rebuild = lambda item, old: reconciler(
            item,
            carried(old.policy, old.memory, item.policy) if old else remembered(item),
            old,
        )
        runtime.owner = owner
        runtime.partition_logs = partition_logs
        runtime.discovery = discovery
        runtime.fleet = fleet
        await runtime.discover()  # the first targets: memory and open intents from replay
        started = True
        runtime.mode = run_mode
        runtime.passes = passes
        yield runtime


def partition_logs_for(
    settings: Settings,
    loaded: Sequence[LoadedPolicy],
    key: bytes | None,
    metrics: Metrics,
    run_log: AuditLog,
    now: Callable[[], datetime],
) -> PartitionLogs:
    """The partition logs of shards: in ``shards.auditDir``, each sealed, anchored and
    rotated as the replica's own log is (an anchor file per partition beside it); a new
    one seeded from ``shards.importFrom``, when set."""
    shards = settings.shards
    directory = shards.audit_dir
    assert directory is not None
    rotation = rotation_for(settings, [item.policy for item in loaded])
    anchor = settings.audit_anchor

    def make(path: Path) -> AuditLog:
        return AuditLog(
            path,
            metrics.audit_write,
            rotation,
            key=key,
            anchor=anchor.with_name(f"{anchor.name}.{path.stem}") if anchor else None,
        )

    importer = None
    if shards.import_from is not None:
        importer = Importer(
            shards.import_from,
            key,
            shards.partitions,
            partition_of,
            now,
            anchor=shards.import_anchor,
        )
    return PartitionLogs(directory, shards.identity, make, run_log, importer)


def _lease_storage(
    lease: LeaseSettings, credential: AsyncTokenCredential
) -> tuple[ContainerClient, LeaseTiming]:
    """The blob container holding leases, and their timing. No SDK retries: a holder
    tries again every retry period, and the storage SDK's backoff (15 s and up) would
    outlast the renew deadline."""
    from azure.storage.blob.aio import ContainerClient  # only where leases are configured

    if lease.connection_string:
        container = ContainerClient.from_connection_string(
            lease.connection_string, lease.container, retry_total=0
        )
    else:
        assert lease.account_url is not None
        container = ContainerClient(lease.account_url, lease.container, credential, retry_total=0)
    timing = LeaseTiming(
        lease.lease_duration.total_seconds(),
        lease.renew_deadline.total_seconds(),
        lease.retry_period.total_seconds(),
    )
    return container, timing


@asynccontextmanager
async def elector_for(
    settings: Settings, credential: AsyncTokenCredential
) -> AsyncIterator[LeaderElector | None]:
    """A leader elector on the configured blob, or None when election is off."""
    election = settings.leader_election
    if not election.enabled:
        yield None
        return
    container, timing = _lease_storage(election, credential)
    async with container:
        yield LeaderElector(container, election.blob, election.identity, timing)


@asynccontextmanager
async def owner_for(
    settings: Settings, credential: AsyncTokenCredential
) -> AsyncIterator[PartitionOwner | None]:
    """This replica's partition owner on the configured container, or None when shards
    are off."""
    shards = settings.shards
    if not shards.enabled:
        yield None
        return
    container, timing = _lease_storage(shards, credential)
    async with container:
        yield PartitionOwner(container, shards.prefix, shards.partitions, shards.identity, timing)


@dataclass(frozen=True)
class Survey:
    """What every policy covers now: the targets, and each selector's last answer."""

    expanded: Expanded
    found: Mapping[str, Sequence[Found]]
    problems: Mapping[str, str]  # selector policy → why its answer was not believed


async def survey_targets(settings: Settings, loaded: Sequence[LoadedPolicy]) -> Survey:
    """Ask Resource Graph for every selector policy once (``remediator targets``): no
    audit log, no loop, nothing acts."""
    credential = make_credential(settings.credential, settings.identity_client_id)
    async with AzureClients(settings, credential) as clients:
        discovery = Discovery(clients, clock_for(settings))
        answers = await discovery.refresh_all(loaded)
        problems = {policy: known.problem for policy, known in answers.items() if known.problem}
        found = discovery.found()
    return Survey(expand(loaded, found), found, problems)


def carried(old: Policy, memory: TargetMemory, new: Policy) -> TargetMemory:
    """A changed policy keeps its target's memory (cooldowns, budgets, breakers) — but
    rung positions refer to the old ladder, and "at baseline" to the old baseline."""
    if old.remediation != new.remediation or old.step_back != new.step_back:
        memory.episode_steps.clear()
        memory.at_baseline = False
        if memory.pending is not None:
            memory.pending = replace(memory.pending, step=-1)  # judged, but no rung to retire
    return memory
