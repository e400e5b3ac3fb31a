"""The ``remediator`` command.

Exit codes: 0 success; 1 a command that ran and found a problem (a target that could
not be read, a broken audit chain, a file that could not be written); 2 bad input
(policies, settings, scenario, usage).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext, suppress
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from textwrap import dedent, indent
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import yaml

from controller import approvals, kill_switch, permissions, render, run_log
from controller.audit.anchor import AnchorUnreadable
from controller.audit.chain import Verification
from controller.audit.keys import key_from_environment
from controller.audit.lock import AuditLocked
from controller.audit.log import (
    AuditCorrupt,
    AuditKeyError,
    MemoryAudit,
    check_file,
    read_records,
)
from controller.audit.partitions import partition_logs_in
from controller.audit.repair import repair
from controller.audit.series import check_series
from controller.audit.show import RecordFilter, Tail, follow, parse_kinds, parse_since
from controller.background import run_until_stopped
from controller.backtest.history import RecordingError, read_recording
from controller.backtest.model import Backtest
from controller.backtest.prices import Prices, PricesError, load_prices
from controller.backtest.sources import HistoryUnavailable
from controller.clock import VirtualClock
from controller.config import Settings, SettingsError, load_settings
from controller.durations import parse_duration
from controller.emulator import Scenario, ScenarioError, list_scenarios, load_scenario
from controller.loop import PassFailure
from controller.model import Mode
from controller.policy.json_schema import policy_json_schema
from controller.policy.loader import PolicyError, load_policies, policy_files
from controller.policy.schema import Guards
from controller.reconcile import PassResult
from controller.registry import UnknownPlugin
from controller.runtime import Runtime, clock_for, open_runtime, survey_targets
from controller.server import serving
from controller.settings_view import settings_view
from controller.telemetry import configure_logging

if TYPE_CHECKING:
    from controller.emulator import Emulator

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
EXIT_SIGNALS_FAILED = 3  # plan / run --once: a signal could not be read, its verdict unknown
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
T = TypeVar("T")


class BadOption(ValueError):
    """A command-line value that cannot be used (exit 2)."""


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("console", "json")
DEMO_LISTEN = "127.0.0.1:9464"  # the demo's endpoints when it lingers and --listen is not given

EXIT_CODES = """\
exit codes:
  0  success
  1  failure: the command ran and found a problem (a target that could not be read,
     a selector whose discovery was not believed, a broken audit chain, a file that
     could not be written)
  2  bad input: policies, settings, scenario or usage
  3  plan, run --once: every target was read, but a signal failed (HTTP 500, 403,
     a timeout): its objective is unknown, the cause in the WHY column
  130  interrupted (Ctrl-C); a recording keeps what it captured

