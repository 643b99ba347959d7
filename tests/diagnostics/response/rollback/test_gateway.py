"""The gateway_weight method against the real testbed gateway process (its admin API over HTTP)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from diagnostics.incident.results import Status
from diagnostics.response.rollback.base import AUDIT_PATH, apply, audit_records
from diagnostics.response.rollback.contracts import Action, ActionResult
from diagnostics.response.verify import gateway_probe, verify_recovery
from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.schemas import Target
from tests.conftest import free_port
from tests.diagnostics.response.rollback.conftest import TOKEN_ENV, Gateway, make_target

ENV = {TOKEN_ENV: "test-admin-token-7f3c"}
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def run(
    target: Target,
    state_dir: Path,
    incident: str,
    action: Action = "rollback",
    *,
    dry_run: bool = False,
    environ: dict[str, str] = ENV,
    promote_to: float | None = None,
    minute: float | None = None,
) -> ActionResult:
    """``apply`` with this file's defaults; ``minute`` pins the wall clock to T0 + minute."""
    now = None if minute is None else (lambda: T0 + timedelta(minutes=minute))
    return apply(
        action,
        target,
        incident_id=incident,
        dry_run=dry_run,
        state_dir=state_dir,
        environ=environ,
        promote_to=promote_to,
        now=now,
    )


@pytest.fixture(autouse=True)
def _weight_ten(gateway: Gateway) -> None:
    gateway.set_weight(10)


def test_rollback_sets_weight_zero_then_a_second_call_is_a_noop(gateway: Gateway, tmp_path: Path) -> None:
    target = gateway.target()
    first = run(target, tmp_path, "inc-1")
    assert first.status is Status.OK, first.summary
    assert (first.outcome, first.changed, first.idempotent_noop) == ("applied", True, False)
    assert first.check == "rollback" and first.method == "gateway_weight"
    assert first.before["canary_weight"] == 10 and first.after["canary_weight"] == 0
    assert first.before["strategy"] == first.after["strategy"] == "percentage"
    assert gateway.routing()["canary_weight"] == 0
    assert "10 -> 0" in first.summary

    # the same incident again (a retried task): nothing sent, the earlier record named
    again = run(target, tmp_path, "inc-1")
    assert (again.status, again.outcome, again.changed, again.idempotent_noop) == (
        Status.OK,
        "already_applied",
        False,
        True,
    )
    assert again.prior_audit_id == first.audit_id

    # another incident, the state already matches: a no-op read from the gateway
    other = run(target, tmp_path, "inc-2")
    assert (other.outcome, other.changed, other.idempotent_noop) == ("noop", False, True)
    assert "already is 0" in other.summary


def test_a_restart_mid_incident_does_not_roll_back_twice(gateway: Gateway, tmp_path: Path) -> None:
    target = gateway.target()
    run(target, tmp_path, "inc-r")
    gateway.set_weight(25)  # an engineer decides to send some traffic to the canary again
    retried = run(target, tmp_path, "inc-r")
    assert retried.outcome == "already_applied" and retried.status is Status.OK
    assert retried.before["canary_weight"] == 25  # the current state, read for the record
    assert gateway.routing()["canary_weight"] == 25  # and left alone


def test_dry_run_reads_but_changes_nothing(gateway: Gateway, tmp_path: Path) -> None:
    result = run(gateway.target(), tmp_path, "inc-d", dry_run=True)
    assert (result.status, result.outcome, result.changed, result.would_change) == (
        Status.OK,
        "dry_run",
        False,
        True,
    )
    assert result.before["canary_weight"] == 10 and result.after["canary_weight"] == 0
    assert result.summary.startswith("dry run: would set the canary weight 10 -> 0")
    assert gateway.routing()["canary_weight"] == 10
    # a dry run is not a change: the real rollback of the same incident still happens
    real = run(gateway.target(), tmp_path, "inc-d")
    assert real.outcome == "applied" and gateway.routing()["canary_weight"] == 0


