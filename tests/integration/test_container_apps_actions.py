"""Each Container Apps action through the real SDK client against the emulator over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from azure.core.exceptions import HttpResponseError

from controller.actions.container_apps import ContainerAppsActuator
from controller.azure.clients import AzureClients, WriteRefused
from controller.azure.credentials import make_credential
from controller.clock import VirtualClock
from controller.emulator import Emulator
from controller.model import OutcomeKind, Proposal
from tests.conftest import emulator_settings, make_policy
from tests.integration.helpers import raw_patch

pytestmark = pytest.mark.anyio
TARGET = make_policy().target


@pytest.fixture
async def actuator(
    emulator: tuple[Emulator, str], clock: VirtualClock, tmp_path: Path
) -> AsyncIterator[ContainerAppsActuator]:
    settings = emulator_settings(emulator[1], tmp_path)
    async with AzureClients(settings, make_credential("emulator")) as clients:
        yield ContainerAppsActuator(clients, clock)


def proposal(action: str, params: dict[str, Any]) -> Proposal:
    return Proposal(action, 0, params, {}, params, "test")


def writes_of(emu: Emulator) -> list[dict[str, Any]]:
    return [r for r in emu.requests if r["method"] in ("PATCH", "POST", "PUT")]


async def test_read_reports_size_and_revision(
    actuator: ContainerAppsActuator, emulator: tuple[Emulator, str]
) -> None:
    """The planner's view comes from a real GET through the SDK."""
    state = await actuator.read(TARGET)
    assert (state.min_replicas, state.max_replicas) == (1, 10)
    assert [(c.name, c.cpu, c.memory) for c in state.containers] == [("api", 0.5, "1Gi")]
    assert state.latest_revision == "agentstudio-api--r1"
    assert state.replicas == 1
    assert emulator[0].writes == 0


async def test_scale_out_patches_only_the_scale(
    actuator: ContainerAppsActuator, emulator: tuple[Emulator, str], clock: VirtualClock
) -> None:
    """minReplicas rises through a PATCH of the scale alone, and the LRO completes. As in
    Azure the change makes a new revision: the old one runs until the new one is ready."""
    emu = emulator[0]
    outcome = await actuator.scale_out(
        TARGET, proposal("scaleOut", {"minReplicas": 3, "maxReplicas": 10})
    )
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.before == {"minReplicas": 1, "maxReplicas": 10}
    assert outcome.after == {"minReplicas": 3, "maxReplicas": 10}
    [write] = writes_of(emu)
    assert write["body"] == {"properties": {"template": {"scale": {"minReplicas": 3}}}}
    app = emu.state()["resources"][TARGET.resource_id]
    assert app["latestRevision"] != app["latestReadyRevision"] == "agentstudio-api--r1"
    assert app["replicas"] == 1 + 3
    await clock.advance(30)
    app = emu.state()["resources"][TARGET.resource_id]
    assert app["latestReadyRevision"] == app["latestRevision"] and app["replicas"] == 3


async def test_scale_out_raises_max_when_the_new_minimum_needs_it(
    actuator: ContainerAppsActuator, emulator: tuple[Emulator, str]
) -> None:
    """maxReplicas is written only when the new minimum would exceed it."""
    emu = emulator[0]
    await actuator.scale_out(TARGET, proposal("scaleOut", {"minReplicas": 12, "maxReplicas": 12}))
    [write] = writes_of(emu)
    assert write["body"]["properties"]["template"]["scale"] == {
        "minReplicas": 12,
        "maxReplicas": 12,
    }


async def test_repeated_action_writes_nothing(
    actuator: ContainerAppsActuator, emulator: tuple[Emulator, str]
) -> None:
    """Applying a proposal that already holds is a read, not a write."""
    emu = emulator[0]
    params = {"minReplicas": 2, "maxReplicas": 10}
    await actuator.scale_out(TARGET, proposal("scaleOut", params))
    again = await actuator.scale_out(TARGET, proposal("scaleOut", params))
    assert again.kind is OutcomeKind.SUCCEEDED and again.detail == "already as proposed"
    assert emu.writes == 1


async def test_scale_up_sends_the_full_container_list(
    actuator: ContainerAppsActuator, emulator: tuple[Emulator, str]
) -> None:
    """A merge patch replaces arrays whole, so the image and name travel with the new size."""
    emu = emulator[0]
    params = {"container": "api", "cpu": 0.75, "memory": "1.5Gi"}
    outcome = await actuator.scale_up(TARGET, proposal("scaleUp", params))
    assert outcome.kind is OutcomeKind.SUCCEEDED
    [write] = writes_of(emu)
    [container] = write["body"]["properties"]["template"]["containers"]
    assert container["image"] == "agentstudio/api:1.4.2"
    assert container["resources"] == {"cpu": 0.75, "memory": "1.5Gi"}
    assert outcome.before == {"container": "api", "cpu": 0.5, "memory": "1Gi"}
    assert outcome.after == {"container": "api", "cpu": 0.75, "memory": "1.5Gi"}


