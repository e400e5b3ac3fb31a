"""Numbers in plan, demo and audit output read as a person writes them, not as float noise."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.model import Decision, DecisionKind, Proposal
from controller.reconcile import PassResult
from controller.render import audit_line, pass_line

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_an_audit_line_rounds_float_noise_and_keeps_times() -> None:
    line = audit_line(
        {
            "seq": 3,
            "ts": "2026-01-01T00:00:00Z",
            "kind": "verdict",
            "policy": "api",
            "reason": "errors 0.016200000000000003 > 0.01 since 2026-01-01T00:00:00.385819Z",
        }
    )
    assert "errors 0.0162 > 0.01 since 2026-01-01T00:00:00.385819Z" in line


def test_a_pass_line_shows_a_change_with_sensible_precision() -> None:
    proposal = Proposal(
        "scaleUp", 1, {"cpu": 0.30000000000000004}, {"cpu": 0.25}, {"cpu": 0.30000000000000004}, ""
    )
    decision = Decision(DecisionKind.DENY, "bound 0.30000000000000004 over 0.3", proposal, "bounds")
    line = pass_line(PassResult("api", (), decision, None, decision.reason), NOW)
    assert "scaleUp (cpu 0.25→0.3): deny [bound 0.3 over 0.3]" in line
