"""Every bad input is refused with exit 2 and one line naming where: FILE:LINE for a
policy or settings file, the variable for the environment. Never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli import main

POLICY = """\
apiVersion: remediator/v1
kind: Policy
metadata:
  name: api-cpu
target:
  type: containerApp
  resourceId: /subscriptions/0000/resourceGroups/rg/providers/Microsoft.App/containerApps/api
interval: 30s
objectives:
  - name: cpu
    signal:
      metric: CpuPercentage
      grain: 1m
    comparison: "<"
    threshold: 70
    for: 5m
remediation:
  - scaleOut: {step: 1, maxReplicas: 4}
  - scaleUp: {maxCpu: 1.0}
guards:
  cooldown: 5m
  bounds: {maxReplicas: 4, maxCpu: 1.0}
stepBack:
  baseline: {minReplicas: 1, cpu: 0.5}
"""

COSMOS = """\
apiVersion: remediator/v1
kind: Policy
metadata:
  name: cosmos-ru
target:
  type: cosmosSqlDatabase
  resourceId: /subscriptions/0000/resourceGroups/rg/providers/Microsoft.DocumentDB/databaseAccounts/acct/sqlDatabases/db
objectives:
  - name: ru
    signal: {metric: NormalizedRUConsumption}
    comparison: "<"
    threshold: 90
    for: 5m
remediation:
  - raiseThroughput: {step: 1000, maxThroughput: 4000}
stepBack:
  baseline: {throughput: 1000}
