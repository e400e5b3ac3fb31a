"""`remediator config show`: the effective settings, where each came from, and no secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.cli import main
from controller.settings_view import (
    mask_connection_string,
    mask_url,
    mask_webhook,
    settings_view,
)

WEBHOOK = "https://hooks.example.com/services/T0001/B0002/HOOKPATHSECRET?token=QUERYSECRET"
CONNECTION = (
    "DefaultEndpointsProtocol=https;AccountName=remediatorlease;"
    "AccountKey=ACCOUNTKEYSECRET+/==;EndpointSuffix=core.windows.net"
)
SECRETS = ("HOOKPATHSECRET", "QUERYSECRET", "ACCOUNTKEYSECRET", "T0001", "B0002")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(
        "mode: dry-run\n"
        "interval: 45s\n"
        "leaderElection:\n"
        "  enabled: true\n"
        "  container: lease\n"
        "  accountUrl: https://remediatorlease.blob.core.windows.net\n"
        "budgets: {globalPerHour: 5}\n"
    )
    return path


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REMEDIATOR_CONFIG", "REMEDIATOR_MODE", "REMEDIATOR_PAUSE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REMEDIATOR_ESCALATION_WEBHOOK", WEBHOOK)
    monkeypatch.setenv(
        "REMEDIATOR_LEADER_ELECTION",
        json.dumps({"enabled": True, "connectionString": CONNECTION}),
    )
    monkeypatch.setenv("REMEDIATOR_MODE", "live")


def show(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["config", "show", *args]) == 0
    return capsys.readouterr().out


@pytest.mark.usefixtures("secret_env")
@pytest.mark.parametrize("output", ["yaml", "json"])
def test_secrets_from_the_environment_never_appear(
    capsys: pytest.CaptureFixture[str], config: Path, output: str
) -> None:
    """The webhook keeps scheme and host, the connection string its keys; no secret part."""
    out = show(capsys, "--config", str(config), "--output", output)
    for secret in SECRETS:
        assert secret not in out
    assert "https://hooks.example.com/***" in out
    assert "AccountName=remediatorlease" in out and "AccountKey=***" in out
    assert "EndpointSuffix=core.windows.net" in out


@pytest.mark.usefixtures("secret_env")
def test_json_names_where_every_value_came_from(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    """File keys by FILE:LINE, variables by name (replacing the file's value whole), else default."""
    view = json.loads(show(capsys, "--config", str(config), "--output", "json"))
    values, origins = view["settings"], view["origins"]
    assert values["mode"] == "live" and values["interval"] == "45s"
    assert origins["mode"] == "environment variable REMEDIATOR_MODE"
    assert origins["interval"] == f"{config}:2"
    assert origins["budgets.globalPerHour"] == f"{config}:7"
    assert origins["budgets.subscriptionBurst"] == "default"
    assert origins["jitter"] == "default"
    # the variable's JSON replaced the file's mapping: its container is the default again
    assert values["leaderElection"]["container"] == "remediator"
    assert origins["leaderElection.connectionString"] == (
        "environment variable REMEDIATOR_LEADER_ELECTION"
    )
    assert origins["leaderElection.container"] == "default"
    assert origins["escalationWebhook"] == "environment variable REMEDIATOR_ESCALATION_WEBHOOK"
    assert values["requestTimeout"] == "30s"  # durations as a settings file writes them
    assert set(origins) == set(leaves(values))


def leaves(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict) and value:
        return [leaf for k, v in value.items() for leaf in leaves(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def test_yaml_is_a_settings_file_commented_with_origins(
    capsys: pytest.CaptureFixture[str], config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The YAML parses back to the values, so it can seed a settings file; comments say why."""
    monkeypatch.delenv("REMEDIATOR_MODE", raising=False)
    monkeypatch.setenv("REMEDIATOR_CONFIG", str(config))
    out = show(capsys)
    assert f"interval: 45s  # {config}:2" in out
    assert f"  container: lease  # {config}:5" in out
    assert "jitter: 0.1  # default" in out
    assert yaml.safe_load(out) == settings_view(config).values


def test_bad_settings_exit_2_naming_the_key(
    capsys: pytest.CaptureFixture[str], config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMEDIATOR_MODE", "yolo")
    assert main(["config", "show", "--config", str(config)]) == 2
    assert "mode:" in capsys.readouterr().err


def test_broken_json_in_a_variable_is_bad_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a traceback: exit 2, like any other bad setting."""
    monkeypatch.delenv("REMEDIATOR_CONFIG", raising=False)
    monkeypatch.setenv("REMEDIATOR_LEADER_ELECTION", "{enabled: true")
    assert main(["config", "show"]) == 2
    assert "invalid JSON" in capsys.readouterr().err
    assert main(["pause"]) == 2


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (WEBHOOK, "https://hooks.example.com/***"),
        ("https://prod-12.westeurope.logic.azure.com:443/workflows/abc/triggers?sig=S", None),
        ("https://user:pass@hooks.example.com/x", "https://***@hooks.example.com/***"),
        ("https://hooks.example.com", "https://hooks.example.com"),
    ],
)
def test_webhook_keeps_scheme_and_host(url: str, shown: str | None) -> None:
    masked = mask_webhook(url)
    if shown is not None:
        assert masked == shown
    assert "abc" not in masked and "sig" not in masked and "pass" not in masked


def test_other_urls_lose_userinfo_and_query_values() -> None:
    url = "https://admin:hunter2@prom.internal:9090/api?token=abc&x=1"
    assert mask_url(url) == "https://***@prom.internal:9090/api?token=***&x=***"
    assert mask_url("https://management.azure.com") == "https://management.azure.com"


def test_connection_string_parts_that_are_credentials() -> None:
    sas = (
        "BlobEndpoint=https://acct.blob.core.windows.net/;"
        "SharedAccessSignature=sv=2022-11-02&ss=b&sig=SIGSECRET"
    )
    assert mask_connection_string(sas) == (
        "BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=***"
    )
    assert mask_connection_string(CONNECTION).count("***") == 1


def test_a_url_in_a_plain_setting_loses_its_userinfo(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REMEDIATOR_CONFIG", raising=False)
    monkeypatch.setenv("REMEDIATOR_PROMETHEUS_URL", "https://scraper:PROMSECRET@prom.internal")
    out = show(capsys, "--output", "json")
    assert "PROMSECRET" not in out and "https://***@prom.internal" in out
