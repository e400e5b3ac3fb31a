"""The deployment files agree with the code: the custom role is exactly the allow-list, the
probes point at the port the image listens on, and every REMEDIATOR_* variable they set is a
real setting. No Bicep compiler runs here, so the Bicep files are also checked for balanced
brackets and unused parameters."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic.alias_generators import to_camel, to_snake

from controller.config import _RESERVED_ENV, ENV_PREFIX, Settings, load_settings
from controller.permissions import ALLOWED, role_actions

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
BICEP = DEPLOY / "bicep"
SIDECAR = BICEP / "remediator-sidecar.bicep"
STANDALONE = BICEP / "remediator-standalone.bicep"
IDENTITY = BICEP / "identity-and-role.bicep"
YAML = DEPLOY / "containerapp-sidecar.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCS = ROOT / "docs" / "deploy.md"


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def image_port() -> int:
    """The port of the image's REMEDIATOR_LISTEN (the settings' default port, on every address)."""
    match = re.search(r"REMEDIATOR_LISTEN=([\d.]+):(\d+)", text(DOCKERFILE))
    assert match, "the Dockerfile sets REMEDIATOR_LISTEN=HOST:PORT"
    return int(match.group(2))


def sidecar_container() -> dict[str, Any]:
    document = yaml.safe_load(text(YAML))
    containers = document["properties"]["template"]["containers"]
    (remediator,) = [c for c in containers if c["name"] == "remediator"]
    return dict(remediator)


# ---- the role ------------------------------------------------------------------------------


def bicep_actions() -> list[str]:
    block = re.search(
        r"var remediatorActions = \[\n(.*?)\n\]\n// END role_actions", text(IDENTITY), re.S
    )
    assert block, "identity-and-role.bicep keeps the actions in its remediatorActions block"
    lines = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    assert all(re.fullmatch(r"'[^']+'", line) for line in lines), lines
    return [line.strip("'") for line in lines]


def test_the_role_definition_json_is_exactly_the_allow_list() -> None:
    role = json.loads(text(DEPLOY / "role-definition.json"))
    assert role["Actions"] == role_actions()
    assert role["IsCustom"] is True
    assert role["NotActions"] == role["DataActions"] == role["NotDataActions"] == []
    assert role["AssignableScopes"], "az role definition create needs a scope"


def test_the_bicep_role_is_exactly_the_allow_list() -> None:
    assert bicep_actions() == role_actions()
    assert "actions: remediatorActions" in text(IDENTITY)


@pytest.mark.parametrize("source", ["json", "bicep"])
def test_the_role_has_no_wildcard_and_no_delete(source: str) -> None:
    actions = (
        json.loads(text(DEPLOY / "role-definition.json"))["Actions"]
        if source == "json"
        else bicep_actions()
    )
    assert actions
    assert not [a for a in actions if "*" in a or "delete" in a.lower()]


def test_the_role_is_assignable_at_the_resource_group_and_assigned_there() -> None:
    bicep = text(IDENTITY)
    assert re.search(r"assignableScopes: \[\s*resourceGroup\(\)\.id\s*\]", bicep)
    assert "Microsoft.Authorization/roleAssignments" in bicep
    # blob access for the lease only with leader election, and only on its container
    lease = bicep[bicep.index("resource leaseAccess") :]
    assert lease.startswith("resource leaseAccess 'Microsoft.Authorization/roleAssignments")
    assert "= if (leaderElection)" in lease.splitlines()[0]
    assert "scope: leaseContainer" in lease


def test_the_deploy_guide_says_what_each_action_is_for() -> None:
    docs = text(DOCS)
    for op in ALLOWED:
        assert op.action in docs, op.action
        assert op.why in docs, op.why


# ---- probes and port -------------------------------------------------------------------------

PROBE = re.compile(
    r"type: '(?P<type>Startup|Liveness|Readiness)'\s*"
    r"(?:httpGet: \{\s*path: '(?P<path>[^']+)'\s*port: (?P<http_port>\w+)"
    r"|tcpSocket: \{\s*port: (?P<tcp_port>\w+))"
)


def bicep_probes(path: Path) -> set[tuple[str, str]]:
    """(type, path or 'tcp') of every probe written in a Bicep file, checking each port."""
    source = text(path)
    assert re.search(rf"^var port = {image_port()}$", source, re.M), path.name
    found = set()
    for match in PROBE.finditer(source):
        assert (match["http_port"] or match["tcp_port"]) == "port", match.group(0)
        found.add((match["type"], match["path"] or "tcp"))
    return found


def test_the_image_listens_on_the_settings_default_port() -> None:
    default = Settings().listen_address
    assert default is not None
    assert image_port() == default[1] == 9464
    assert re.search(rf"^EXPOSE {image_port()}$", text(DOCKERFILE), re.M)
    assert f"127.0.0.1:{image_port()}/healthz" in text(DOCKERFILE)  # HEALTHCHECK


def test_the_standalone_app_probes_healthz_for_liveness_and_readyz_for_readiness() -> None:
    assert bicep_probes(STANDALONE) == {
        ("Startup", "/healthz"),
        ("Liveness", "/healthz"),
        ("Readiness", "/readyz"),
    }
    assert "targetPort: port" in text(STANDALONE)  # internal ingress for scrapes


def test_the_sidecar_probes_healthz_and_gates_the_app_on_readyz_only_when_asked() -> None:
    assert bicep_probes(SIDECAR) == {
        ("Startup", "/healthz"),
        ("Liveness", "/healthz"),
        ("Readiness", "/readyz"),
        ("Readiness", "tcp"),
    }
    source = text(SIDECAR)
    assert "param readinessGatesApp bool = false" in source
    assert "var readinessProbe = readinessGatesApp ? {" in source


def test_the_sidecar_yaml_parses_and_probes_the_image_port() -> None:
    container = sidecar_container()
    probes = {p["type"]: p for p in container["probes"]}
    assert set(probes) == {"Startup", "Liveness", "Readiness"}
    assert probes["Liveness"]["httpGet"] == {"path": "/healthz", "port": 9464, "scheme": "HTTP"}
    assert probes["Startup"]["httpGet"]["path"] == "/healthz"
    # not gating the app's traffic on Remediator's readiness (see the comment in the file)
    assert probes["Readiness"]["tcpSocket"] == {"port": 9464}
    assert "/readyz" in text(YAML)  # the documented alternative
    ports = [p.get("httpGet", p.get("tcpSocket"))["port"] for p in container["probes"]]
    assert set(ports) == {image_port()}


def test_every_probe_threshold_is_one_container_apps_accepts() -> None:
    for probe in sidecar_container()["probes"]:
        assert 1 <= probe["failureThreshold"] <= 10
        assert 1 <= probe.get("initialDelaySeconds", 1) <= 60
    for path in (SIDECAR, STANDALONE):
        for value in re.findall(r"failureThreshold: (\d+)", text(path)):
            assert 1 <= int(value) <= 10
        for value in re.findall(r"initialDelaySeconds: (\d+)", text(path)):
            assert 1 <= int(value) <= 60


# ---- settings ------------------------------------------------------------------------------

DEPLOY_FILES = [
    *sorted(BICEP.glob("*.bicep")),
    YAML,
    DOCKERFILE,
    DOCS,
    DEPLOY / "README.md",
]


def is_setting(variable: str) -> bool:
    """Whether config.load_settings takes this variable (the same mapping it applies)."""
    suffix = variable.removeprefix(ENV_PREFIX)
    known = {to_camel(name) for name in Settings.model_fields}
    return to_camel(to_snake(suffix.lower())) in known or suffix in _RESERVED_ENV


def test_the_mapping_used_here_is_the_one_config_uses() -> None:
    assert is_setting("REMEDIATOR_AUDIT_PATH")
    assert is_setting("REMEDIATOR_LOG_FORMAT")
    assert not is_setting("REMEDIATOR_AUDIT_DIR")
    with pytest.raises(Exception, match="unknown setting"):
        load_settings(environ={"REMEDIATOR_AUDIT_DIR": "/x"})


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: p.name)
def test_every_variable_the_deploy_files_name_is_a_real_setting(path: Path) -> None:
    names = set(re.findall(r"\bREMEDIATOR_[A-Z0-9_]*[A-Z0-9]\b", text(path)))
    assert [n for n in sorted(names) if not is_setting(n)] == []


def test_the_sidecar_yaml_environment_is_valid_settings() -> None:
    env = {e["name"]: str(e["value"]) for e in sidecar_container()["env"]}
    env["REMEDIATOR_AUDIT_PATH"] = "/var/lib/remediator/replicas/r1/audit.jsonl"  # the command's
    settings = load_settings(environ=env)
    assert settings.mode.value == "dry-run"
    assert settings.credential == "managedIdentity"
    assert settings.listen_address == ("0.0.0.0", image_port())
    assert settings.leader_election.enabled
    assert str(settings.pause_path) == "/var/lib/remediator/remediator.pause"


@pytest.mark.parametrize("path", [SIDECAR, STANDALONE], ids=lambda p: p.name)
def test_the_bicep_apps_set_the_settings_the_platform_needs(path: Path) -> None:
    source = text(path)
    assert "param mode string = 'dry-run'" in source
    for name, value in [
        ("REMEDIATOR_MODE", "mode"),
        ("REMEDIATOR_CREDENTIAL", "'managedIdentity'"),
        ("REMEDIATOR_IDENTITY_CLIENT_ID", "remediatorIdentity.outputs.clientId"),
        ("REMEDIATOR_LOG_FORMAT", "'json'"),
        ("REMEDIATOR_LISTEN", "'0.0.0.0:${port}'"),
        ("REMEDIATOR_PAUSE_FILE", "'${stateDir}/remediator.pause'"),
    ]:
        assert f"name: '{name}'\n    value: {value}\n" in source, name
    assert "name: 'REMEDIATOR_LEADER_ELECTION'" in source
    # the audit log on the Azure Files share, one per replica; /tmp writable
    assert "var stateDir = '/var/lib/remediator'" in source
    assert '/replicas/$HOSTNAME/audit.jsonl"; exec remediator run' in source
    assert "storageType: 'AzureFile'" in source
    assert "mountPath: '/tmp'" in source


# ---- the sidecar keeps the app -----------------------------------------------------------------


def test_the_sidecar_sends_the_apps_own_containers_back() -> None:
    source = text(SIDECAR)
    assert re.search(r"@minLength\(1\)\nparam appContainers array\n", source)
    assert "var ownContainers = filter(appContainers, c => c.name != remediatorName)" in source
    assert re.search(r"containers: concat\(ownContainers, \[\s*remediatorContainer\s*\]\)", source)
    assert "volumes: concat(ownVolumes, remediatorVolumes)" in source
    assert "existingApp.listSecrets()" in source  # secrets are not dropped either
    assert "appContainers" in text(DOCS)


def test_the_sidecar_yaml_keeps_a_place_for_the_apps_own_containers() -> None:
    containers = yaml.safe_load(text(YAML))["properties"]["template"]["containers"]
    assert [c["name"] for c in containers] == ["my-app", "remediator"]
    assert "replaces `template.containers` and `template.volumes` WHOLE" in text(YAML)


# ---- Bicep, without a compiler -------------------------------------------------------------------


def code_of(source: str) -> str:
    """The Bicep source with comments and string contents removed (interpolations kept)."""
    out, i = [], 0
    while i < len(source):
        if source.startswith("//", i):
            i = source.find("\n", i)
            i = len(source) if i < 0 else i
        elif source.startswith("'''", i):
            i = source.index("'''", i + 3) + 3
            out.append("''")
        elif source[i] == "'":
            j, depth = i + 1, 0
            while True:  # to the closing quote, skipping \' and ${ ... } interpolations
                if source[j] == "\\":
                    j += 2
                    continue
                if source.startswith("${", j) and (j == 0 or source[j - 1] != "\\"):
                    depth += 1
                    out.append(" ")
                    j += 2
                    start = j
                    while depth:
                        depth += {"{": 1, "}": -1}.get(source[j], 0)
                        j += 1
                    out.append(source[start : j - 1])
                    continue
                if source[j] == "'":
                    break
                assert source[j] != "\n", f"unterminated string at {source[i : i + 40]!r}"
                j += 1
            out.append("''")
            i = j + 1
        else:
            out.append(source[i])
            i += 1
    return "".join(out)


@pytest.mark.parametrize("path", sorted(BICEP.glob("*.bicep")), ids=lambda p: p.name)
def test_bicep_brackets_balance_and_every_declaration_is_used(path: Path) -> None:
    code = code_of(text(path))
    stack: list[str] = []
    for char in code:
        if char in "([{":
            stack.append(char)
        elif char in ")]}":
            assert stack and "([{"[")]}".index(char)] == stack.pop(), path.name
    assert not stack, path.name
    declared = re.findall(r"^(?:param|var) (\w+)", code, re.M)
    assert len(declared) == len(set(declared)), path.name
    for name in declared:
        uses = len(re.findall(rf"\b{name}\b", code))
        assert uses >= 2, f"{path.name}: {name} is declared but never used"
    for module in re.findall(r"^module \w+ '([^']+)'", text(path), re.M):
        assert (path.parent / module).exists(), module
    for version in re.findall(r"'Microsoft\.App/[\w/]+@([\d-]+)'", text(path)):
        assert version >= "2024-03-01", version


@pytest.mark.parametrize("path", [SIDECAR, STANDALONE], ids=lambda p: p.name)
def test_the_app_can_pull_its_image_on_the_first_deployment(path: Path) -> None:
    """The app pulls with the identity the same template creates: given the registry's
    resource ID, AcrPull is assigned to that identity, at the registry, before the app."""
    bicep = text(path)
    module = bicep[bicep.index("module registryPull 'acr-pull.bicep'") :]
    module = module[: module.index("\n}\n")]
    assert "if (!empty(registryResourceId))" in module
    assert "principalId: remediatorIdentity.outputs.principalId" in module
    assert "scope: resourceGroup(split(registryResourceId, '/')[2]" in module
    # the module (or resource) that writes the app waits for the assignment
    depends = bicep[bicep.rindex("dependsOn: [") :]
    assert "registryPull" in depends[: depends.index("]")]
    pull = text(BICEP / "acr-pull.bicep")
    assert "7f951dda-4ed3-4680-a7ca-43fe172d538d" in pull  # the built-in AcrPull role
    assert "scope: registry" in pull


def test_the_role_follows_long_running_operations_both_ways() -> None:
    """The SDK's poller reads an operation's status and its result: both are allowed."""
    actions = set(role_actions())
    assert "Microsoft.App/locations/containerappOperationResults/read" in actions
    assert "Microsoft.App/locations/containerappOperationStatuses/read" in actions