"""


def laughs(depth: int = 5) -> str:
    """A billion-laughs file: each key's list holds nine aliases of the one before."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for n in range(1, depth + 1):
        lines.append(f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


# (id, file text, the line named, what the message says)
POLICIES = [
    (
        "huge-cooldown",
        POLICY.replace("cooldown: 5m", "cooldown: 99999999999999999999d"),
        21,
        "guards.cooldown: a duration may be at most 3650d",
    ),
    (
        "huge-for",
        POLICY.replace("for: 5m", "for: 99999999999999999999d"),
        16,
        "objectives.0.for: a duration may be at most 3650d",
    ),
    ("nul-byte", POLICY.replace("name: cpu", "name: c\x00pu"), 10, "character #x0000"),
    ("deep", "kind: " + "[" * 5000 + "]" * 5000 + "\n", 1, "nested deeper than 64 levels"),
    ("billion-laughs", laughs(), 5, "aliases expand the file by more than 10000 values"),
    ("oversized", POLICY + "#" * (1024 * 1024) + "\n", 0, "larger than 1 MiB"),
    (
        "interval-below-1s",
        POLICY.replace("interval: 30s", "interval: 500ms"),
        8,
        "interval: must be at least 1s",
    ),
    ("threshold-nan", POLICY.replace("threshold: 70", "threshold: .nan"), 15, "finite number"),
    ("threshold-inf", POLICY.replace("threshold: 70", "threshold: .inf"), 15, "finite number"),
    (
        "stale-after-below-grain",
        POLICY.replace("for: 5m", "for: 5m\n    staleAfter: 30s"),
        17,
        "staleAfter: must be at least one grain (1m)",
    ),
    (
        "baseline-replicas-above-bounds",
        POLICY.replace("minReplicas: 1,", "minReplicas: 5,"),
        24,
        "stepBack.baseline.minReplicas: 5 is above guards.bounds.maxReplicas (4)",
    ),
    (
        "baseline-cpu-above-bounds",
        POLICY.replace("cpu: 0.5", "cpu: 2.0"),
        24,
        "stepBack.baseline.cpu: 2 is above guards.bounds.maxCpu (1)",
    ),
    (
        "baseline-throughput-above-max",
        COSMOS.replace("throughput: 1000", "throughput: 5000"),
        17,
        "stepBack.baseline.throughput: 5000 is above remediation.0.raiseThroughput.maxThroughput",
    ),
    (
        "bare-number-duration",
        POLICY.replace("cooldown: 5m", "cooldown: 10"),
        21,
        "guards.cooldown: a duration needs a unit: write 10s",
    ),
]


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the command: it must exit 2 with one line, and no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_the_policies_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The table's policies are good until each row breaks one thing."""
    for name, text in (("api.yaml", POLICY), ("cosmos.yaml", COSMOS)):
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert main(["validate", str(tmp_path)]) == 0


@pytest.mark.parametrize("command", ["validate", "plan", "run"])
@pytest.mark.parametrize(
    ("text", "line", "message"), [row[1:] for row in POLICIES], ids=[row[0] for row in POLICIES]
)
def test_a_bad_policy_exits_2_naming_file_and_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    text: str,
    line: int,
    message: str,
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    for var in ("REMEDIATOR_CONFIG", "REMEDIATOR_INTERVAL", "REMEDIATOR_LOG_LEVEL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("REMEDIATOR_POLICIES", str(path))
    monkeypatch.setenv("REMEDIATOR_AUDIT_PATH", str(tmp_path / "audit.jsonl"))
    argv = ["validate", str(path)] if command == "validate" else [command]
    err = refused(capsys, [*argv, "--once"] if command == "run" else argv)
    where = f"{path}:{line}: " if line else f"{path}: "  # no line 0: the file as a whole
    assert err.startswith(where), err
    assert message in err


# (id, environment, settings file text or None, what the message starts with)
SETTINGS = [
    (
        "huge-interval",
        {"REMEDIATOR_INTERVAL": "99999999999999999999d"},
        None,
        "interval: a duration may be at most 3650d",
    ),
    ("interval-below-1s", {"REMEDIATOR_INTERVAL": "0.5s"}, None, "interval: must be at least 1s"),
    ("bare-interval", {"REMEDIATOR_INTERVAL": "30"}, None, "interval: a duration needs a unit"),
    ("empty-policies", {"REMEDIATOR_POLICIES": ""}, None, "policies: is empty"),
    ("nan-jitter", {"REMEDIATOR_JITTER": "nan"}, None, "jitter: Input should be a finite number"),
    (
        "unknown-log-level",
        {"REMEDIATOR_LOG_LEVEL": "chatty"},
        None,
        "REMEDIATOR_LOG_LEVEL: 'chatty'",
    ),
    ("unknown-log-format", {"REMEDIATOR_LOG_FORMAT": "xml"}, None, "REMEDIATOR_LOG_FORMAT: 'xml'"),
    (
        "deep-json",
        {"REMEDIATOR_BUDGETS": '{"a":' * 5000 + "1" + "}" * 5000},
        None,
        "REMEDIATOR_BUDGETS: invalid JSON",
    ),
    ("file-nul-byte", {}, "mode: dry-run\ninterval: 3\x000s\n", "{file}:2: not YAML text"),
    ("file-deep", {}, "budgets: " + "[" * 5000 + "]" * 5000 + "\n", "{file}:1: nested deeper"),
    ("file-laughs", {}, laughs(), "{file}:5: aliases expand the file"),
    (
        "file-huge-interval",
        {},
        "interval: 99999999999999999999d\n",
        "interval: a duration may be at most 3650d",
    ),
]


@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize(
    ("environ", "text", "expected"), [row[1:] for row in SETTINGS], ids=[row[0] for row in SETTINGS]
)
def test_a_bad_setting_exits_2_naming_where(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    environ: dict[str, str],
    text: str | None,
    expected: str,
) -> None:
    for var in ("REMEDIATOR_CONFIG", "REMEDIATOR_INTERVAL", "REMEDIATOR_LOG_LEVEL"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "policy.yaml").write_text(POLICY, encoding="utf-8")
    monkeypatch.setenv("REMEDIATOR_POLICIES", str(tmp_path / "policy.yaml"))
    monkeypatch.setenv("REMEDIATOR_AUDIT_PATH", str(tmp_path / "audit.jsonl"))
    for var, value in environ.items():
        monkeypatch.setenv(var, value)
    argv = [command, "--once"] if command == "run" else [command]
    file = tmp_path / "settings.yaml"
    if text is not None:
        file.write_text(text, encoding="utf-8")
        argv += ["--config", str(file)]
    err = refused(capsys, argv)
    assert err.startswith(expected.format(file=file)), err
    where = str(file) if text is not None else next(iter(environ))
    assert where in err
