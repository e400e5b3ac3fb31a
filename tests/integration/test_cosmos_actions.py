"""Cosmos DB throughput actions through the real SDK against the emulator over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.actions.cosmos import CosmosActuator
from controller.azure.clients import AzureClients
from controller.azure.credentials import make_credential
from controller.clock import VirtualClock
from controller.emulator import Emulator, load_scenario
from controller.model import OutcomeKind, Proposal
from controller.policy.schema import Target
from tests.conftest import emulator_settings

pytestmark = pytest.mark.anyio
SCENARIO = load_scenario("cosmos-throttling")
TARGET = Target(
    type="cosmosSqlDatabase", resource_id=SCENARIO.offers[0].resource_id, region="eastus"
)


@pytest.fixture
async def cosmos(tmp_path: Path) -> AsyncIterator[tuple[CosmosActuator, Emulator]]:
    clock = VirtualClock(SCENARIO.start + timedelta(minutes=10))
    emu = Emulator(SCENARIO, now=clock.now, wobble=0)
    async with emu.serve() as base:
        settings = emulator_settings(base, tmp_path)
        async with AzureClients(settings, make_credential("emulator")) as clients:
            yield CosmosActuator(clients, clock), emu


def proposal(action: str, params: dict[str, Any]) -> Proposal:
    return Proposal(action, 0, params, {}, params, "test")


def puts(emu: Emulator) -> list[dict[str, Any]]:
    return [r for r in emu.requests if r["method"] == "PUT"]


async def test_read_reports_the_offer_with_numbers_not_strings(
    cosmos: tuple[CosmosActuator, Emulator],
) -> None:
    actuator, _ = cosmos
    state = await actuator.read(TARGET)
    assert state.throughput is not None
    assert (state.throughput.manual, state.throughput.minimum) == (4000, 400)
    assert state.throughput.instant_maximum == 10000 and not state.throughput.pending


async def test_raise_puts_only_the_throughput_and_a_repeat_writes_nothing(
    cosmos: tuple[CosmosActuator, Emulator],
) -> None:
    actuator, emu = cosmos
    outcome = await actuator.raise_throughput(
        TARGET, proposal("raiseThroughput", {"throughput": 5000})
    )
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert (outcome.before, outcome.after) == ({"throughput": 4000}, {"throughput": 5000})
    [put] = puts(emu)
    assert put["body"] == {"properties": {"resource": {"throughput": 5000}}}
    again = await actuator.raise_throughput(
        TARGET, proposal("raiseThroughput", {"throughput": 5000})
    )
    assert again.detail == "already as proposed" and len(puts(emu)) == 1


async def test_lower_never_goes_below_the_offers_minimum(
    cosmos: tuple[CosmosActuator, Emulator],
) -> None:
    actuator, emu = cosmos
    outcome = await actuator.lower_throughput(
        TARGET, proposal("lowerThroughput", {"throughput": 100})
    )
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.after == {"throughput": 400}
    assert emu.state()["resources"][TARGET.resource_id]["throughput"] == 400


async def test_a_pending_split_is_busy_not_a_failure(
    cosmos: tuple[CosmosActuator, Emulator],
) -> None:
    """A raise past the instant maximum starts a split; the next change waits for it."""
    actuator, emu = cosmos
    first = await actuator.raise_throughput(
        TARGET, proposal("raiseThroughput", {"throughput": 20000})
    )
    assert first.kind is OutcomeKind.SUCCEEDED and "partition split" in first.detail
    second = await actuator.raise_throughput(
        TARGET, proposal("raiseThroughput", {"throughput": 21000})
    )
    assert second.kind is OutcomeKind.FAILED and second.busy
    assert len(puts(emu)) == 1


async def test_a_proposal_for_the_other_mode_fails_without_writing(
    cosmos: tuple[CosmosActuator, Emulator],
) -> None:
    actuator, emu = cosmos
    outcome = await actuator.raise_throughput(
        TARGET, proposal("raiseThroughput", {"maxThroughput": 8000})
    )
    assert outcome.kind is OutcomeKind.FAILED and "manual" in outcome.detail
    assert puts(emu) == []
