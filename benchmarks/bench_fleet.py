"""The controller's cost per simulated minute for a fleet of 100, 1,000 and 10,000 targets.

The emulator and the controller each run as their own process, as in production: the
emulator serves a generated fleet scenario (``count: N`` Container Apps in one
subscription and region) at ``--speed`` scenario seconds per wall second and writes the
settings; ``remediator run --config`` reads them: one selector policy over the fleet
(``--policies per-app``: one policy per app), on a 60 s interval.

The controller runs as the image installs it (``--install production``, the default): the
wheel built from this checkout, in a virtualenv of its own with the runtime dependencies
at the versions of ``constraints.txt`` and none of the dev extra (``.bench/production``,
made on first use; the wheel is rebuilt every run). A dev tool can change what is
imported: structlog imports ``rich`` (which ``import-linter`` brings) when it is there.
``--install dev`` runs the checkout's own venv instead.

For each size the controller is left to warm up, then measured over a window of
simulated minutes: its CPU seconds (utime + stime from ``/proc/<pid>/stat``), its peak
RSS (``VmHWM``), the emulator's requests by kind (``GET /_emulator/requests``), passes
per target and the worst loop lag (the controller's ``/metrics``, scraped outside the
window so the scrape is not counted). A quiet fleet (nothing breaching) gives the steady
state; a second run with a few apps over their CPU objective gives a breaching minute.

    python benchmarks/bench_fleet.py [--sizes 100,1000,10000] [--speed 6] [--minutes 3]
        [--breaching 5] [--install production|dev] [--write docs/benchmarks.md]
        [--profile DIR]

``--profile DIR`` samples the controller with py-spy over the window (``pip install
py-spy``; ``DIR/controller-N.txt``, collapsed stacks for a flame graph).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parents[1]))
from benchmarks.sections import replace_sections

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
GROUP = "rg-fleet"
REGION = "eastus"
INTERVAL_S = 60
TICK = os.sysconf("SC_CLK_TCK")
HEADING = "Fleet: cost per simulated minute for 100, 1,000 and 10,000 targets"
# the same fleet with one policy an app: a section of its own beside the selector's
HEADINGS = {"selector": HEADING, "per-app": "Fleet: one policy an app instead of a selector"}
ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = ROOT / ".bench" / "production"
MB = 1_000_000 / 2**20  # MiB in a (decimal) megabyte: the targets are in MB
TARGETS_MB = {100: 80, 10000: 250}
CPU_TARGET_S = 3.0  # a simulated minute's CPU-seconds for 10,000 targets: 5 % of a core


def production_python() -> str:
    """The interpreter of a virtualenv holding what the image holds: this checkout's wheel
    and its runtime dependencies (constraints.txt), no dev extra."""
    python = PRODUCTION / "bin" / "python"
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PRODUCTION)], check=True)
        subprocess.run(
            [*pip, "install", "-c", str(ROOT / "constraints.txt"), str(ROOT)], check=True
        )
    # the checkout as it is now, not as it was when the venv was made
    subprocess.run([*pip, "install", "--no-deps", "--force-reinstall", str(ROOT)], check=True)
    return str(python)


def app_name(i: int) -> str:
    return f"app-{i:05d}"


def app_id(i: int) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/"
        f"Microsoft.App/containerApps/{app_name(i)}"
    )


def policy(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "remediator/v1",
        "kind": "Policy",
        "metadata": {"name": f"app-{i}"},
        "target": {"type": "containerApp", "resourceId": app_id(i), "region": REGION},
        "objectives": [
            {
                "name": "cpu",
                "signal": {"metric": "CpuPercentage", "aggregation": "Average", "grain": "1m"},
                "comparison": "<",
                "threshold": 70,
                "for": "3m",
            }
        ],
        "remediation": [{"scaleOut": {"maxReplicas": 4}}],
    }


def selector_policy(n: int) -> dict[str, Any]:
    """One policy over the whole fleet: the estate found by its tag in Resource Graph."""
    one = policy(0)
    one["metadata"] = {"name": "fleet-cpu"}
    one["target"] = {
        "type": "containerApp",
        "selector": {
            "subscriptions": [SUBSCRIPTION],
            "tags": {"remediator/policy": "fleet"},
            "maxTargets": n,
        },
    }
    return one


def scenario(n: int, speed: float, breaching: list[int]) -> dict[str, Any]:
    """N quiet apps (0.15 cores of 0.5: 30 % CPU); ``breaching`` ones at 0.8 (100 %)."""
    entry: dict[str, Any] = {
        "type": "containerApp",
        "count": n,
        "name": "app-{i:05d}",
        "resourceGroup": GROUP,
        "location": REGION,
        "minReplicas": 1,
        "maxReplicas": 10,
        "containers": [{"name": "app", "image": "fleet/app:1.0.0", "cpu": 0.5, "memory": "1Gi"}],
        "workload": {"cpuDemandCores": 0.15, "baseMemoryMiB": 300},
        "tags": {"remediator/policy": "fleet"},
    }
    if breaching:
        entry["vary"] = [{"indices": breaching, "workload": {"cpuDemandCores": 0.8}}]
    return {
        "name": f"bench-fleet-{n}",
        "description": "benchmarks/bench_fleet.py",
        "start": "2026-01-01T00:00:00Z",
        "duration": "24h",
        "speed": speed,
        "interval": f"{INTERVAL_S}s",
        "subscription": SUBSCRIPTION,
        "resources": [entry],
    }


PER_FILE = 1000  # policies per file: a policy file may be at most 1 MiB


def write_policies(folder: Path, n: int, shape: str) -> None:
    """``selector``: one policy whose selector finds the fleet. ``per-app``: one policy per
    app, a thousand to a file, as a team would keep them (the loader and the file watcher
    cost what ten files cost, not ten thousand)."""
    folder.mkdir()
    if shape == "selector":
        (folder / "fleet.yaml").write_text(yaml.safe_dump(selector_policy(n), sort_keys=False))
        return
    for first in range(1, n + 1, PER_FILE):
        docs = [policy(i) for i in range(first, min(first + PER_FILE, n + 1))]
        (folder / f"fleet-{first:05d}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 120) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return bytes(r.read())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def kind(request: dict[str, Any]) -> str:
    path, method = request["path"].lower(), request["method"]
    if path.endswith("metrics:getbatch"):
        return "metrics batch"
    if path.endswith("/providers/microsoft.insights/metrics"):
        return "metrics single"
    if "microsoft.resourcegraph" in path:
        return "Resource Graph"
    if "/providers/microsoft.app/" in path:
        return f"ARM {method}"
    return f"other {method}"


def scrape(listen: str) -> dict[str, float]:
    """Passes so far and the worst loop lag, from the controller's /metrics."""
    passes = 0.0
    lag = 0.0
    for line in get(f"http://{listen}/metrics").decode().splitlines():
        if line.startswith("remediator_reconcile_passes_total{"):
            passes += float(line.rsplit(" ", 1)[1])
        elif line.startswith("remediator_loop_lag_seconds{"):
            lag = max(lag, float(line.rsplit(" ", 1)[1]))
    return {"passes": passes, "lag": lag}


