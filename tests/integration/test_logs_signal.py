"""The Log Analytics signal through the real LogsQueryClient against the emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from controller.azure.clients import AzureClients
from controller.azure.credentials import make_credential
from controller.backtest.sources import HistoryUnavailable, fetch
from controller.clock import VirtualClock
from controller.core.evaluate import evaluate
from controller.emulator import Emulator, load_scenario
from controller.model import Observation, Quality, VerdictState
from controller.policy.schema import Objective, Policy, Target
from controller.signals import log_templates
from controller.signals.logs import LogsSource
from tests.conftest import emulator_settings

pytestmark = pytest.mark.anyio
SCENARIO = load_scenario("bad-deploy")
APP = SCENARIO.resources[0]
TARGET = Target(type="containerApp", resource_id=APP.resource_id, region="eastus")
WS = "00000000-0000-0000-0000-00000000a11a"


def objective(**signal: Any) -> Objective:
    return Objective.model_validate(
        {
            "name": "errors",
            "signal": {"type": "logs", "workspaceId": WS, "role": APP.name, **signal},
            "comparison": "<",
            "threshold": 1,
            "for": "3m",
        }
    )


@pytest.fixture
async def logs(tmp_path: Path) -> AsyncIterator[tuple[LogsSource, Emulator, VirtualClock]]:
    clock = VirtualClock(SCENARIO.start + timedelta(minutes=8))
    emu = Emulator(SCENARIO, now=clock.now, wobble=0)
    async with emu.serve() as base:
        settings = emulator_settings(base, tmp_path)
        async with AzureClients(settings, make_credential("emulator")) as clients:
            yield LogsSource(clients, clock), emu, clock


async def test_a_template_fills_the_window_one_row_per_minute(
    logs: tuple[LogsSource, Emulator, VirtualClock],
) -> None:
    """requestErrorRate of the bad revision: 6 % in every completed minute, a breach."""
    source, emu, clock = logs
    goal = objective(template="requestErrorRate")
    seen = (await source.observe(TARGET, [goal], clock.now()))["errors"]
    assert seen.quality is Quality.GOOD
    values = [s.value for s in seen.samples]
    assert len(values) >= 3 and all(v == pytest.approx(6.0) for v in values)
    assert evaluate(goal, seen, clock.now()).state is VerdictState.BREACH
    [query] = [r for r in emu.requests if r["path"].endswith("/query")]
    assert query["path"] == f"/v1/workspaces/{WS}/query"
    assert query["body"]["query"] == log_templates.render(
        "requestErrorRate", APP.name, goal.signal.grain
    )


async def test_a_partial_result_is_an_error_never_data(
    logs: tuple[LogsSource, Emulator, VirtualClock],
) -> None:
    source, emu, clock = logs
    emu.set_fault("logs-partial")
    seen = (await source.observe(TARGET, [objective(template="requestErrorRate")], clock.now()))[
        "errors"
    ]
    assert seen.quality is Quality.ERROR and "partial result" in (seen.error or "")
    assert seen.samples == ()


async def test_a_query_the_service_cannot_run_is_an_error(
    logs: tuple[LogsSource, Emulator, VirtualClock],
) -> None:
    source, _, clock = logs
    custom = Objective.model_validate(
        {
            "name": "errors",
            "signal": {"type": "logs", "workspaceId": WS, "query": "AppRequests | count"},
            "comparison": "<",
            "threshold": 1,
        }
    )
    refused = (await source.observe(TARGET, [custom], clock.now()))["errors"]
    assert refused.quality is Quality.ERROR and "BadArgumentError" in (refused.error or "")


async def test_a_failing_backend_is_retried_then_an_error(
    logs: tuple[LogsSource, Emulator, VirtualClock],
) -> None:
    """500: three attempts in all, waiting on the controller's clock, then unknown data."""
    source, emu, clock = logs
    emu.set_fault("logs-error")
    out: dict[str, Observation] = {}
    start = clock.now()

    async def observe() -> None:
        out.update(await source.observe(TARGET, [objective(template="requestErrorRate")], start))

    async with anyio.create_task_group() as tg:
        tg.start_soon(observe)
        await clock.drive(start + timedelta(minutes=1), sleepers=1, stop_when=lambda: bool(out))
    failed = out["errors"]
    assert failed.quality is Quality.ERROR and "500" in (failed.error or "")
    assert len([r for r in emu.requests if r["path"].endswith("/query")]) == 3


async def test_latency_templates_follow_the_revisions_serving(
    logs: tuple[LogsSource, Emulator, VirtualClock],
) -> None:
    source, _, clock = logs
    seen = (await source.observe(TARGET, [objective(template="requestDurationP95")], clock.now()))[
        "errors"
    ]
    assert seen.samples and seen.samples[-1].value == pytest.approx(450.0)


async def test_a_backtest_history_that_cannot_be_read_names_what(tmp_path: Path) -> None:
    """A partial Log Analytics answer is no history: ``fetch`` fails naming the policy
    and objective (the command prints it and exits 1), never a traceback or half data."""
    clock = VirtualClock(SCENARIO.start + timedelta(minutes=8))
    emu = Emulator(SCENARIO, now=clock.now, wobble=0)
    policy = Policy.model_validate(
        {
            "apiVersion": "remediator/v1",
            "kind": "Policy",
            "metadata": {"name": "api-errors"},
            "target": {"type": "containerApp", "resourceId": APP.resource_id},
            "objectives": [
                {
                    "name": "errors",
                    "signal": {
                        "type": "logs",
                        "workspaceId": WS,
                        "role": APP.name,
                        "template": "requestErrorRate",
                    },
                    "comparison": "<",
                    "threshold": 1,
                }
            ],
        }
    )
    async with emu.serve() as base:
        settings = emulator_settings(base, tmp_path)
        async with AzureClients(settings, make_credential("emulator")) as clients:
            emu.set_fault("logs-partial")
            with pytest.raises(HistoryUnavailable, match="api-errors/errors from Log Analytics"):
                await fetch(clients, clock, [policy], SCENARIO.start, clock.now())