async def test_scale_up_keeps_sidecars_env_and_probes(
    actuator: ContainerAppsActuator, emulator: tuple[Emulator, str]
) -> None:
    """Only the named container's size changes; every other field and container survives."""
    emu, base_url = emulator
    api = {
        "name": "api",
        "image": "agentstudio/api:1.4.2",
        "resources": {"cpu": 0.5, "memory": "1Gi"},
        "env": [{"name": "MODE", "value": "prod"}],
        "probes": [{"type": "Liveness", "httpGet": {"path": "/health/live", "port": 8080}}],
    }
    sidecar = {
        "name": "proxy",
        "image": "envoy:1.30",
        "resources": {"cpu": 0.25, "memory": "0.5Gi"},
    }
    containers = {"properties": {"template": {"containers": [api, sidecar]}}}
    await raw_patch(base_url, TARGET.resource_id, containers)
    params = {"container": "api", "cpu": 0.75, "memory": "1.5Gi"}
    await actuator.scale_up(TARGET, proposal("scaleUp", params))
    sent = writes_of(emu)[-1]["body"]["properties"]["template"]["containers"]
    assert sent == [{**api, "resources": {"cpu": 0.75, "memory": "1.5Gi"}}, sidecar]


async def test_restart_targets_the_latest_active_revision(
    actuator: ContainerAppsActuator, emulator: tuple[Emulator, str]
) -> None:
    """The restart goes to the newest active revision, found afresh."""
    emu = emulator[0]
    outcome = await actuator.restart_revision(TARGET, proposal("restartRevision", {}))
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.after["revision"] == "agentstudio-api--r1"
    [write] = writes_of(emu)
    assert write["path"].endswith("/revisions/agentstudio-api--r1/restart")
    assert emu.state()["resources"][TARGET.resource_id]["restarts"] == 1


async def test_a_failed_long_running_operation_raises_and_changes_nothing(
    actuator: ContainerAppsActuator, emulator: tuple[Emulator, str]
) -> None:
    """An LRO that ends Failed surfaces as an error; the app keeps its size."""
    emu = emulator[0]
    emu.set_fault("lro-fail")
    with pytest.raises(HttpResponseError, match="InternalError"):
        await actuator.scale_out(
            TARGET, proposal("scaleOut", {"minReplicas": 3, "maxReplicas": 10})
        )
    assert emu.state()["resources"][TARGET.resource_id]["minReplicas"] == 1


async def test_throttled_reads_are_retried_on_the_clock(
    actuator: ContainerAppsActuator, emulator: tuple[Emulator, str], clock: VirtualClock
) -> None:
    """A 429 with Retry-After is retried after the hinted wait, in virtual time."""
    emu = emulator[0]
    emu.set_fault("arm-throttle", duration_s=1.5)
    async with anyio.create_task_group() as tg:
        result: list[Any] = []

        async def read() -> None:
            result.append(await actuator.read(TARGET))

        tg.start_soon(read)
        until = clock.now() + timedelta(seconds=5)
        await clock.drive(until, sleepers=1, stop_when=lambda: bool(result))
    assert result and result[0].min_replicas == 1
    gets = [r for r in emu.requests if r["method"] == "GET"]
    # app at t (429), t+1s (429, still throttled), t+2s (200); then its revision
    assert len(gets) == 4


async def test_a_change_made_meanwhile_is_reread_not_overwritten(
    actuator: ContainerAppsActuator, emulator: tuple[Emulator, str]
) -> None:
    """412: someone scaled the app to 4 between our read and our write. The write was
    conditional on the version read, so it is refused; the re-read finds nothing left
    to do, and their 4 is kept rather than lowered to our 3."""
    emu = emulator[0]
    emu.set_fault("concurrent-write", minReplicas=4)
    outcome = await actuator.scale_out(
        TARGET, proposal("scaleOut", {"minReplicas": 3, "maxReplicas": 10})
    )
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.detail == "already as proposed"
    assert emu.state()["resources"][TARGET.resource_id]["minReplicas"] == 4
    assert len(writes_of(emu)) == 1  # the refused PATCH; nothing after the re-read
    assert emu.writes == 0


