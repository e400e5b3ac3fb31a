"""Approvals with shards: a pending-approval request is in its partition's log, whichever
replica owns the partition; `remediator approvals` and `approve` find it there, and the
answer goes to the audit directory every replica reads."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller import approvals
from controller.audit.log import AuditLog, Record
from controller.audit.partitions import PartitionSink, partition_log
from controller.cli import main

APP = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.App/containerApps/api"
REQUEST: dict[str, Any] = {
    "kind": "decision",
    "policy": "api-restart",
    "target": APP,
    "verdict": "breach",
    "verdicts": [],
    "action": "restartRevision",
    "params": {},
    "decision": "pending-approval",
    "reason": "approval required",
    "mode": "live",
    "outcome": None,
    "before": {},
    "after": {},
    "reconcile_id": "r1",
    "approval_id": "7c1e4b2a",
}


def test_a_request_in_a_partition_log_is_listed_and_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [k for k in os.environ if k.startswith("REMEDIATOR_")]:
        monkeypatch.delenv(name)
    directory = tmp_path / "partitions"
    config = tmp_path / "settings.yaml"
    config.write_text(
        "auditPath: replica-a.jsonl\n"
        "policies: [none]\n"
        "shards: {enabled: true, connectionString: x, auditDir: partitions}\n"
    )
    request = {**REQUEST, "ts": datetime.now(UTC)}
    with AuditLog(partition_log(directory, 7)) as log:
        PartitionSink(log, "replica-b").append(Record.model_validate(request))

    assert main(["approvals", "--config", str(config)]) == 0
    assert "7c1e4b2a" in capsys.readouterr().out
    assert main(["approve", "7c1e4b2a", "--config", str(config), "--by", "alice"]) == 0
    answered = approvals.answers(directory / "remediator.approvals")
    assert answered["7c1e4b2a"]["answer"] == "approve"


def test_a_request_asked_before_shards_is_answered_for_the_partition_that_imported_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Asked by the single process, waiting when shards were turned on: it is in the log
    named by ``importFrom`` (imported into its partition's memory), and the answer goes
    where the partition's owner reads it."""
    for name in [k for k in os.environ if k.startswith("REMEDIATOR_")]:
        monkeypatch.delenv(name)
    config = tmp_path / "settings.yaml"
    config.write_text(
        "auditPath: replica-a.jsonl\n"
        "policies: [none]\n"
        "shards: {enabled: true, connectionString: x, auditDir: partitions,"
        " importFrom: remediator-audit.jsonl}\n"
    )
    with AuditLog(tmp_path / "remediator-audit.jsonl") as log:  # the single process's
        log.append(Record.model_validate({**REQUEST, "ts": datetime.now(UTC)}))
    assert main(["approvals", "--config", str(config)]) == 0
    assert "7c1e4b2a" in capsys.readouterr().out
    assert main(["approve", "7c1e4b2a", "--config", str(config), "--by", "alice"]) == 0
    answered = approvals.answers(tmp_path / "partitions" / "remediator.approvals")
    assert answered["7c1e4b2a"]["answer"] == "approve"
