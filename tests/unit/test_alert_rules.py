"""The alert rules shipped in deploy/prometheus pass promtool's checks and unit tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

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


def test_every_alert_is_tested_firing_from_absent_series() -> None:
    """The rule tests start where Prometheus does, before the controller is scraped: every
    input series is absent at first; and each alert has a test that sees it fire."""
    tests = yaml.safe_load((RULES / "remediator-alerts.test.yml").read_text())["tests"]
    rules = yaml.safe_load((RULES / "remediator-alerts.yml").read_text())["groups"]
    alerts = {rule["alert"] for group in rules for rule in group["rules"]}
    fired = set()
    for case in tests:
        for series in case["input_series"]:
            assert series["values"].startswith("_ "), series["series"]
        fired |= {t["alertname"] for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert fired == alerts