Every command's --help shows examples."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # the demo prints its own story; a replay's decisions are in its report, not the log
    quiet = args.command in ("demo", "backtest", "report")
    level = os.environ.get("REMEDIATOR_LOG_LEVEL", "warning" if quiet else "info")
    log_format = os.environ.get("REMEDIATOR_LOG_FORMAT", "console")
    for var, value, known in (
        ("REMEDIATOR_LOG_LEVEL", level.lower(), LOG_LEVELS),
        ("REMEDIATOR_LOG_FORMAT", log_format, LOG_FORMATS),
    ):
        if value not in known:
            print(
                f"{var}: {value!r} is not one of {', '.join(known)} (from the environment)",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
    configure_logging(level, json=log_format == "json")
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:  # Ctrl-C is how a person stops a command: one line, no trace
        print(f"remediator {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (
        PolicyError,
        SettingsError,
        ScenarioError,
        UnknownPlugin,
        RecordingError,
        PricesError,
        BadOption,
    ) as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_INPUT
    except AuditCorrupt as exc:
        print(
            f"{exc}; run `remediator audit verify {exc.path}`, then `remediator audit repair "
            f"{exc.path}`: it keeps the good lines (and the memory in them) and sets the rest "
            "aside",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except (AuditLocked, AuditKeyError, AnchorUnreadable) as exc:
        print(f"remediator {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except HistoryUnavailable as exc:  # a backtest's backends did not answer
        print(f"remediator {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # a port taken, a file that cannot be written: no traceback
        print(f"remediator {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return code


def _version() -> str:
    try:
        return version("remediator")
    except PackageNotFoundError:
        return "unknown"


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    examples: str,
) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with examples, laid out as written."""
    return sub.add_parser(
        name,
        help=summary,
        description=summary,
        epilog="examples:\n" + indent(dedent(examples).strip("\n"), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remediator",
        description="Guarded, automated remediation of Azure workloads from SLO policies.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = _command(
        sub,
        "validate",
        "check policy files; FILE:LINE for every problem",
        """
          remediator validate policies/
          remediator validate policies/agentstudio-api.yaml new-policy.yaml
        """,
    )
    p.add_argument("paths", nargs="+", help="policy files or folders")
    p.set_defaults(handler=_validate)

    p = _command(
        sub,
        "plan",
        "one dry-run pass: what would be done, and why",
        """
          remediator plan --config settings.yaml
          remediator plan --config settings.yaml --output json | jq '.[] | select(.action)'
        """,
    )
    p.add_argument("--config", help="settings file (YAML)")
    p.add_argument("--output", choices=("table", "json"), default="table")
    p.set_defaults(handler=_plan)

    p = _command(
        sub,
        "targets",
        "what each policy covers now: a selector asks Resource Graph, nothing acts",
        """
          remediator targets --config settings.yaml
          remediator targets --config settings.yaml --output json | jq '.targets | length'
        """,
    )
    p.add_argument("--config", help="settings file (YAML)")
    p.add_argument("--output", choices=("table", "json"), default="table")
    p.set_defaults(handler=_targets)

    p = _command(
        sub,
        "run",
        "run the controller",
        """
          remediator run --config settings.yaml            # dry-run unless the file says live
          REMEDIATOR_MODE=live remediator run --config settings.yaml
          remediator run --config settings.yaml --once     # one pass of every target
        """,
    )
    p.add_argument("--config", help="settings file (YAML)")
    p.add_argument("--once", action="store_true", help="one pass of every target, then exit")
    p.set_defaults(handler=_run)

    p = _command(
        sub,
        "pause",
        "stop all actions (survives restarts) until resume",
        """
          remediator pause --config settings.yaml --reason "INC-1234: hands off"
        """,
    )
    p.add_argument("--config", help="settings file (YAML): the pause file is the one it names")
    p.add_argument("--reason", help="why, for the audit and the status")
    p.set_defaults(handler=_pause)

    p = _command(
        sub,
        "resume",
        "allow actions again after `remediator pause`",
        """
          remediator resume --config settings.yaml
        """,
    )
    p.add_argument("--config", help="settings file (YAML)")
    p.set_defaults(handler=_resume)

    for verb in ("approve", "reject"):
        p = _command(
            sub,
            verb,
            f"{verb} a pending-approval decision by its id",
            f"""
              remediator {verb} 7c1e4b2a --config settings.yaml --by alice
            """,
        )
        p.add_argument("id", help="the request's id, from `remediator approvals`")
        p.add_argument("--config", help="settings file (YAML)")
        p.add_argument("--by", help="who says so (default: user@host)")
        p.set_defaults(handler=_answer, verdict=verb)

    p = _command(
        sub,
        "approvals",
        "list the approval requests still waiting for an answer",
        """
          remediator approvals --config settings.yaml
          remediator approvals --config settings.yaml --output json | jq -r '.[].id'
        """,
    )
    p.add_argument("--config", help="settings file (YAML)")
    p.add_argument("--output", choices=("text", "json"), default="text")
    p.set_defaults(handler=_approvals)

    p = _command(
        sub,
        "permissions",
        "the Azure RBAC actions the controller needs",
        """
          remediator permissions | jq -r '.actions[]'
        """,
    )
    p.set_defaults(handler=_permissions)

    p = _command(
        sub,
        "audit",
        "work with the audit log",
        """
          remediator audit verify remediator-audit.jsonl
          remediator audit show --config settings.yaml --since 1h
        """,
    )
    audit_sub = p.add_subparsers(dest="audit_command", required=True)
    v = _command(
        audit_sub,
        "verify",
        "check the hash chain; name the first bad line",
        """
          remediator audit verify remediator-audit.jsonl
          REMEDIATOR_AUDIT_KEY=... remediator audit verify remediator-audit.jsonl
          remediator audit verify remediator-audit.jsonl --anchor /mnt/anchor/audit.anchor
          remediator audit verify remediator-audit.jsonl.3
          remediator audit verify --series remediator-audit.jsonl
        """,
    )
    v.add_argument("file", type=Path, help="the audit log, or one of its rotated files")
    v.add_argument(
        "--series",
        action="store_true",
        help="every rotated file (FILE.1, FILE.2 …) and then FILE, and each link between them",
    )
    _key_and_anchor(v)
    v.set_defaults(handler=_audit_verify)
    v = _command(
        audit_sub,
        "repair",
        "keep a broken log's good lines, set the rest aside, record the repair, carry on",
        """
          remediator audit repair remediator-audit.jsonl
          remediator audit repair remediator-audit.jsonl --by "alice (INC-1234)"
        """,
    )
    v.add_argument("file", type=Path)
    _key_and_anchor(v)
    v.add_argument("--by", help="who repairs, for the record (default: user@host)")
    v.set_defaults(handler=_audit_repair)
    v = _command(
        audit_sub,
        "show",
        "print audit records, filtered; --follow prints new ones as they are written",
        """
          remediator audit show remediator-audit.jsonl --since 30m
          remediator audit show --config settings.yaml --policy api-cpu --kind intent,result
          remediator audit show --config settings.yaml --target containerApps/api --follow
          remediator audit show audit.jsonl --since 2026-01-01T00:00Z --output json | jq .params
        """,
    )
    where = v.add_mutually_exclusive_group()
    where.add_argument("file", nargs="?", type=Path, help="the audit log (default: from settings)")
    where.add_argument("--config", help="settings file (YAML) naming the audit log")
    v.add_argument("--policy", help="only this policy")
    v.add_argument("--target", help="only targets whose resource ID contains this (any case)")
    v.add_argument(
        "--since", type=_since, help="only records this recent (30m, 2h) or from this time on"
    )
    v.add_argument("--kind", type=_kinds, help="only these kinds, comma-separated (intent,result)")
    v.add_argument("--output", choices=("text", "json"), default="text")
    v.add_argument(
        "--follow", action="store_true", help="keep printing records as they are appended"
    )
    v.set_defaults(handler=_audit_show)

    p = _command(
        sub,
        "config",
        "work with settings",
        """
          remediator config show --config settings.yaml
        """,
    )
    config_sub = p.add_subparsers(dest="config_command", required=True)
    v = _command(
        config_sub,
        "show",
        "the effective settings (file, environment, defaults), where each came from; "
        "secrets masked",
        """
          remediator config show --config settings.yaml
          REMEDIATOR_MODE=live remediator config show --config settings.yaml --output json
        """,
    )
    v.add_argument("--config", help="settings file (YAML)")
    v.add_argument("--output", choices=("yaml", "json"), default="yaml")
    v.set_defaults(handler=_config_show)

    p = _command(
        sub,
        "backtest",
        "replay history through the policies: what they would have done, and what it costs",
        """
          remediator backtest --config settings.yaml --from 2026-01-01T00:00Z --to 2026-01-08T00:00Z
          remediator backtest --config settings.yaml --recording incident.jsonl --report out.html
          remediator backtest --config settings.yaml --compare variant-policies/ --report cmp.html
          remediator backtest --scenario cpu-spike --policies-out variant/
          remediator backtest --scenario cpu-spike --compare variant/ --report demo.html
        """,
    )
    p.add_argument("--config", help="settings file (YAML): the policies and where signals live")
    p.add_argument(
        "--scenario",
        help="backtest a demo scenario: its policies on its emulated history (no Azure "
        f"needed): {', '.join(list_scenarios())}",
    )
    p.add_argument("--from", dest="start", help="start of the range (ISO 8601, UTC)")
    p.add_argument("--to", dest="end", help="end of the range (ISO 8601, UTC)")
    p.add_argument("--recording", type=Path, help="replay this recording, not the backends")
    p.add_argument("--compare", type=Path, nargs="+", default=[], help="a second policy set")
    p.add_argument(
        "--audit-out",
        type=Path,
        help="write the replay's audit log here (a new file), for `audit show` and `report`",
    )
    p.add_argument(
        "--policies-out",
        type=Path,
        help="with --scenario: keep the scenario's policies here, to edit into a variant",
    )
    p.add_argument("--no-effects", action="store_true", help="open loop: actions change nothing")
    p.add_argument("--prices", type=Path, help="a price table (YAML/JSON) overriding the defaults")
    p.add_argument("--report", type=Path, help="write the HTML report here")
    p.set_defaults(handler=_backtest)

    p = _command(
        sub,
        "report",
        "the backtest report from an audit log: what was done (or would have been) and why",
        """
          remediator report --audit remediator-audit.jsonl --report week.html
          remediator report --audit remediator-audit.jsonl --config settings.yaml --report week.html
        """,
    )
    p.add_argument(
        "--audit",
        type=Path,
        nargs="+",
        required=True,
        help="the audit log (dry-run or live); rotated files too, oldest first",
    )
    p.add_argument("--config", help="settings file: charts from the signal history too")
    p.add_argument("--prices", type=Path, help="a price table (YAML/JSON) overriding the defaults")
    p.add_argument("--report", type=Path, required=True, help="write the HTML report here")
    p.set_defaults(handler=_report)

    p = _command(
        sub,
        "record",
        "capture live observations into a recording, for backtests and for sharing an incident",
        """
          remediator record --config settings.yaml --out incident.jsonl --duration 2h
        """,
    )
    p.add_argument("--config", help="settings file (YAML)")
    p.add_argument("--out", type=Path, required=True, help="the recording to write (JSON lines)")
    p.add_argument("--duration", default="1h", help="how long to record (e.g. 30m, 2h)")
    p.set_defaults(handler=_record)

    p = _command(
        sub,
        "schema",
        "the policy JSON Schema, for editors that check YAML as you type",
        """
          remediator schema --output remediator-policy.schema.json
        """,
    )
    p.add_argument("--output", type=Path, help="write it here (default: standard output)")
    p.set_defaults(handler=_schema)

    p = _command(
        sub,
        "emulator",
        "serve the local Azure emulator",
        """
          remediator emulator --port 8480 --write-config /tmp/emu.yaml
          remediator emulator --scenario bad-deploy --speed 120
        """,
    )
    p.add_argument("--port", type=int, default=8480)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--scenario",
        default="cpu-spike",
        help=f"one of {', '.join(list_scenarios())}, or a scenario file (default: cpu-spike)",
    )
    p.add_argument("--speed", type=float, help="scenario seconds per wall second")
    p.add_argument("--write-config", type=Path, help="write controller settings for it here")
    p.add_argument("--lro-polls", type=int, default=1, help="polls before an update completes")
    p.add_argument(
        "--lro-retry-after", type=int, default=0, help="seconds asked between those polls"
    )
    p.add_argument(
        "--wobble",
        type=float,
        default=0.005,
        help="each minute's metrics vary by up to this fraction (0: exactly the model)",
    )
    p.set_defaults(handler=_emulator)

    p = _command(
        sub,
        "demo",
        "emulator and controller together, end to end",
        f"""
          remediator demo
          remediator demo --scenario memory-leak --dry-run
          remediator demo --instant --linger 300    # then open http://{DEMO_LISTEN}/
        """,
    )
    p.add_argument(
        "--scenario",
        default="cpu-spike",
        help=f"one of {', '.join(list_scenarios())}, or a scenario file (default: cpu-spike)",
    )
    p.add_argument("--dry-run", action="store_true", help="decide but do not change anything")
    p.add_argument("--audit", type=Path, help="keep the audit log here")
    p.add_argument("--speed", type=float, help="scenario seconds per wall second")
    p.add_argument(
        "--instant", action="store_true", help="run scenario time as fast as the machine allows"
    )
    p.add_argument(
        "--linger",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="keep the endpoints up this long after the scenario (Ctrl-C ends it)",
    )
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help=f"serve /metrics, /healthz, /readyz and / here during the demo; port 0 picks "
        f"one; 'off' for none (default: {DEMO_LISTEN} with --linger, else off)",
    )
    p.set_defaults(handler=_demo)
    return parser


def _since(text: str) -> datetime:
    try:
        return parse_since(text, datetime.now(UTC))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _kinds(text: str) -> frozenset[str]:
    try:
        return parse_kinds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}")
    return seconds


def _settings_path(args: argparse.Namespace) -> str | None:
    path: str | None = args.config or os.environ.get("REMEDIATOR_CONFIG")
    return path


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(_settings_path(args))
    except json.JSONDecodeError as exc:  # a REMEDIATOR_* variable holding broken JSON
        raise SettingsError(f"a REMEDIATOR_* variable holds invalid JSON: {exc}") from None


def _validate(args: argparse.Namespace) -> int:
    loaded = load_policies(args.paths)
    files = policy_files(args.paths)
    print(f"ok: {len(loaded)} policies in {len(files)} files")
    return EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    settings = _settings(args)
    policies = load_policies(settings.policies)

    async def one_pass() -> tuple[list[Any], list[str], Mapping[str, int]]:
        async with open_runtime(
            settings, mode=Mode.DRY_RUN, policies=policies, audit=MemoryAudit()
        ) as runtime:
            results = await runtime.loop.run_once()
            counts = runtime.expanded.per_policy if runtime.expanded is not None else {}
            return results, unseen(runtime), counts

    results, problems, counts = anyio.run(one_pass)
    if args.output == "json":
        print(json.dumps([render.pass_json(r) for r in results], indent=2))
        for problem in problems:  # stdout stays the JSON list a pipeline parses
            print(problem, file=sys.stderr)
    else:
        print(render.plan_table(results, counts))
        for problem in problems:
            print(problem)
    # a selector that could not be read is a target that could not be: not "nothing to do"
    return EXIT_FAILED if problems else pass_exit(results)


def unseen(runtime: Runtime) -> list[str]:
    """What the estate's targets lack: selectors whose answer was not believed (their
    last good set, or nothing, runs), and resources refused for two policies."""
    problems = [
        f"discovery not believed: policy {policy!r}: {why}"
        for policy, why in sorted(runtime.readiness.discovery.items())
    ]
    refused = runtime.expanded.refused if runtime.expanded is not None else {}
    return problems + [f"refused: {why}" for _, why in sorted(refused.items())]


def pass_exit(results: Sequence[PassResult | PassFailure]) -> int:
    """1 when a target could not be read, 3 when a signal could not be: "nothing to do"
    that is really "could not see" must fail a pipeline that gates on it."""
    if any(isinstance(r, PassFailure) for r in results):
        return EXIT_FAILED
    if any(r.failed_signals for r in results if isinstance(r, PassResult)):
        return EXIT_SIGNALS_FAILED
    return EXIT_OK


def _targets(args: argparse.Namespace) -> int:
    settings = _settings(args)
    policies = load_policies(settings.policies)
    survey = anyio.run(survey_targets, settings, policies)
    targets = survey.expanded.targets
    if args.output == "json":
        body = {
            "perPolicy": dict(survey.expanded.per_policy),
            "targets": [
                {
                    "policy": t.policy.name,
                    "resourceId": t.policy.target.resource_id,
                    "region": t.policy.target.region,
                }
                for t in targets
            ],
            "refused": dict(survey.expanded.refused),
            "problems": dict(survey.problems),
        }
        print(json.dumps(body, indent=2))
    else:
        print(render.targets_table(policies, targets, survey.problems))
        for why in survey.expanded.refused.values():
            print(f"refused: {why}")
    # a selector not believed, or a resource refused, is worth a non-zero exit in a pipeline
    return EXIT_FAILED if survey.problems or survey.expanded.refused else EXIT_OK


def _run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    policies = load_policies(settings.policies)
    return anyio.run(_run_async, settings, policies, args.once)


async def _run_async(settings: Settings, policies: Any, once: bool) -> int:
    async with open_runtime(settings, policies=policies) as runtime:
        if once:
            results = await runtime.loop.run_once()
            for result in results:
                print(render.pass_line(result, runtime.clock.now()))
            problems = unseen(runtime)
            for problem in problems:
                print(problem)
            return EXIT_FAILED if problems else pass_exit(results)
        app = runtime.app()
        address = settings.listen_address
        # bound before any task starts: a port taken is a plain OSError (exit 1), not a group
        endpoints: AbstractAsyncContextManager[object] = (
            serving(app, *address) if address is not None else nullcontext()
        )
        received: list[int] = []
        # open until the stop is over: a second signal does not cut the hand-over short
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:

            async def signalled() -> None:
                async for signum in signals:
                    received.append(signum)
                    return

            async with endpoints:
                run_log.started(settings, len(policies))
                await run_until_stopped(runtime, signalled)
    run_log.stopped(received[0] if received else None)
    return EXIT_INTERRUPTED if received == [signal.SIGINT] else EXIT_OK


def _approval_requests(settings: Settings) -> tuple[dict[str, approvals.Request], datetime]:
    """Every approval request of the settings' audit log, and the controller's "now"."""
    ttls: dict[str, timedelta] = {}
    with suppress(PolicyError):  # each policy's approvalTtl; without readable ones, the default
        loaded = load_policies(settings.policies)
        ttls = {item.policy.name: item.policy.guards.approval_ttl for item in loaded}
    default = Guards().approval_ttl
    paths = [settings.audit_path]
    if settings.shards.enabled and settings.shards.audit_dir is not None:
        paths += partition_logs_in(settings.shards.audit_dir)  # each target's, by partition
        if settings.shards.import_from is not None:  # asked before shards: still answerable
            paths.append(settings.shards.import_from)
    records = sorted(
        (r for path in paths if path.is_file() for r in read_records(path)),
        key=lambda r: str(r.get("ts")),
    )
    found = approvals.requests(
        records, lambda name: ttls.get(name, default), approvals.answers(settings.approvals_path)
    )
    return found, clock_for(settings).now()


def _answer(args: argparse.Namespace) -> int:
    settings = _settings(args)
    found, now = _approval_requests(settings)
    try:
        request = approvals.check(found, args.id, now)
    except approvals.NotAnswerable as exc:
        print(
            f"remediator {args.verdict}: {exc} (audit log {settings.audit_path}; "
            "`remediator approvals` lists the pending ones)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    approvals.answer(settings.approvals_path, request.id, args.verdict, args.by or approvals.who())
    done = "approved" if args.verdict == "approve" else "rejected"
    print(
        f"{done} {request.id} ({request.action} {render.params(request.params)} on "
        f"{request.policy}): the controller reads it on its next pass"
    )
    return EXIT_OK


def _approvals(args: argparse.Namespace) -> int:
    found, now = _approval_requests(_settings(args))
    waiting = approvals.pending(found, now)
    if args.output == "json":
        rows = [
            {
                "id": r.id,
                "policy": r.policy,
                "target": r.target,
                "action": r.action,
                "params": r.params,
                "askedAt": r.asked_at.isoformat(),
                "expiresAt": r.expires_at.isoformat(),
            }
            for r in waiting
        ]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not waiting:
        print("no approval requests pending")
    for r in waiting:
        left = render.number((r.expires_at - now).total_seconds() / 60, 0)
        print(
            f"{r.id}  {r.policy}  {r.action} {render.params(r.params)}  {r.target}  "
            f"expires {r.expires_at.isoformat()} (in {left}m)"
        )
    return EXIT_OK


def _permissions(args: argparse.Namespace) -> int:
    print(json.dumps({"actions": permissions.role_actions()}, indent=2))
    return EXIT_OK


def _pause_path(args: argparse.Namespace) -> Path:
    """The kill-switch file the controller reads: from its settings, never a guess, since
    a pause written where no controller looks stops nothing."""
    settings = _settings(args)
    named = ("REMEDIATOR_PAUSE_FILE", "REMEDIATOR_AUDIT_PATH")
    if _settings_path(args) is None and not any(os.environ.get(var) for var in named):
        raise BadOption(
            f"remediator {args.command}: give --config (the controller's settings) or set "
            "REMEDIATOR_PAUSE_FILE, so the pause file is the one the controller reads "
            f"(without them it would be {settings.pause_path.absolute()})"
        )
    return settings.pause_path.absolute()


def _pause(args: argparse.Namespace) -> int:
    path = _pause_path(args)
    kill_switch.pause(path, args.reason)
    print(f"paused: {path} written; every controller using it stops acting within one interval")
    return EXIT_OK


def _resume(args: argparse.Namespace) -> int:
    path = _pause_path(args)
    if kill_switch.resume(path):
        print(f"resumed: {path} removed")
    else:
        print(f"not paused: {path} does not exist")
    return EXIT_OK


def _key_and_anchor(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--key-file",
        type=Path,
        help="the audit key, for a keyed log (default: REMEDIATOR_AUDIT_KEY, "
        "REMEDIATOR_AUDIT_KEY_FILE)",
    )
    p.add_argument(
        "--anchor",
        type=Path,
        default=Path(os.environ["REMEDIATOR_AUDIT_ANCHOR"])
        if os.environ.get("REMEDIATOR_AUDIT_ANCHOR")
        else None,
        help="the log's anchor, to hold it to (default: REMEDIATOR_AUDIT_ANCHOR)",
    )


def _audit_verify(args: argparse.Namespace) -> int:
    if args.series:
        return _audit_verify_series(args.file)
    key = key_from_environment(args.key_file)
    if args.anchor is not None and not args.anchor.is_file():
        print(f"{args.anchor}: no anchor here", file=sys.stderr)
        return EXIT_BAD_INPUT
    repairs: list[dict[str, Any]] = []

    def note_repairs(record: dict[str, Any]) -> None:
        if record.get("kind") == "repair":
            repairs.append(record)

    try:
        check = check_file(args.file, key=key, anchor=args.anchor, each=note_repairs)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{args.file}: cannot read: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    notes = _verify_notes(check, key, repairs)
    if not check.ok:
        print(f"{args.file}:{check.first_bad}: {check.problem}", *notes, sep="\n", file=sys.stderr)
        return EXIT_FAILED
    if check.unguarded is not None:
        print(
            f"{args.file}: WARNING: {check.unguarded}; the chain is intact over "
            f"{check.lines} lines, but a controller will not start on it until "
            f"`remediator audit repair {args.file}` accepts it",
            *notes,
            sep="\n",
            file=sys.stderr,
        )
        return EXIT_FAILED
    torn = " (the last line is torn: a write was interrupted)" if check.torn else ""
    if check.first_seq > 1:
        torn += f" (seq {check.first_seq}..{check.last_seq}, from a snapshot)"
    print(f"ok: {check.lines} lines, chain intact{torn}", *notes, sep="\n")
    return EXIT_OK


def _verify_notes(
    check: Verification, key: bytes | None, repairs: list[dict[str, Any]]
) -> list[str]:
    """What the check could and could not prove, and each repair on record."""
    notes = [f"note: {note}" for note in check.notes]
    if check.keyed_from is None:
        notes.append("note: unkeyed (SHA-256): whoever edits a line can re-hash the chain")
    elif key is None:
        notes.append(
            f"note: keyed (hmac-sha256) from line {check.keyed_from}, and no key given: "
            "the chain's shape only is checked, not who sealed it"
        )
    else:
        notes.append(f"note: keyed (hmac-sha256) from line {check.keyed_from}, MACs checked")
    for record in repairs:
        notes.append(f"repair: line {record['seq']} ({record.get('ts')}): {record.get('reason')}")
    return notes


def _audit_repair(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        print(f"{args.file}: no audit log here", file=sys.stderr)
        return EXIT_BAD_INPUT
    done = repair(
        args.file, key=key_from_environment(args.key_file), anchor=args.anchor, by=args.by
    )
    if done is None:
        print(f"{args.file}: nothing to repair: the chain is intact")
        return EXIT_OK
    moved = f"; lines {done.kept + 1}..{done.kept + done.moved_lines} moved to {done.moved_to}"
    print(
        f"repaired: kept lines 1..{done.kept}"
        + (moved if done.moved_to else "")
        + f"; repair recorded as line {done.seq}"
    )
    return EXIT_OK


def _audit_verify_series(path: Path) -> int:
    try:
        check = check_series(path)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{path}: cannot read: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not check.ok:
        print(f"{check.bad_file}:{check.bad_line}: {check.problem}", file=sys.stderr)
        return EXIT_FAILED
    if check.files == 0:
        print(f"{path}: no audit log here", file=sys.stderr)
        return EXIT_BAD_INPUT
    note = f" (from seq {check.first_seq}: older files removed)" if check.first_seq > 1 else ""
    print(f"ok: {check.lines} lines in {check.files} files, chain intact{note}")
    return EXIT_OK


def _audit_show(args: argparse.Namespace) -> int:
    path: Path = args.file or _settings(args).audit_path
    if not args.follow and not path.is_file():
        print(f"{path}: no audit log here", file=sys.stderr)
        return EXIT_BAD_INPUT
    keep = RecordFilter(args.policy, args.target, args.since, args.kind)
    tail = Tail(path, on_bad=lambda problem: print(problem, file=sys.stderr))

    def emit(record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False) if args.output == "json" else None
        print(line or render.audit_line(record), flush=True)

    if not args.follow:
        for record in tail.read():
            if keep(record):
                emit(record)
        return EXIT_FAILED if tail.bad else EXIT_OK
    stop = threading.Event()
    # Ctrl-C is how a person stops following: like SIGTERM it ends the loop between
    # lines (a KeyboardInterrupt could land anywhere, even after the loop ended)
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        follow(tail, keep, emit, stopped=stop.is_set, sleep=stop.wait)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return EXIT_FAILED if tail.bad else EXIT_OK


def _config_show(args: argparse.Namespace) -> int:
    try:
        view = settings_view(_settings_path(args))
    except json.JSONDecodeError as exc:
        raise SettingsError(f"a REMEDIATOR_* variable holds invalid JSON: {exc}") from None
    print(view.as_json() if args.output == "json" else view.as_yaml())
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    text = json.dumps(policy_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}: see 'Editor support' in the README to use it")
    return EXIT_OK


def _emulator(args: argparse.Namespace) -> int:
    from controller import demo  # the emulator and the runtime: only here

    return anyio.run(
        demo.serve_emulator,
        args.scenario,
        args.host,
        args.port,
        args.speed,
        args.write_config,
        args.lro_polls,
        args.lro_retry_after,
        args.wobble,
    )


def _demo(args: argparse.Namespace) -> int:
    from controller import demo

    mode = Mode.DRY_RUN if args.dry_run else Mode.LIVE
    listen = _listen(args.listen or (DEMO_LISTEN if args.linger else "off"))
    if args.linger and listen is None:
        print("demo: --linger keeps the endpoints up: give --listen HOST:PORT", file=sys.stderr)
        return EXIT_BAD_INPUT
    virtual = VirtualClock(load_scenario(args.scenario).start) if args.instant else None
    summary = anyio.run(
        demo.run_demo, args.scenario, mode, args.audit, args.speed, virtual, listen, args.linger
    )
    print(json.dumps(summary, sort_keys=False))
    return EXIT_OK


def _listen(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` or ``off``, by the same rule as the ``listen`` setting."""
    return load_settings(None, environ={}, overrides={"listen": text}).listen_address


def _backtest(args: argparse.Namespace) -> int:
    from controller.backtest import commands as backtest_commands

    if args.audit_out is not None and args.audit_out.exists():
        raise BadOption(f"--audit-out: {args.audit_out} exists; an audit log is never written over")
    if args.scenario:
        return _run_returning(lambda: _backtest_scenario(args))
    if args.policies_out is not None:
        raise BadOption("--policies-out keeps a scenario's policies: give --scenario too")
    if _settings_path(args) is None and not os.environ.get("REMEDIATOR_POLICIES"):
        raise BadOption(
            "remediator backtest: the history is replayed through policies: give --config "
            "(settings naming them) or REMEDIATOR_POLICIES, or --scenario NAME for a demo's"
        )
    settings = _settings(args)
    prices = load_prices(args.prices) if args.prices else None
    history_span = read_recording(args.recording).span() if args.recording else None
    start = _moment(args.start) if args.start else (history_span[0] if history_span else None)
    end = _moment(args.end) if args.end else (history_span[1] if history_span else None)
    if start is None or end is None or end <= start:
        print("remediator backtest: give --from and --to (or a recording)", file=sys.stderr)
        return EXIT_BAD_INPUT
    results = _run_returning(
        lambda: backtest_commands.backtest(
            settings,
            start,
            end,
            recording=args.recording,
            compare=args.compare,
            effects=not args.no_effects,
            prices=prices,
            audit_out=args.audit_out,
        )
    )
    return _backtest_out(args, results, prices)


def _run_returning(work: Callable[[], Awaitable[T]]) -> T:
    """``anyio.run``, handing the result back from outside the event loop: asyncio
    formats a finished main task, result and all, when it restores the SIGINT handler,
    and for a replay's million points that costs seconds."""
    box: list[T] = []

    async def main() -> None:
        box.append(await work())

    anyio.run(main)
    return box[0]


def _backtest_out(args: argparse.Namespace, results: Any, prices: Prices | None) -> int:
    """The report (when asked for) and the JSON summary, the same for every history."""
    from controller.backtest import commands as backtest_commands
    from controller.backtest.report import render as render_report

    if args.report is not None:
        args.report.write_text(render_report(results, prices=prices or Prices()), encoding="utf-8")
        print(f"report: {args.report}", file=sys.stderr)
    _warn(results)
    print(json.dumps(backtest_commands.summary(results)))
    return EXIT_OK


def _warn(results: Sequence[Backtest]) -> None:
    """A replay that may understate demand says so on stderr, per policy and objective."""
    for result in results:
        for target in result.targets:
            for warning in target.summary.warnings:
                print(f"warning: {result.label}: {target.policy}: {warning}", file=sys.stderr)


def _record(args: argparse.Namespace) -> int:
    from controller.backtest import commands as backtest_commands

    settings = _settings(args)
    try:
        duration = parse_duration(args.duration)
    except ValueError as exc:
        raise BadOption(f"--duration: {exc}") from None
    try:
        history = anyio.run(
            lambda: backtest_commands.record_to(
                settings, args.out, duration, lambda line: print(line, file=sys.stderr, flush=True)
            )
        )
    except KeyboardInterrupt:  # the recording is written pass by pass: it stands as it is
        print(f"interrupted: {args.out} keeps every pass recorded so far", file=sys.stderr)
        return EXIT_INTERRUPTED
    points = sum(len(v) for v in history.values.values())
    print(f"recorded {points} values of {len(history.values)} objectives to {args.out}")
    return EXIT_OK


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadOption(f"{text!r} is not a time; use ISO 8601, e.g. 2026-01-01T00:00Z") from None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _report(args: argparse.Namespace) -> int:
    from controller.backtest import commands as backtest_commands
    from controller.backtest.from_audit import from_audit
    from controller.backtest.report import render as render_report

    records = [record for path in args.audit for record in read_records(path)]
    history = None
    policies: dict[str, Any] = {}
    if args.config:
        settings = _settings(args)
        loaded = [item.policy for item in load_policies(settings.policies)]
        policies = {p.name: p for p in loaded}
        stamps = [  # a policy's records: a repair line's time is not the history's
            datetime.fromisoformat(str(r["ts"]).replace("Z", "+00:00"))
            for r in records
            if r.get("policy")
        ]
        if stamps:
            history = anyio.run(
                lambda: backtest_commands.history_for(
                    settings, loaded, min(stamps), max(stamps), None
                )
            )
    prices = load_prices(args.prices) if args.prices else Prices()
    result = from_audit(records, " ".join(map(str, args.audit)), policies, history, prices)
    title = f"Remediator audit report ({result.mode})"
    args.report.write_text(render_report([result], title, prices=prices), encoding="utf-8")
    _warn([result])
    print(json.dumps(backtest_commands.summary([result])))
    return EXIT_OK


async def _backtest_scenario(args: argparse.Namespace) -> int:
    """The scenario's emulator, at the scenario's end, serves its whole history."""
    from controller.emulator import Emulator

    scenario = load_scenario(args.scenario)
    end = scenario.start + scenario.duration
    start = _moment(args.start) if args.start else scenario.start
    until = _moment(args.end) if args.end else end
    emulator = Emulator(scenario, now=lambda: end)
    kept = args.policies_out
    if kept is not None and kept.is_dir() and any(kept.glob("*.y*ml")):
        raise BadOption(f"--policies-out: {kept} already holds policies; give a new folder")
    with tempfile.TemporaryDirectory(prefix=f"{scenario.name}-policies-") as scratch:
        folder = kept or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        return await _backtest_scenario_in(args, scenario, emulator, folder, start, until)


async def _backtest_scenario_in(
    args: argparse.Namespace,
    scenario: Scenario,
    emulator: Emulator,
    folder: Path,
    start: datetime,
    until: datetime,
) -> int:
    from controller.backtest import commands as backtest_commands
    from controller.emulator.config_writer import policies_for

    async with emulator.serve() as base_url:
        for index, policy in enumerate(policies_for(scenario, base_url)):
            name = f"{index:02d}-{policy['metadata']['name']}.yaml"
            (folder / name).write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
        if args.policies_out is not None:
            print(f"the scenario's policies: {folder} (edit a copy for --compare)", file=sys.stderr)
        settings = load_settings(
            None,
            environ={},
            overrides={
                "credential": "emulator",
                "cloud": "custom",
                "armEndpoint": base_url,
                "metricsEndpoint": base_url,
                "logsEndpoint": base_url,
                "policies": str(folder),
                "interval": "30s",
            },
        )
        prices = load_prices(args.prices) if args.prices else None
        results = await backtest_commands.backtest(
            settings,
            start,
            until,
            compare=args.compare,
            effects=not args.no_effects,
            prices=prices,
            audit_out=args.audit_out,
            label=None if args.policies_out else f"{scenario.name}'s policies",
        )
    return _backtest_out(args, results, prices)


if __name__ == "__main__":
    sys.exit(main())
