"""The ``remediator`` command.

Exit codes: 0 success; 1 a runtime failure; 2 bad input (policies, settings, usage).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from controller import approvals, demo, kill_switch, permissions, render
from controller.audit.log import AuditCorrupt, MemoryAudit, check_file
from controller.clock import VirtualClock
from controller.config import Settings, SettingsError, load_settings
from controller.emulator import ScenarioError, load_scenario
from controller.loop import PassFailure
from controller.model import Mode
from controller.policy.loader import PolicyError, load_policies, policy_files
from controller.registry import UnknownPlugin
from controller.runtime import open_runtime
from controller.server import make_app, serving
from controller.telemetry import configure_logging

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging(
        os.environ.get("REMEDIATOR_LOG_LEVEL", "warning" if args.command == "demo" else "info"),
        json=os.environ.get("REMEDIATOR_LOG_FORMAT", "console") == "json",
    )
    try:
        code: int = args.handler(args)
    except (PolicyError, SettingsError, ScenarioError, UnknownPlugin) as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_INPUT
    except AuditCorrupt as exc:
        print(
            f"{exc}; run `remediator audit verify {exc.path}` and move the file aside",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remediator",
        description="Guarded, automated remediation of Azure workloads from SLO policies.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check policy files; FILE:LINE for every problem")
    p.add_argument("paths", nargs="+", help="policy files or folders")
    p.set_defaults(handler=_validate)

    p = sub.add_parser("plan", help="one dry-run pass: what would be done, and why")
    p.add_argument("--config", help="settings file (YAML)")
    p.add_argument("--output", choices=("table", "json"), default="table")
    p.set_defaults(handler=_plan)

    p = sub.add_parser("run", help="run the controller")
    p.add_argument("--config", help="settings file (YAML)")
    p.add_argument("--once", action="store_true", help="one pass of every target, then exit")
    p.set_defaults(handler=_run)

    p = sub.add_parser("pause", help="stop all actions (survives restarts) until resume")
    p.add_argument("--config", help="settings file (YAML)")
    p.add_argument("--reason", help="why, for the audit and the status")
    p.set_defaults(handler=_pause)

    p = sub.add_parser("resume", help="allow actions again after `remediator pause`")
    p.add_argument("--config", help="settings file (YAML)")
    p.set_defaults(handler=_resume)

    for verb in ("approve", "reject"):
        p = sub.add_parser(verb, help=f"{verb} a pending-approval decision by its id")
        p.add_argument("id")
        p.add_argument("--config", help="settings file (YAML)")
        p.add_argument("--by", default=os.environ.get("USER", "an operator"), help="who says so")
        p.set_defaults(handler=_answer, verdict=verb)

    p = sub.add_parser("permissions", help="the Azure RBAC actions the controller needs")
    p.set_defaults(handler=_permissions)

    p = sub.add_parser("audit", help="work with the audit log")
    audit_sub = p.add_subparsers(dest="audit_command", required=True)
    v = audit_sub.add_parser("verify", help="check the hash chain; name the first bad line")
    v.add_argument("file", type=Path)
    v.set_defaults(handler=_audit_verify)

    p = sub.add_parser("emulator", help="serve the local Azure emulator")
    p.add_argument("--port", type=int, default=8480)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--scenario", default="cpu-spike", help="shipped name or path to YAML")
    p.add_argument("--speed", type=float, help="scenario seconds per wall second")
    p.add_argument("--write-config", type=Path, help="write controller settings for it here")
    p.add_argument("--lro-polls", type=int, default=1, help="polls before an update completes")
    p.add_argument(
        "--lro-retry-after", type=int, default=0, help="seconds asked between those polls"
    )
    p.set_defaults(handler=_emulator)

    p = sub.add_parser("demo", help="emulator and controller together, end to end")
    p.add_argument("--scenario", default="cpu-spike")
    p.add_argument("--dry-run", action="store_true", help="decide but do not change anything")
    p.add_argument("--audit", type=Path, help="keep the audit log here")
    p.add_argument("--speed", type=float, help="scenario seconds per wall second")
    p.add_argument(
        "--instant", action="store_true", help="run scenario time as fast as the machine allows"
    )
    p.set_defaults(handler=_demo)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    path = args.config or os.environ.get("REMEDIATOR_CONFIG")
    return load_settings(path)


def _validate(args: argparse.Namespace) -> int:
    loaded = load_policies(args.paths)
    files = policy_files(args.paths)
    print(f"ok: {len(loaded)} policies in {len(files)} files")
    return EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    settings = _settings(args)
    policies = load_policies(settings.policies)

    async def one_pass() -> list[Any]:
        async with open_runtime(
            settings, mode=Mode.DRY_RUN, policies=policies, audit=MemoryAudit()
        ) as runtime:
            return await runtime.loop.run_once()

    results = anyio.run(one_pass)
    if args.output == "json":
        print(json.dumps([render.pass_json(r) for r in results], indent=2))
    else:
        print(render.plan_table(results))
    return EXIT_FAILED if any(isinstance(r, PassFailure) for r in results) else EXIT_OK


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
            return EXIT_FAILED if any(isinstance(r, PassFailure) for r in results) else EXIT_OK
        app = make_app(
            runtime.loop, runtime.clock, runtime.metrics, runtime.elector, runtime.readiness
        )
        address = settings.listen_address
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_on_signal, tg.cancel_scope)
            if runtime.elector is not None:
                tg.start_soon(runtime.elector.run)
            if runtime.escalator is not None:
                tg.start_soon(runtime.escalator.run)
            if address is None:
                await runtime.loop.run()
            else:
                async with serving(app, *address):
                    await runtime.loop.run()
    return EXIT_OK


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


def _answer(args: argparse.Namespace) -> int:
    path = _settings(args).approvals_path
    approvals.answer(path, args.id, args.verdict, args.by)
    print(f"{args.verdict}d {args.id}: the controller reads it on its next pass")
    return EXIT_OK


def _permissions(args: argparse.Namespace) -> int:
    print(json.dumps({"actions": permissions.role_actions()}, indent=2))
    return EXIT_OK


def _pause(args: argparse.Namespace) -> int:
    path = _settings(args).pause_path
    kill_switch.pause(path, args.reason)
    print(f"paused: {path} written; every controller using it stops acting within one interval")
    return EXIT_OK


def _resume(args: argparse.Namespace) -> int:
    path = _settings(args).pause_path
    if kill_switch.resume(path):
        print(f"resumed: {path} removed")
    else:
        print(f"not paused: {path} does not exist")
    return EXIT_OK


def _audit_verify(args: argparse.Namespace) -> int:
    try:
        check = check_file(args.file)
    except OSError as exc:
        print(f"{args.file}: cannot read: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not check.ok:
        print(f"{args.file}:{check.first_bad}: {check.problem}", file=sys.stderr)
        return EXIT_FAILED
    note = " (the last line is torn: a write was interrupted)" if check.torn else ""
    print(f"ok: {check.lines} lines, chain intact{note}")
    return EXIT_OK


def _emulator(args: argparse.Namespace) -> int:
    return anyio.run(
        demo.serve_emulator,
        args.scenario,
        args.host,
        args.port,
        args.speed,
        args.write_config,
        args.lro_polls,
        args.lro_retry_after,
    )


def _demo(args: argparse.Namespace) -> int:
    mode = Mode.DRY_RUN if args.dry_run else Mode.LIVE
    virtual = VirtualClock(load_scenario(args.scenario).start) if args.instant else None
    summary = anyio.run(demo.run_demo, args.scenario, mode, args.audit, args.speed, virtual)
    print(json.dumps(summary, sort_keys=False))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
