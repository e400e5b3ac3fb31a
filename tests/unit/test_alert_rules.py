"""The alert rules shipped in deploy/prometheus pass promtool's checks and unit tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests import prometheus

RULES = Path(__file__).parents[2] / "deploy" / "prometheus"


def promtool() -> str:
    binary = prometheus.prometheus_binary()
    tool = Path(binary).with_name("promtool") if binary else None
    if tool is None or not tool.exists():
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (Debian's prometheus package)")
        pytest.skip("promtool is not installed (Debian's prometheus package)")
    return str(tool)


@pytest.mark.parametrize(
    "args",
    [("check", "rules", "remediator-alerts.yml"), ("test", "rules", "remediator-alerts.test.yml")],
)
def test_promtool_accepts_the_rules(args: tuple[str, ...]) -> None:
    run = subprocess.run([promtool(), *args], cwd=RULES, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout
