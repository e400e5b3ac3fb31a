"""Settings: file, environment overlay, and errors that name the key and its origin."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from controller.cli import main
from controller.config import SettingsError, load_settings
from controller.model import Mode


def test_defaults_are_safe() -> None:
    """With nothing said, the controller is in dry-run against public Azure."""
    settings = load_settings(None, environ={})
    assert settings.mode is Mode.DRY_RUN
    assert settings.endpoints().arm == "https://management.azure.com"
    assert settings.credential == "default"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    """REMEDIATOR_* variables win over the file; file paths are relative to the file."""
    path = tmp_path / "settings.yaml"
    path.write_text("mode: dry-run\ninterval: 1m\npolicies: pol\nauditPath: audit.jsonl\n")
    settings = load_settings(
        path,
        environ={"REMEDIATOR_MODE": "live", "REMEDIATOR_ARM_ENDPOINT": "http://127.0.0.1:1"},
    )
    assert settings.mode is Mode.LIVE
    assert settings.interval.total_seconds() == 60
    assert settings.policies == [tmp_path / "pol"]
    assert settings.audit_path == tmp_path / "audit.jsonl"
    assert settings.endpoints().arm == "http://127.0.0.1:1"


def test_sovereign_cloud_endpoints() -> None:
    """A sovereign cloud brings its own endpoints and token audiences."""
    endpoints = load_settings(None, environ={"REMEDIATOR_CLOUD": "usgov"}).endpoints()
    assert endpoints.arm == "https://management.usgovcloudapi.net"
    assert endpoints.metrics == "https://{region}.metrics.monitor.azure.us"
    assert endpoints.metrics_audience == "https://metrics.monitor.azure.us"


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("mode: yolo\n", {}, "mode: Input should be 'dry-run' or 'live' (from {file}:1)"),
        (
            "interval: soon\n",
            {},
            "interval: expected a duration such as 30s, 5m or 1h, got 'soon' (from {file}:1)",
        ),
        ("colour: red\n", {}, "colour: unknown key (from {file}:1)"),
        (
            "auditPth: a.jsonl\n",
            {},
            "auditPth: unknown key (did you mean 'auditPath'?) (from {file}:1)",
        ),
        (
            "",
            {"REMEDIATOR_LISTEN": "nowhere"},
            "listen: expected HOST:PORT or 'off', got 'nowhere' (from environment variable REMEDIATOR_LISTEN)",
        ),
        (
            "",
            {"REMEDIATOR_ARM_ENDPOINT": "ftp://x"},
            "armEndpoint: expected an http(s) URL, got 'ftp://x' (from environment variable REMEDIATOR_ARM_ENDPOINT)",
        ),
        (
            "",
            {"REMEDIATOR_COLOUR": "red"},
            "REMEDIATOR_COLOUR: unknown setting (from the environment)",
        ),
        ("mode: [\n", {}, "{file}:2: YAML syntax error"),
    ],
)
def test_bad_settings_name_the_key_and_origin(
    tmp_path: Path, text: str, environ: dict[str, str], expected: str
) -> None:
    """Each bad value is reported with its key and where it came from."""
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError) as info:
        load_settings(path, environ=environ)
    assert expected.format(file=path) in str(info.value)


def test_bad_setting_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`remediator run` with a bad setting exits 2 before doing anything."""
    path = tmp_path / "s.yaml"
    path.write_text("mode: yolo\n")
    monkeypatch.delenv("REMEDIATOR_MODE", raising=False)
    assert main(["run", "--config", str(path), "--once"]) == 2
    assert "mode:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"REMEDIATOR_CLOUD": "custom"}, "cloud: 'custom' needs armEndpoint and metricsEndpoint"),
        (
            {"REMEDIATOR_ARM_ENDPOINT": "http://10.1.2.3:8080"},
            "armEndpoint: plain http is allowed only on loopback or with the emulator credential",
        ),
        ({"REMEDIATOR_BACKOFF_MAX": "0s"}, "backoffMax: must be longer than zero"),
        # every outbound URL: no cleartext off loopback, never the metadata service
        (
            {"REMEDIATOR_ESCALATION_WEBHOOK": "http://hooks.example.com/T0/B0/secret"},
            "escalationWebhook: plain http is allowed only on loopback",
        ),
        (
            {"REMEDIATOR_ESCALATION_WEBHOOK": "https://169.254.169.254/latest/meta-data"},
            "escalationWebhook: 169.254.169.254 may be the instance metadata service",
        ),
        (
            {"REMEDIATOR_ESCALATION_WEBHOOK": "https://[fd00:ec2::254]/hook"},
            "escalationWebhook: fd00:ec2::254 may be the instance metadata service",
        ),
        (
            {"REMEDIATOR_PROMETHEUS_URL": "http://prometheus.monitoring:9090"},
            "prometheusUrl: plain http is allowed only on loopback",
        ),
        (
            {"REMEDIATOR_PROMETHEUS_URL": "https://169.254.169.254"},
            "prometheusUrl: 169.254.169.254 may be the instance metadata service",
        ),
        (
            {
                "REMEDIATOR_ARM_ENDPOINT": "http://169.254.169.254",
                "REMEDIATOR_CREDENTIAL": "emulator",
            },
            "armEndpoint: 169.254.169.254 may be the instance metadata service",
        ),
        (
            {"REMEDIATOR_METRICS_ENDPOINT": "https://[::ffff:169.254.169.254]"},
            "metricsEndpoint: ::ffff:169.254.169.254 may be the instance metadata service",
        ),
        (
            {"REMEDIATOR_LEADER_ELECTION": '{"accountUrl": "http://acct.blob.example.net"}'},
            "leaderElection: accountUrl: plain http is allowed only on loopback",
        ),
        (
            {"REMEDIATOR_LEADER_ELECTION": '{"accountUrl": "https://169.254.169.254"}'},
            "leaderElection: accountUrl: 169.254.169.254 may be the instance metadata service",
        ),
    ],
)
def test_unsafe_settings_are_refused(environ: dict[str, str], expected: str) -> None:
    """No silent fall-back to public Azure, no token over cleartext, no zero backoff."""
    with pytest.raises(SettingsError) as info:
        load_settings(None, environ=environ)
    assert str(info.value).startswith(expected)
    assert "environment variable" in str(info.value)