def test_the_rate_limit_refuses_the_fourth_change(gateway: Gateway, tmp_path: Path) -> None:
    target = gateway.target()  # defaults: 3 changes per 3600 s
    steps: list[tuple[Action, float | None]] = [("rollback", None), ("promote", 30.0), ("rollback", None)]
    for i, (action, weight) in enumerate(steps):
        r = run(target, tmp_path, f"inc-{i}", action, promote_to=weight, minute=i)
        assert r.outcome == "applied", r.summary
    assert gateway.routing()["canary_weight"] == 0
    fourth = run(target, tmp_path, "inc-3", "promote", promote_to=50, minute=3)
    assert (fourth.status, fourth.outcome, fourth.changed) == (Status.FAILED, "rate_limited", False)
    assert fourth.check == "promotion"
    assert "rate limit: 3 changes of testbed in the last 3600 s" in (fourth.error or "")
    assert "2025-01-01T13:00:00+00:00" in (fourth.error or "")  # when the oldest change leaves the window
    assert gateway.routing()["canary_weight"] == 0
    # an hour after the first change, one more is allowed again
    later = run(target, tmp_path, "inc-3", "promote", promote_to=50, minute=61)
    assert later.outcome == "applied" and gateway.routing()["canary_weight"] == 50


def test_the_rate_limit_comes_from_the_target_config(gateway: Gateway, tmp_path: Path) -> None:
    target = gateway.target(max_changes=1, per_seconds=60)
    assert run(target, tmp_path, "a").changed
    refused = run(target, tmp_path, "b", "promote", promote_to=5)
    assert refused.outcome == "rate_limited" and "limit 1 per 60 s" in (refused.error or "")


def test_audit_lines_are_written_without_the_token(gateway: Gateway, tmp_path: Path) -> None:
    target = gateway.target()
    run(target, tmp_path, "inc-a", dry_run=True)
    run(target, tmp_path, "inc-a")
    run(target, tmp_path, "inc-a")
    wrong = run(target, tmp_path, "inc-w", environ={TOKEN_ENV: "not-the-admin-token"})
    assert wrong.status is Status.FAILED and "refused the admin token from TRIAGE24_TESTBED_ADMIN_TOKEN" in (
        wrong.error or ""
    )
    path = tmp_path / AUDIT_PATH
    text = path.read_text()
    assert ENV[TOKEN_ENV] not in text and "not-the-admin-token" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["outcome"] for line in lines] == ["dry_run", "applied", "already_applied", "failed"]
    first = lines[1]
    assert first["incident_id"] == "inc-a" and first["target"] == "testbed" and first["actor"] == "triage24"
    assert first["method"] == "gateway_weight" and first["dry_run"] is False
    assert first["before"]["canary_weight"] == 10 and first["after"]["canary_weight"] == 0
    assert datetime.fromisoformat(first["time"]).tzinfo is not None
    assert [r.outcome for r in audit_records(tmp_path)] == [line["outcome"] for line in lines]
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_missing_token_is_a_clear_failure(gateway: Gateway, tmp_path: Path) -> None:
    result = run(gateway.target(), tmp_path, "inc-m", environ={})
    assert (result.status, result.outcome, result.changed) == (Status.FAILED, "failed", False)
    assert "TRIAGE24_TESTBED_ADMIN_TOKEN" in (result.error or "")
    assert "export TRIAGE24_TESTBED_ADMIN_TOKEN=<token>" in (result.error or "")
    assert gateway.routing()["canary_weight"] == 10
    assert audit_records(tmp_path)[-1].outcome == "failed"


def test_an_unreachable_gateway_is_a_failed_result(tmp_path: Path) -> None:
    target = make_target(
        {"method": "gateway_weight", "admin_token_env": TOKEN_ENV, "timeout_s": 2},
        gateway_url=f"http://127.0.0.1:{free_port()}",
    )
    result = run(target, tmp_path, "inc-u")
    assert result.status is Status.FAILED and result.outcome == "failed"
    assert "cannot reach the gateway at http://127.0.0.1:" in (result.error or "")
    assert ENV[TOKEN_ENV] not in result.model_dump_json()


def test_promotion_needs_a_weight(gateway: Gateway, tmp_path: Path) -> None:
    result = run(gateway.target(), tmp_path, "inc-p", "promote")
    assert result.outcome == "refused" and "promote_to" in (result.error or "")
    assert gateway.routing()["canary_weight"] == 10


def test_recovery_is_verified_on_the_real_gateway(gateway: Gateway, tmp_path: Path) -> None:
    target = gateway.target()
    thresholds = load_runbooks(environ={}).thresholds
    probe = gateway_probe(target, thresholds, None, timeout_s=2, environ=ENV)
    before = probe()
    assert not before.recovered
    assert {p.name: p.state for p in before.parts} == {"stable_health": "ok", "canary_weight": "bad"}
    run(target, tmp_path, "inc-v")
    result = verify_recovery(probe, timeout_s=10, interval_s=0.05, required_consecutive=2)
    assert result.status is Status.OK and result.recovered and not result.escalate
    assert result.time_to_recover_s is not None and result.time_to_recover_s < 5
    assert result.samples[-1].parts[1].value == 0
