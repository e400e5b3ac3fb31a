"""The batch metrics read as plain JSON gives what ``MetricsClient.query_resources`` gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError

from controller.azure.clients import AzureClients
from controller.azure.credentials import make_credential
from controller.azure.metrics_batch import parse_stamp, query_batch
from controller.clock import VirtualClock
from controller.emulator import Emulator
from controller.signals.azure_monitor import Series, _collect, _collect_json
from tests.conftest import APP_ID, emulator_settings
from tests.scenarios import fleet_scenario

pytestmark = pytest.mark.anyio
NAMESPACE = "Microsoft.App/containerApps"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T00:05:00Z", datetime(2026, 1, 1, 0, 5, tzinfo=UTC)),
        ("2026-01-01T00:05:00.1234567Z", datetime(2026, 1, 1, 0, 5, 0, 123456, tzinfo=UTC)),
        ("2026-01-01T01:05:00.5+01:00", datetime(2026, 1, 1, 0, 5, 0, 500000, tzinfo=UTC)),
        ("2026-01-01T00:05:00", datetime(2026, 1, 1, 0, 5, tzinfo=UTC)),
    ],
)
def test_azure_times_parse_as_the_sdk_reads_them(text: str, expected: datetime) -> None:
    assert parse_stamp(text) == expected


@pytest.mark.parametrize(
    ("metrics", "aggregations", "filter", "fault"),
    [
        (("CpuPercentage",), ("Average",), None, None),
        (("CpuPercentage", "Replicas"), ("Average", "Maximum", "Total"), None, None),
        (("CpuPercentage",), ("Average", "Minimum"), "revisionName eq '*'", None),
        (("CpuPercentage",), ("Average",), None, "metrics-null"),
        (("CpuPercentage",), ("Average",), None, "metrics-missing"),
    ],
)
async def test_the_json_read_gives_the_series_the_sdk_models_give(
    tmp_path: Path,
    clock: VirtualClock,
    metrics: tuple[str, ...],
    aggregations: tuple[str, ...],
    filter: str | None,
    fault: str | None,
) -> None:
    """Every series, sample and value alike (the app that does not exist too: it has
    none), for several metrics and aggregations, a dimension split, null and missing data."""
    emu = Emulator(fleet_scenario(tmp_path, [0.1, 0.3, 0.45]), now=clock.now, wobble=0.01)
    await clock.advance(900)
    if fault:
        emu.set_fault(fault)
    ids = [APP_ID.replace("agentstudio-api", f"app-{i}") for i in (0, 1, 2, 99)]
    now = clock.now()
    timespan = (now - timedelta(minutes=8), now)
    async with emu.serve() as base_url:
        settings = emulator_settings(base_url, tmp_path)
        async with AzureClients(settings, make_credential("emulator")) as clients:
            client = await clients.metrics("eastus")
            models = await client.query_resources(
                resource_ids=ids,
                metric_namespace=NAMESPACE,
                metric_names=list(metrics),
                timespan=timespan,
                granularity=timedelta(minutes=1),
                aggregations=list(aggregations),
                filter=filter,
                max_results=100 if filter else None,
            )
            values = await query_batch(
                client,
                resource_ids=ids,
                namespace=NAMESPACE,
                names=metrics,
                timespan=timespan,
                grain=timedelta(minutes=1),
                aggregations=aggregations,
                filter=filter,
                top=100 if filter else None,
            )
            with pytest.raises(HttpResponseError) as refused:  # a foreign subscription: 400
                await query_batch(
                    client,
                    resource_ids=[ids[0], "/subscriptions/other/" + ids[0].split("/", 3)[3]],
                    namespace=NAMESPACE,
                    names=metrics,
                    timespan=timespan,
                    grain=timedelta(minutes=1),
                    aggregations=aggregations,
                )
            assert refused.value.status_code == 400
    by_sdk: dict[str, Series] = {}
    for result in models:
        for metric in result.metrics:
            owner = metric.id.lower().split("/providers/microsoft.insights/metrics/")[0]
            _collect(by_sdk.setdefault(owner, {}), metric.name, metric.timeseries, aggregations)
    by_json: dict[str, Series] = {}
    for result in values:
        for metric in result["value"]:
            owner = metric["id"].lower().split("/providers/microsoft.insights/metrics/")[0]
            name = metric["name"]["value"]
            _collect_json(by_json.setdefault(owner, {}), name, metric["timeseries"], aggregations)
    assert by_json == by_sdk
    samples = [
        s for series in by_json.values() for runs in series.values() for r in runs for s in r
    ]
    if fault is None:
        assert any(s.value is not None for s in samples)  # the comparison saw data