def test_plain_http_is_fine_on_loopback_or_for_the_emulator() -> None:
    """The emulator's settings load: loopback, or the emulator's own credential anywhere."""
    assert load_settings(None, environ={"REMEDIATOR_ARM_ENDPOINT": "http://127.0.0.1:8480"})
    local = {
        "REMEDIATOR_ESCALATION_WEBHOOK": "http://localhost:8080/hook",
        "REMEDIATOR_PROMETHEUS_URL": "http://[::1]:9090",
    }
    assert load_settings(None, environ=local)
    env = {"REMEDIATOR_ARM_ENDPOINT": "http://10.1.2.3:80", "REMEDIATOR_CREDENTIAL": "emulator"}
    assert load_settings(None, environ=env)


def test_kubernetes_service_links_are_not_settings() -> None:
    """REMEDIATOR_PORT and REMEDIATOR_SERVICE_HOST (a Service named remediator) are ignored."""
    env = {"REMEDIATOR_PORT": "tcp://10.0.0.9:9464", "REMEDIATOR_SERVICE_HOST": "10.0.0.9"}
    assert load_settings(None, environ=env).mode is Mode.DRY_RUN


@pytest.mark.parametrize("written", ["off", "'off'", "false", "''"])
def test_listen_off_in_yaml_turns_the_endpoints_off(tmp_path: Path, written: str) -> None:
    """YAML reads an unquoted `off` as false; it means what it says."""
    config = tmp_path / "settings.yaml"
    config.write_text(f"listen: {written}\n")
    assert load_settings(config, environ={}).listen_address is None


def test_discovery_stale_after_defaults_to_six_intervals_and_never_under_two() -> None:
    assert load_settings(None, environ={}).discovery_hold_after == timedelta(minutes=30)
    env = {"REMEDIATOR_DISCOVERY_INTERVAL": "10m"}
    assert load_settings(None, environ=env).discovery_hold_after == timedelta(hours=1)
    env["REMEDIATOR_DISCOVERY_STALE_AFTER"] = "20m"
    assert load_settings(None, environ=env).discovery_hold_after == timedelta(minutes=20)
    env["REMEDIATOR_DISCOVERY_STALE_AFTER"] = "15m"
    with pytest.raises(SettingsError) as info:
        load_settings(None, environ=env)
    assert "at least two discoveryIntervals" in str(info.value)