async def test_a_conflicting_resize_is_recomputed_from_a_fresh_read(
    actuator: ContainerAppsActuator, emulator: tuple[Emulator, str]
) -> None:
    """412 on a resize: the second attempt is built from the new version, keeping both
    their change (maxReplicas 20) and ours (the larger container)."""
    emu = emulator[0]
    emu.set_fault("concurrent-write", maxReplicas=20)
    outcome = await actuator.scale_up(
        TARGET, proposal("scaleUp", {"container": "api", "cpu": 1.0, "memory": "2Gi"})
    )
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert "re-read after 1 conflicting change" in outcome.detail
    state = emu.state()["resources"][TARGET.resource_id]
    assert state["maxReplicas"] == 20
    assert (state["containers"][0]["cpu"], state["containers"][0]["memory"]) == (1.0, "2Gi")
    assert len(writes_of(emu)) == 2 and emu.writes == 1


async def test_a_rollback_stands_down_when_traffic_moved_since_the_plan(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """The plan was r2 → r1; by the time it runs, r2 no longer serves (someone shipped or
    moved traffic): their traffic stays; the rollback is busy, not forced."""
    from controller.emulator import load_scenario

    scenario = load_scenario("bad-deploy")
    emu = Emulator(scenario, now=clock.now)
    target = make_policy().target.model_copy(
        update={"resource_id": scenario.resources[0].resource_id}
    )
    async with emu.serve() as base_url:
        settings = emulator_settings(base_url, tmp_path)
        async with AzureClients(settings, make_credential("emulator")) as clients:
            actuator = ContainerAppsActuator(clients, clock)
            stale = {"revision": "agentstudio-api--r1", "from": "agentstudio-api--r9"}
            outcome = await actuator.rollback_revision(
                target, Proposal("rollbackRevision", 0, stale, {}, stale, "test")
            )
            assert outcome.kind is OutcomeKind.FAILED and outcome.busy
            assert "traffic changed since the plan" in outcome.detail
            planned = {"revision": "agentstudio-api--r1", "from": "agentstudio-api--r2"}
            done = await actuator.rollback_revision(
                target, Proposal("rollbackRevision", 0, planned, {}, planned, "test")
            )
            assert done.kind is OutcomeKind.SUCCEEDED
    assert emu.writes == 1
    assert emu.state()["resources"][target.resource_id]["traffic"] == {"agentstudio-api--r1": 100}


async def test_a_write_is_stopped_as_it_leaves_when_leadership_is_gone(
    emulator: tuple[Emulator, str], clock: VirtualClock, tmp_path: Path
) -> None:
    """The write gate is asked in the SDK's pipeline as each write leaves, after the
    action's own read: a replica paused between that read and its PATCH sends nothing."""
    emu, base_url = emulator
    settings = emulator_settings(base_url, tmp_path)
    reads_then_lost: list[str | None] = []

    def gate() -> str | None:
        reads_then_lost.append("asked")
        return "standby: the lease's renew deadline passed"

    async with AzureClients(settings, make_credential("emulator")) as clients:
        clients.write_gate = gate
        actuator = ContainerAppsActuator(clients, clock)
        with pytest.raises(WriteRefused, match="renew deadline"):
            await actuator.scale_out(
                TARGET, proposal("scaleOut", {"minReplicas": 3, "maxReplicas": 10})
            )
    assert [r["method"] for r in emu.requests] == ["GET"]  # read, then stopped unsent
    assert reads_then_lost == ["asked"]  # reads pass the gate unasked
    assert writes_of(emu) == [] and emu.writes == 0


async def test_with_shards_a_write_is_stopped_as_it_leaves_when_its_partition_is_gone(
    emulator: tuple[Emulator, str], clock: VirtualClock, tmp_path: Path
) -> None:
    """With shards there is no leader lease (``write_gate`` is unset): the partition's own
    gate is still asked in the pipeline, with the resource each write goes to, so a
    replica whose partition was taken since its decision (a retried PATCH, a re-read
    after a conflict) sends nothing."""
    emu, base_url = emulator
    settings = emulator_settings(base_url, tmp_path)
    asked: list[str] = []

    def partition_gone(resource: str) -> str | None:
        asked.append(resource)
        return "standby: partition 3 is not owned by replica-a"

    async with AzureClients(settings, make_credential("emulator")) as clients:
        assert clients.write_gate is None
        clients.resource_gate = partition_gone
        actuator = ContainerAppsActuator(clients, clock)
        with pytest.raises(WriteRefused, match="partition 3 is not owned"):
            await actuator.scale_out(
                TARGET, proposal("scaleOut", {"minReplicas": 3, "maxReplicas": 10})
            )
    assert [r["method"] for r in emu.requests] == ["GET"]  # read, then stopped unsent
    assert [a.lower() for a in asked] == [TARGET.resource_id.lower()]
    assert writes_of(emu) == [] and emu.writes == 0