def reported(audit: Path) -> int:
    """Targets with a line in the audit log (each writes its first verdict)."""
    if not audit.exists():
        return 0
    targets = set()
    for line in audit.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line being written
        if record.get("policy") and record.get("target"):
            targets.add((record["policy"], record["target"]))
    return len(targets)


@dataclass
class Run:
    n: int
    breaching: int
    minutes: float  # simulated minutes measured
    cpu: float  # controller CPU seconds in the window
    hwm_mib: float
    rss_mib: float
    calls: Counter[str]
    passes: float  # from every target's first pass to the end, scaled to the window
    lag: float  # worst lag of any target's last pass, scenario seconds
    startup_s: float  # wall seconds from start to every target's first pass

    def per_minute(self, value: float) -> float:
        return value / self.minutes


def measure(
    n: int,
    speed: float,
    minutes: float,
    breaching: int,
    mode: str,
    profile: Path | None,
    shape: str = "selector",
    python: str = sys.executable,
) -> Run:
    hot = [round(1 + k * (n - 1) / max(breaching - 1, 1)) for k in range(breaching)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = folder / "fleet.yaml"
        spec.write_text(yaml.safe_dump(scenario(n, speed, hot), sort_keys=False))
        config = folder / "settings.yaml"
        port = free_port()
        emulator = subprocess.Popen(
            [
                *(sys.executable, "-m", "controller", "emulator", "--scenario", str(spec)),
                *("--port", str(port), "--speed", str(speed), "--write-config", str(config)),
            ],
            stdout=subprocess.DEVNULL,
        )
        controller = None
        try:
            while not (config.exists() and "clock" in config.read_text()):
                if emulator.poll() is not None:
                    raise SystemExit(f"the emulator exited {emulator.returncode}")
                time.sleep(0.1)
            policies = folder / "policies"
            write_policies(policies, n, shape)
            settings = yaml.safe_load(config.read_text())
            settings["policies"] = str(policies)
            config.write_text(yaml.safe_dump(settings, sort_keys=False))
            listen = f"127.0.0.1:{free_port()}"
            env = {
                **os.environ,
                "REMEDIATOR_LISTEN": listen,
                "REMEDIATOR_MODE": mode,
                "REMEDIATOR_LOG_LEVEL": "warning",
            }
            command = [python, "-m", "controller"]
            started = time.monotonic()
            controller = subprocess.Popen(  # outside the checkout: the installed package runs
                [*command, "run", "--config", str(config)],
                env=env,
                stdout=subprocess.DEVNULL,
                cwd=folder if python != sys.executable else None,
            )
            audit = config.with_name(f"{config.stem}.audit.jsonl")
            while reported(audit) < n:  # every target has passed once (its first verdict)
                time.sleep(1.0)
                if controller.poll() is not None:
                    raise SystemExit(f"the controller exited {controller.returncode}")
            ready = time.monotonic()
            startup = ready - started
            time.sleep(INTERVAL_S / speed)  # one more interval: jitter settles
            requests_before = len(json.loads(get(f"http://127.0.0.1:{port}/_emulator/requests")))
            cpu_before = cpu_seconds(controller.pid)
            spy = None
            if profile is not None:  # sampled from outside, without slowing the controller
                out = profile / f"controller-{n}{'-breaching' if breaching else ''}.txt"
                spy = subprocess.Popen(
                    [
                        *("py-spy", "record", "--pid", str(controller.pid), "--nonblocking"),
                        *("--duration", str(int(minutes * 60 / speed)), "--format", "raw"),
                        *("--output", str(out)),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            time.sleep(minutes * 60 / speed)
            if spy is not None:
                spy.wait()
            cpu = cpu_seconds(controller.pid) - cpu_before
            hwm = status_kib(controller.pid, "VmHWM") / 1024
            rss = status_kib(controller.pid, "VmRSS") / 1024
            since_ready = (time.monotonic() - ready) * speed / 60
            requests = json.loads(get(f"http://127.0.0.1:{port}/_emulator/requests"))
            # scraped last: rendering 10,000 targets' series is costly and not the loop's work
            scraped = scrape(listen)
        finally:
            for proc in (controller, emulator):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGINT if proc is controller else signal.SIGTERM)
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
    return Run(
        n=n,
        breaching=breaching,
        minutes=minutes,
        cpu=cpu,
        hwm_mib=hwm,
        rss_mib=rss,
        calls=Counter(kind(r) for r in requests[requests_before:]),
        passes=(scraped["passes"] - n) / since_ready * minutes,
        lag=scraped["lag"],
        startup_s=startup,
    )


KINDS = ("metrics batch", "metrics single", "ARM GET", "ARM PATCH", "Resource Graph")


def row(run: Run, speed: float) -> str:
    pm = run.per_minute
    calls = " | ".join(f"{pm(run.calls.get(k, 0)):.1f}" for k in KINDS)
    other = sum(v for k, v in run.calls.items() if k not in KINDS)
    share = pm(run.cpu) / 60 * 100
    return (
        f"| {run.n:,} | {run.breaching} | {pm(run.cpu):.2f} | {share:.1f} % | "
        f"{run.hwm_mib:.0f} | {pm(run.passes) / run.n:.2f} | {run.lag:.1f} | {calls} | "
        f"{pm(other):.1f} | {run.startup_s:.0f} |"
    )


SHAPES = {
    "selector": "All targets come from one policy (`fleet-cpu`) whose selector (a tag, in one "
    "subscription) Resource Graph answers: each app it finds is a target of its own, with "
    "the region from the graph (batched metrics reads)",
    "per-app": "Each target is one policy (`app-{i}`) aimed at one Container App with its "
    "region given (batched metrics reads); every labelled series a policy implies exists "
    "from start, ~100 series (~28 KiB) a policy",
}


def report(
    runs: list[Run],
    quiet: list[Run],
    speed: float,
    minutes: float,
    argv: str,
    shape: str,
    install: str = "production",
) -> list[str]:
    lines = [
        f"Produced by `python benchmarks/bench_fleet.py {argv}` on "
        f"{datetime.now(UTC):%Y-%m-%d} ({os.cpu_count()} cores, shared). Emulator and "
        f"controller each in its own process; the emulator's scenario time runs at {speed:g}× "
        f"and every figure is per **simulated** minute, measured over {minutes:g} simulated "
        "minutes after every target has passed once and one more interval has gone by.",
        "",
        f"{SHAPES[shape]}; one objective (CPU < 70 % for 3m, 1m grain), a "
        f"{INTERVAL_S} s interval with 10 % jitter. Live mode: a quiet fleet never acts, so "
        "it is the same as dry-run; the breaching apps act (scale out) as they would in Azure. "
        "CPU is the controller's utime + stime (`/proc/PID/stat`); RSS its `VmHWM`; calls "
        "are what the emulator received; passes per target and the worst loop lag (scenario "
        "seconds) come from the controller's `/metrics`, scraped outside the window. "
        "Targets: 10,000 targets ≤ 3 CPU-s per minute (5 % of a core) and ≤ 250 MB of RSS "
        f"({250 * MB:.1f} MiB); 100 targets ≤ 80 MB ({80 * MB:.1f} MiB); metrics batches "
        "≤ ⌈N/50⌉ per group and minute; 0 ARM reads in a quiet minute. The controller is "
        + (
            "installed as the image installs it: the wheel and its runtime dependencies, no "
            "dev extra."
            if install == "production"
            else "the checkout's dev venv (with the dev extra: `rich`, which structlog "
            "imports when present, adds ~10 MiB)."
        ),
        "",
        "| targets | breaching | CPU s / min | of a core | peak RSS MiB | passes / target "
        "/ min | max lag s | metrics batch | metrics single | ARM GET | ARM PATCH | "
        "Resource Graph | other | start-up wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [row(r, speed) for r in runs]
    by_n = {r.n: r for r in quiet}
    growth = []
    for small, large in ((100, 1000), (1000, 10000)):
        if small in by_n and large in by_n:
            a, b = by_n[small], by_n[large]
            growth.append(
                f"{large:,}/{small:,}: CPU ×{b.per_minute(b.cpu) / a.per_minute(a.cpu):.1f}, "
                f"RSS ×{b.hwm_mib / a.hwm_mib:.1f}, metrics batches "
                f"×{b.calls['metrics batch'] / max(a.calls['metrics batch'], 1):.1f}"
            )
    if growth:
        lines += ["", "Growth with N (quiet fleet): " + "; ".join(growth) + "."]
    bound = [
        f"⌈{r.n}/50⌉ = {math.ceil(r.n / 50)}: {r.per_minute(r.calls['metrics batch']):.1f}"
        for r in quiet
    ]
    lines += ["", "Metrics batches per minute against the bound: " + "; ".join(bound) + "."]
    lines += ["", verdict(runs), "", *(BOUNDS if shape == "selector" else PER_APP)]
    return lines


def verdict(runs: list[Run]) -> str:
    """Each measured size against its targets, met or not, in this run's figures."""
    said = []
    for run in runs:
        limit = TARGETS_MB.get(run.n)
        if limit is None:
            continue
        kind = f"{run.n:,} targets" + (f" ({run.breaching} breaching)" if run.breaching else "")
        mb = run.hwm_mib / MB
        met = "met" if mb <= limit else "not met"
        memory = f"peak RSS {run.hwm_mib:.0f} MiB = {mb:.0f} MB (≤ {limit} MB: **{met}**)"
        if run.n == 10000:
            cpu = run.per_minute(run.cpu)
            ok = "met" if cpu <= CPU_TARGET_S else "not met"
            memory += f", {cpu:.2f} CPU-s a minute (≤ {CPU_TARGET_S:g}: **{ok}**)"
        said.append(f"{kind}: {memory}")
    return "Against the targets, in this run: " + "; ".join(said) + "." if said else ""


BOUNDS = [
    "What bounds the cost (py-spy over the window at 10,000 targets, `--profile DIR`; "
    "tracemalloc and `gc` callbacks in a separate run): a quiet pass makes no Azure call "
    "of its own — the group's batch read serves it — so the CPU is the passes themselves "
    "(reconcile bookkeeping, metric series, the event loop: about half), the 200 batch "
    "calls through the SDK pipeline and decoding their JSON (about a third; aiohttp looks "
    "up proxy settings in a thread for every request), and the cyclic garbage collector "
    "(~9 %). The collector was a fifth of the CPU: a full collection walked every "
    "target's standing objects (1.5 million) several times a minute; they are now frozen "
    "out of it once every target has passed, and young collections run every 10,000 "
    "allocations, so a pass's garbage dies young.",
    "",
    "Memory is the interpreter with what the run command imports (~70 MiB as the image "
    "installs it: ~17 MiB of it pydantic's validators for the policy schema, then aiohttp, "
    "the Azure core pipeline and the batch metrics client; each Azure management SDK, the "
    "storage SDK and azure-identity are imported with their first client, not at start) "
    "plus ~15 KiB a target, which a run of minutes already holds in full (the status "
    "page's track of 40 passes is taken at its full size at the first). Of a target's "
    "share (tracemalloc, 2,000 targets), ~4.4 KiB is its task in the loop (anyio's task "
    "handle with its cancel scope and end event, the suspended coroutines of a sleep), "
    "~2 KiB its last metric series, ~1.2 KiB its policy's own parts (the copy naming its "
    "resource; objectives, ladder, guards and the set of given fields are shared with the "
    "selector's template), ~1.1 KiB its track, ~1 KiB its memory (the reconciler's and "
    "the audit log's), ~0.8 KiB what discovery found of it, ~0.4 KiB the reconciler "
    "itself; its gauges are one dict entry each and no series is labelled by target. "
    "The largest share, the task, is how the loop keeps a target's schedule, backoff and "
    "cancellation its own; a loop scheduling every target from one task would take most "
    "of it, and is not done here.",
]


PER_APP = [
    "The targets are set for an estate in selector policies (the section above); this "
    "shape shows what writing one policy a resource costs instead. The CPU is about the "
    "same: a pass is a pass. The memory is not: every labelled series a policy implies "
    "(passes by result, decisions by action and guard, verdicts by state, efficacy …) is "
    "created when the policy loads, so that an alert on `increase()` sees its first event, "
    "~100 series a policy where a selector's are shared by all its targets. An estate of "
    "thousands belongs in selector policies.",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--speed", type=float, default=6.0)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--breaching", type=int, default=5, help="0: skip the breaching runs")
    parser.add_argument("--breaching-sizes", default="10000")
    parser.add_argument("--mode", default="live", choices=("live", "dry-run"))
    parser.add_argument("--profile", type=Path)
    parser.add_argument(
        "--install",
        default="production",
        choices=("production", "dev"),
        help="the controller as the image installs it, or the checkout's dev venv",
    )
    parser.add_argument("--write", type=Path)
    parser.add_argument(
        "--policies",
        default="selector",
        choices=("selector", "per-app"),
        help="one selector policy over the fleet, or one policy per app",
    )
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    python = production_python() if args.install == "production" else sys.executable
    quiet = []
    for n in sizes:
        quiet.append(
            measure(n, args.speed, args.minutes, 0, args.mode, args.profile, args.policies, python)
        )
        print(row(quiet[-1], args.speed), flush=True)
    runs = list(quiet)
    if args.breaching:
        for n in (int(s) for s in args.breaching_sizes.split(",")):
            runs.append(
                measure(
                    *(n, args.speed, args.minutes, args.breaching, args.mode, None),
                    *(args.policies, python),
                )
            )
            print(row(runs[-1], args.speed), flush=True)
    argv = " ".join(a for a in sys.argv[1:])
    argv = re.sub(r"\s+", " ", argv).strip()
    lines = report(runs, quiet, args.speed, args.minutes, argv, args.policies, args.install)
    heading = HEADINGS[args.policies]
    print(f"## {heading}\n\n" + "\n".join(lines))
    if args.write:
        replace_sections(args.write, {heading: lines})


if __name__ == "__main__":
    main()
