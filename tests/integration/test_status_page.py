"""``GET /``: the status page answers "why did it act?" from memory and the audit tail."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from controller.audit.log import AuditLog, MemoryAudit, Record
from controller.clock import VirtualClock
from controller.core.breaker import Breaker
from controller.emulator import Emulator
from controller.loop import Loop
from controller.memory import ApprovalRequest, PendingVerification, target_key
from controller.model import ActionRecord, Mode, OutcomeKind, Verdict, VerdictState
from controller.policy.loader import LoadedPolicy
from controller.policy.schema import Policy
from controller.reconcile import PassResult, Reconciler
from controller.registry import Registry
from controller.runtime import open_runtime
from controller.server import make_app, serving
from controller.status import LastPasses, gather, pause_check, read_tail
from controller.status_page import render
from controller.telemetry import Metrics
from tests.conftest import APP_ID, START, emulator_settings, make_policy

pytestmark = pytest.mark.anyio

EXTERNAL = re.compile(r"<script|<link|src=|https?://", re.IGNORECASE)


@dataclass
class Page:
    status: int
    content_type: str
    text: str


async def get(url: str, method: str = "GET") -> Page:
    async with aiohttp.ClientSession() as session, session.request(method, url) as response:
        return Page(response.status, response.content_type, await response.text())


@asynccontextmanager
async def controller_after_spike(
    tmp_path: Path, clock: VirtualClock, base_url: str
) -> AsyncIterator[str]:
    """The controller wired as the CLI wires it, 12 virtual minutes into the cpu spike
    (one scaleOut, then cooldown denials); yields the status server's base URL."""
    settings = emulator_settings(base_url, tmp_path, mode="live")
    loaded = [LoadedPolicy(make_policy(), "test", 1)]
    board = LastPasses()
    async with (
        open_runtime(
            settings, clock=clock, policies=loaded, rng=random.Random(1), on_pass=board.note
        ) as runtime,
        serving(
            make_app(
                runtime.loop,
                clock,
                runtime.metrics,
                runtime.elector,
                runtime.readiness,
                audit_path=settings.audit_path,
                mode=Mode.LIVE,
                paused=pause_check(settings),
                passes=board.by_target,
            ),
            "127.0.0.1",
            0,
        ) as base,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(runtime.loop.run)
        await clock.drive(START + timedelta(minutes=12), sleepers=1)
        yield base
        tg.cancel_scope.cancel()


async def test_the_status_page_says_why_the_controller_acted(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    emu, base_url = emulator
    async with controller_after_spike(tmp_path, clock, base_url) as base:
        page = await get(base + "/")
        posted = await get(base + "/", "POST")
    assert emu.writes == 1
    assert page.status == 200
    assert page.content_type == "text/html"
    html = page.text
    assert '<meta http-equiv="refresh" content="30">' in html  # the controller's interval
    assert "api-cpu" in html and APP_ID in html
    header = html.split("</header>")[0]
    assert "<dd>live</dd>" in header and "<dd>single</dd>" in header
    assert "not paused" in header and ">ready<" in header
    objective = re.search(r"<tr><td>cpu</td>(.*?)</tr>", html)
    assert objective, html
    assert "&lt; 70" in objective[1] and ">breach<" in objective[1]
    assert "80.37" in objective[1]
    decision = html.split("<h3>Last decision</h3>")[1].split("<h3>")[0]
    assert "scaleOut" in decision and ">deny<" in decision and ">cooldown<" in decision
    assert "cooldown: last action (scaleOut) 4m28s ago; cooldown is 5m" in decision
    action = html.split("<h3>Last action</h3>")[1].split("<h3>")[0]
    assert "scaleOut" in action and ">succeeded<" in action
    assert "cpu: breach: 100 vs objective &lt; 70" in action  # why it acted
    assert "1 of 4" in html.split("<h3>Budgets</h3>")[1]  # one action this hour, of 4
    assert "verification: scaleOut" in html  # judged once the effect had time to show
    recent = html.split('<section id="recent">')[1]
    assert recent.count("<tr><td>2026-01-01") == 13  # every line so far, newest first
    assert recent.index("4m28s ago") < recent.index("guards passed")
    assert not EXTERNAL.search(html)
    assert posted.status == 405  # read-only: no route changes state


def _reconciler(policy: Policy, clock: VirtualClock) -> Reconciler:
    return Reconciler(policy, Registry(), clock, Mode.LIVE, MemoryAudit(), Metrics())


def _record(**fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "ts": START,
        "kind": "decision",
        "policy": "api-cpu",
        "target": APP_ID,
        "verdict": "breach",
        "verdicts": [],
        "action": None,
        "params": {},
        "decision": None,
        "outcome": None,
        "before": {},
        "after": {},
        "reason": "",
        "mode": "dry-run",
        "reconcile_id": "r",
        **fields,
    }
    return Record.model_validate(values).model_dump(mode="json")


def test_text_from_data_is_escaped(clock: VirtualClock) -> None:
    """Reasons, verdicts and errors come from data: none of them becomes markup."""
    evil = "<script>alert(1)</script>"
    verdict = {"objective": "cpu", "state": "breach", "value": 99.0, "threshold": 70}
    records = [
        _record(
            action="scaleOut",
            decision="deny",
            guard="paused",
            reason=f"paused by {evil}",
            verdicts=[{**verdict, "reason": f"breach {evil}"}],
        )
    ]
    loop = Loop(
        [_reconciler(make_policy(), clock)], clock, Metrics(), interval=timedelta(seconds=30)
    )
    ready = (False, {"checks": {"credential": {"ok": False, "problem": evil}}})
    html = render(gather(loop, clock.now(), records, readiness=ready))
    assert "<script" not in html
    assert "paused by &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "breach &lt;script&gt;" in html
    assert "credential: &lt;script&gt;" in html
    header = html.split("</header>")[0]
    assert ">paused<" in header  # seen in the last decision, when no switch was wired
    assert "dry-run (per the audit log)" in header  # the mode when none was passed
    assert ">not ready<" in header


def test_breakers_budgets_and_pending_show_from_memory(clock: VirtualClock) -> None:
    """Open breakers with their opening time, budgets against their limits, and what
    waits for verification or for an operator's approval."""
    policy = make_policy(
        remediation=[{"scaleOut": {"step": 1, "maxReplicas": 4}}, {"restartRevision": {}}],
        interval="10m",
    )
    reconciler = _reconciler(policy, clock)
    memory = reconciler.memory
    now = START + timedelta(hours=2)
    memory.breakers = {
        "restartRevision": Breaker(consecutive_bad=3, opened_at=now - timedelta(minutes=5)),
        "scaleOut": Breaker(consecutive_bad=1),
    }
    memory.history = [
        ActionRecord(now - timedelta(minutes=m), a, OutcomeKind.FAILED)
        for m, a in ((90, "scaleOut"), (40, "scaleOut"), (10, "restartRevision"))
    ]
    memory.pending = PendingVerification("scaleOut", 0, now, now + timedelta(minutes=5), {})
    memory.approval = ApprovalRequest("ab12cd34", "restartRevision", {}, now)
    loop = Loop([reconciler], clock, Metrics(), interval=timedelta(seconds=2))
    status = gather(loop, now, [], pause_known=True)
    assert status.refresh == 600  # the policy's own interval
    assert [(b.action, b.state) for b in status.targets[0].breakers] == [
        ("restartRevision", "open"),
        ("scaleOut", "closed"),
    ]
    assert [(b.what, b.used, b.limit) for b in status.targets[0].budgets] == [
        ("all actions", 2, 4),
        ("restartRevision", 1, 1),  # the default: one restart in 15 minutes
        ("restartRevision", 1, 3),  # and three a day
    ]
    html = render(status)
    assert '<span class="bad">open</span></td><td>2026-01-01 01:55:00' in html
    assert '<span class="bad">1 of 1</span></td><td>in 15m' in html
    assert "verification: scaleOut (decided 02:00:00, judged from 02:05:00)" in html
    approval = html.split('<div class="approval">')[1].split("</div>")[0]
    assert "<b>Approval ab12cd34</b>: restartRevision" in approval
    assert "requested 2026-01-01 02:00:00 UTC; expires 2026-01-01 02:30:00 UTC" in approval
    assert "<kbd>remediator approve ab12cd34 --config SETTINGS</kbd>" in approval
    assert "<kbd>remediator reject ab12cd34 --config SETTINGS</kbd>" in approval
    assert "{" not in approval  # not a Python dict
    assert status.fleet is not None
    assert (status.fleet.breakers_open, status.fleet.approvals, status.fleet.acting) == (1, 1, 1)
    assert "not paused" in html and "No decision in the audit log yet." in html
    assert "cpu</td><td>CpuPercentage</td><td>—</td><td>&lt; 70</td>" in html  # no data
    quick = Loop(
        [_reconciler(make_policy(), clock)], clock, Metrics(), interval=timedelta(seconds=1)
    )
    assert gather(quick, now, []).refresh == 5  # never faster than every 5 s


def test_values_come_from_the_newest_audit_line_without_the_latest_passes(
    clock: VirtualClock,
) -> None:
    verdict = {"objective": "cpu", "state": "recovering", "threshold": 70, "reason": "r"}
    records = [
        _record(
            kind="verdict", ts=START + timedelta(minutes=3), verdicts=[{**verdict, "value": 65}]
        ),
        _record(kind="verdict", ts=START, verdicts=[{**verdict, "value": 99}]),
    ]
    loop = Loop(
        [_reconciler(make_policy(), clock)], clock, Metrics(), interval=timedelta(seconds=30)
    )
    (cpu,) = gather(loop, clock.now(), records).targets[0].objectives
    assert (cpu.value, cpu.state, cpu.as_of) == (65, "recovering", "2026-01-01T00:03:00Z")
    # the audit writes a line only when something changed; the latest pass is newer
    now = Verdict("cpu", VerdictState.OK, 41.5, 70, "ok")
    policy = make_policy()
    key = target_key(policy.name, policy.target.resource_id)
    passes = {key: PassResult("api-cpu", (now,), None, None, "all objectives met")}
    loop.health.last_tick["api-cpu"] = START + timedelta(minutes=9)
    (cpu,) = gather(loop, clock.now(), records, passes=passes).targets[0].objectives
    assert (cpu.value, cpu.state, cpu.as_of) == (41.5, "ok", "2026-01-01T00:09:00Z")


def test_the_audit_tail_is_read_backwards_and_bounded(tmp_path: Path) -> None:
    """Newest first, stopping once it has enough; a torn last line is skipped; and no
    more than ``limit`` bytes are read however large the file."""
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        for minute in range(300):
            kind = "result" if minute in (5, 290) else "verdict"
            outcome = "succeeded" if kind == "result" else None
            ts = START + timedelta(minutes=minute)
            log.append(Record.model_validate(_record(ts=ts, kind=kind, outcome=outcome)))
    with path.open("a", encoding="utf-8") as file:
        file.write('{"ts": "2026-01-01T05:00:00Z", "policy": "api-')  # torn by a crash
    tail = read_tail(path, ["api-cpu"], recent=5)
    assert [r["ts"][11:16] for r in tail] == [
        "04:59", "04:58", "04:57", "04:56", "04:55", "04:54", "04:53", "04:52", "04:51", "04:50"
    ]  # fmt: skip
    everything = read_tail(path, ["api-cpu", "other"], recent=5)  # "other" never decided
    assert len(everything) == 300 and everything[-1]["ts"].startswith("2026-01-01T00:00")
    line = len(json.dumps(tail[0], ensure_ascii=False)) + 1
    bounded = read_tail(path, ["other"], recent=5, limit=10 * line)
    assert 8 <= len(bounded) <= 10
    assert read_tail(tmp_path / "missing.jsonl", ["api-cpu"]) == []


SECURITY = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def test_every_answer_carries_the_security_headers(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """The page may load nothing but its own stylesheet, be framed by no one, sniffed into
    no other type, and leak no Referer: on every route, errors included."""
    async with (
        controller_after_spike(tmp_path, clock, emulator[1]) as base,
        aiohttp.ClientSession() as session,
    ):
        answers = {}
        for method, path in [("GET", p) for p in ("/", "/metrics", "/healthz", "/readyz")] + [
            ("GET", "/nowhere"),
            ("POST", "/"),
        ]:
            async with session.request(method, base + path) as response:
                answers[method, path] = (response.status, dict(response.headers))
                if (method, path) == ("GET", "/"):
                    html = await response.text()
    assert answers["GET", "/nowhere"][0] == 404 and answers["POST", "/"][0] == 405
    for (method, path), (_, headers) in answers.items():
        for name, value in SECURITY.items():
            assert headers.get(name) == value, (method, path, name)
        policy = dict(
            d.split(" ", 1) for d in headers["Content-Security-Policy"].split("; ") if " " in d
        )
        assert policy["default-src"] == "'none'", (method, path)
        assert policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'none'"
        assert policy["form-action"] == "'none'"
    # the page's one stylesheet is what the policy allows, by hash; no style attribute
    # (a hash does not cover those) and nothing else to load
    page_policy = answers["GET", "/"][1]["Content-Security-Policy"]
    style = html.split("<style>")[1].split("</style>")[0]
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in page_policy
    assert html.count("<style>") == 1 and " style=" not in html


async def test_a_signal_that_cannot_be_read_shows_its_cause(
    tmp_path: Path, clock: VirtualClock, emulator: tuple[Emulator, str]
) -> None:
    """Metrics answering 500: the page says so, not only "no objective in breach"."""
    emu, base_url = emulator
    emu.set_fault("metrics-error")
    settings = emulator_settings(base_url, tmp_path)
    loaded = [LoadedPolicy(make_policy(), "test", 1)]
    board = LastPasses()
    async with (
        open_runtime(
            settings, clock=clock, policies=loaded, rng=random.Random(1), on_pass=board.note
        ) as runtime,
        serving(
            make_app(
                runtime.loop,
                clock,
                runtime.metrics,
                audit_path=settings.audit_path,
                passes=board.by_target,
            ),
            "127.0.0.1",
            0,
        ) as base,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(runtime.loop.run)
        await clock.drive(START + timedelta(minutes=2), sleepers=1)
        html = (await get(base + "/")).text
        tg.cancel_scope.cancel()
    cause = "cpu: signal failed: HTTP 500 InternalServerError"
    now = html.split("Now: ")[1].split("</p>")[0]
    assert now == f"no objective in breach (unknown); {cause}"
    recent = html.split('<section id="recent">')[1]
    assert cause in recent  # the audit line carries it


def test_an_unknown_verdict_is_counted_and_says_why(clock: VirtualClock) -> None:
    """Memory keeps the last known state (breach); the latest pass could not read the
    signal: the target counts as unknown, first in line, with the cause in words."""
    policy = make_policy()
    quiet = _reconciler(make_policy(metadata={"name": "quiet-cpu"}), clock)
    troubled = _reconciler(policy, clock)
    troubled.memory.last_known["cpu"] = VerdictState.BREACH
    quiet.memory.last_known["cpu"] = VerdictState.OK
    failed = Verdict("cpu", VerdictState.UNKNOWN, None, 70, "signal failed: HTTP 500")
    key = target_key(policy.name, policy.target.resource_id)
    passes = {key: PassResult("api-cpu", (failed,), None, None, "no objective in breach")}
    loop = Loop([quiet, troubled], clock, Metrics(), interval=timedelta(seconds=30))
    status = gather(loop, clock.now(), [], passes=passes)
    assert status.fleet is not None
    assert (status.fleet.targets, status.fleet.breaching, status.fleet.unknown) == (2, 1, 1)
    assert [p.unknown for p in status.policies] == [1, 0]
    assert status.targets[0].unknown == ("cpu: signal failed: HTTP 500",)
    assert status.targets[1].unknown == ()
    html = render(status)
    assert '<tr class="total"><td>all policies</td><td>2</td>' in html
    assert (
        '<p class="cause"><span class="muted">unknown</span> cpu: signal failed: HTTP 500' in html
    )


async def test_with_shards_the_page_reads_the_logs_of_the_partitions_held(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """Each partition's lines are in its own log: the page's recent lines come from every
    partition the replica holds, newest first."""
    paths = [tmp_path / "partition-000.jsonl", tmp_path / "partition-001.jsonl"]
    for minute, path in enumerate(paths):
        with AuditLog(path) as log:
            log.append(
                Record.model_validate(
                    {
                        "ts": START + timedelta(minutes=minute),
                        "kind": "decision",
                        "policy": "api-cpu",
                        "target": APP_ID,
                        "verdict": "breach",
                        "verdicts": [],
                        "action": "scaleOut",
                        "params": {},
                        "decision": "deny",
                        "reason": f"held in {path.stem}",
                        "mode": "live",
                        "outcome": None,
                        "before": {},
                        "after": {},
                        "reconcile_id": "r",
                    }
                )
            )
    loop = Loop([], clock, Metrics(), interval=timedelta(seconds=30))
    app = make_app(loop, clock, Metrics(), audit_paths=lambda: paths, mode=Mode.LIVE)
    async with serving(app, "127.0.0.1", 0) as base:
        page = await get(f"{base}/")
    assert page.status == 200
    newest, oldest = (
        page.text.index("held in partition-001"),
        page.text.index("held in partition-000"),
    )
    assert newest < oldest
