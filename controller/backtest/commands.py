"""``remediator backtest`` and ``remediator record``: what they read, run and write."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from controller.audit.log import AuditLog, MemoryAudit, Record
from controller.azure.clients import AzureClients
from controller.azure.credentials import make_credential
from controller.backtest.engine import replay
from controller.backtest.history import History, RecordingWriter, read_recording
from controller.backtest.model import Backtest
from controller.backtest.prices import Prices
from controller.backtest.sources import fetch, record
from controller.config import Settings
from controller.durations import format_duration
from controller.policy.loader import load_policies
from controller.policy.schema import Policy
from controller.runtime import clock_for


async def history_for(
    settings: Settings,
    policies: Sequence[Policy],
    start: datetime,
    end: datetime,
    recording: Path | None,
) -> History:
    """The recording when given, else each objective's history from its backend."""
    if recording is not None:
        return read_recording(recording)
    clock = clock_for(settings)
    credential = make_credential(settings.credential, settings.identity_client_id)
    async with AzureClients(settings, credential) as clients:
        return await fetch(clients, clock, policies, start, end)


async def backtest(
    settings: Settings,
    start: datetime,
    end: datetime,
    *,
    recording: Path | None = None,
    compare: Sequence[Path] = (),
    effects: bool = True,
    prices: Prices | None = None,
    label: str | None = None,
    audit_out: Path | None = None,
) -> list[Backtest]:
    """Replay the settings' policies (and, with ``compare``, a second set) on one history;
    each set is labelled with its paths, the settings' own with ``label`` when given. The
    first set's audit log is written to ``audit_out`` when given (a new file: the caller
    checks)."""
    sets: list[tuple[str, list[Policy]]] = [
        (label or ", ".join(str(p) for p in settings.policies), _policies(settings.policies))
    ]
    if compare:
        sets.append((", ".join(str(p) for p in compare), _policies(compare)))
    everything = [p for _, policies in sets for p in policies]
    history = await history_for(settings, everything, start, end, recording)
    audits = [MemoryAudit() for _ in sets]
    results = [
        await replay(
            policies,
            history,
            start,
            end,
            effects=effects,
            label=label,
            interval=settings.interval,
            prices=prices,
            budgets=settings.budgets,
            fail_static=settings.fail_static,
            audit=audit,
        )
        for (label, policies), audit in zip(sets, audits, strict=True)
    ]
    if audit_out is not None:
        write_audit(audit_out, audits[0])
    return results


def write_audit(path: Path, audit: MemoryAudit) -> None:
    """A replay's audit lines as an audit log file (chained, with its head), for
    ``remediator audit show`` and ``remediator report --audit``."""
    chain = ("seq", "prev", "hash")
    with AuditLog(path) as log_file:
        for record in audit.records:
            fields = {k: v for k, v in record.items() if k not in chain}
            log_file.append(Record.model_validate(fields))


PROGRESS_EVERY = timedelta(minutes=1)  # of the recording's clock: a long capture shows it lives


async def record_to(
    settings: Settings,
    out: Path,
    duration: timedelta,
    progress: Callable[[str], None] | None = None,
) -> History:
    """Observe the settings' policies for ``duration``, writing the recording as it goes
    (an interrupted recording keeps every pass up to the last); ``progress`` gets a line
    after the first pass and then every :data:`PROGRESS_EVERY` of the recording's time."""
    policies = _policies(settings.policies)
    clock = clock_for(settings)
    credential = make_credential(settings.credential, settings.identity_client_id)
    shown: list[datetime] = []

    def on_pass(passes: int, history: History, now: datetime, end: datetime) -> None:
        if progress is None or (shown and now - shown[-1] < PROGRESS_EVERY):
            return
        shown.append(now)
        values = sum(len(points) for points in history.values.values())
        left = format_duration(max(end - now, timedelta(0)))
        objectives = len(history.values)
        progress(f"record: pass {passes}, {values} values of {objectives} objectives, {left} to go")

    async with AzureClients(settings, credential) as clients:
        with RecordingWriter(out, clock.now()) as writer:
            return await record(
                clients, clock, policies, duration, settings.interval, writer, on_pass
            )


def summary(results: Sequence[Backtest]) -> dict[str, Any]:
    """The JSON printed after a backtest: per set and target, what it would have done."""
    return {
        "backtests": [
            {
                "label": result.label,
                "from": result.start.isoformat(),
                "to": result.end.isoformat(),
                "effects": result.effects,
                "mode": result.mode,
                "targets": {
                    t.policy: _rounded(json.loads(json.dumps(asdict(t.summary), default=str)))
                    for t in result.targets
                },
            }
            for result in results
        ]
    }


def _rounded(value: Any) -> Any:
    """Floats to six decimals: a summary shows 0.0138, not 0.013818005999999999."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _policies(paths: Sequence[Path]) -> list[Policy]:
    return [item.policy for item in load_policies(paths)]
