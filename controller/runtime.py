"""Assemble a controller from settings: clock, clients, plug-ins, audit, loop."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from azure.core.credentials_async import AsyncTokenCredential
from azure.storage.blob.aio import ContainerClient

from controller import approvals
from controller.audit.log import AuditLog, AuditSink
from controller.audit.replay import Replayed, replay
from controller.azure.clients import AzureClients
from controller.azure.credentials import make_credential
from controller.clock import Clock, ScaledClock, SystemClock
from controller.config import Settings
from controller.escalation import Escalator
from controller.fleet import Fleet
from controller.kill_switch import KillSwitch
from controller.lease import LeaderElector, LeaseTiming
from controller.loop import Loop
from controller.model import Mode
from controller.plugins import default_registry
from controller.policy.loader import LoadedPolicy, load_policies
from controller.readiness import Readiness
from controller.reconcile import PassResult, Reconciler
from controller.registry import Registry, UnknownPlugin
from controller.telemetry import Metrics


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
        replayed = Replayed()
        if audit is None:
            log_file = stack.enter_context(AuditLog(settings.audit_path, metrics.audit_write))
            replayed = replay(log_file.records)
            audit = log_file
        registry = registry_factory(clients, clock)
        missing = [m for item in loaded for m in registry.missing(item.policy)]
        if missing:
            raise UnknownPlugin("; ".join(missing))
        kill_switch = KillSwitch(settings, clients, clock)
        fleet = Fleet(
            settings.budgets,
            settings.fail_static,
            len(loaded),
            arm_pressure=clients.rate_limits.low_on_writes,
        )
        owners = {item.policy.name: item.policy.target.subscription for item in loaded}
        spent = sorted(
            (record.ts, owners[name])
            for name, memory in replayed.memories.items()
            if name in owners
            for record in memory.history
        )
        for ts, subscription in spent:  # budgets outlive restarts, like everything else
            fleet.spend(subscription, ts)
        run_mode = mode or settings.mode
        elector = await stack.enter_async_context(elector_for(settings, clients.credential))
        # 1 when this replica may act: it holds the lease, or it is the only one
        metrics.leader.set_function(lambda: 0.0 if elector and not elector.is_leader else 1.0)
        escalator = Escalator(settings.escalation_webhook) if settings.escalation_webhook else None
        reconcilers = [
            Reconciler(
                item.policy,
                registry,
                clock,
                run_mode,
                audit,
                metrics,
                memory=replayed.memories.get(item.policy.name),
                open_intent=replayed.open_intents.get(item.policy.name),
                paused=kill_switch.reason,
                decision_ttl=2 * (item.policy.interval or settings.interval),
                fleet=fleet,
                standby=elector.standby_reason if elector else None,
                escalate=escalator.escalate if escalator else None,
                answers=lambda: approvals.answers(settings.approvals_path),
                action_deadline=settings.action_deadline.total_seconds(),
            )
            for item in loaded
        ]
        loop = Loop(
            reconcilers,
            clock,
            metrics,
            interval=settings.interval,
            jitter=settings.jitter,
            backoff_max=settings.backoff_max,
            rng=rng,
            on_pass=on_pass,
        )
        readiness = Readiness(
            clock,
            loop,
            clients.credential,
            scope=settings.endpoints().arm_audience + "/.default",
            audit=audit,
            elector=elector,
        )
        yield Runtime(
            settings, clock, loop, metrics, audit, registry, loaded, readiness, elector, escalator
        )


@asynccontextmanager
async def elector_for(
    settings: Settings, credential: AsyncTokenCredential
) -> AsyncIterator[LeaderElector | None]:
    """A leader elector on the configured blob, or None when election is off."""
    election = settings.leader_election
    if not election.enabled:
        yield None
        return
    if election.connection_string:
        container = ContainerClient.from_connection_string(
            election.connection_string, election.container
        )
    else:
        assert election.account_url is not None
        container = ContainerClient(election.account_url, election.container, credential)
    timing = LeaseTiming(
        election.lease_duration.total_seconds(),
        election.renew_deadline.total_seconds(),
        election.retry_period.total_seconds(),
    )
    async with container:
        yield LeaderElector(container, election.blob, election.identity, timing)
