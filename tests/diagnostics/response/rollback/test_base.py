"""The guards every method shares (lock, idempotency, audit, rate limit, secrets), over a fake driver."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from diagnostics.incident.results import Status
from diagnostics.response.rollback.base import AUDIT_PATH, RATE_PATH, apply, audit_records
from diagnostics.response.rollback.contracts import Action, ActionError, Plan, State
from tests.diagnostics.response.rollback.conftest import TOKEN_ENV, make_target

SECRET = "s3cr3t-token-value"
TARGET = make_target({"method": "gateway_weight", "admin_token_env": TOKEN_ENV, "sensitive": True})


class FakeDriver:
    method = "gateway_weight"

    def __init__(self, weight: float = 10.0, delay_s: float = 0.0) -> None:
        self.weight = weight
        self.delay_s = delay_s
        self.executed = 0
        self.fail_read: Exception | None = None

    def secrets(self) -> tuple[str, ...]:
        return (SECRET,)

    def read(self) -> State:
        if self.fail_read is not None:
            raise self.fail_read
        return State({"canary_weight": self.weight})

    def plan(self, action: Action, state: State, promote_to: float | None) -> Plan:
        return Plan(self.weight != 0, f"weight {self.weight:g} -> 0", {"canary_weight": 0.0}, body={"w": 0})

    def execute(self, plan: Plan) -> dict[str, Any]:
        time.sleep(self.delay_s)
        self.executed += 1
        self.weight = 0.0
        return {"canary_weight": self.weight}


def run(driver: FakeDriver, state_dir: Path, incident: str = "inc-1", **kw: Any) -> Any:
    kw.setdefault("dry_run", False)
    return apply("rollback", TARGET, incident_id=incident, state_dir=state_dir, driver=driver, **kw)


def test_two_workers_at_once_change_once(tmp_path: Path) -> None:
    driver = FakeDriver(delay_s=0.3)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(run(driver, tmp_path))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.outcome for r in results) == ["already_applied", "applied"]
    assert driver.executed == 1


def test_a_driver_bug_is_a_failed_result_with_an_audit_record(tmp_path: Path) -> None:
    driver = FakeDriver()
    driver.fail_read = KeyError("canary_weight")
    result = run(driver, tmp_path)
    assert result.status is Status.FAILED and "unexpected KeyError" in (result.error or "")
    assert audit_records(tmp_path)[-1].outcome == "failed"


def test_a_secret_in_a_message_is_redacted(tmp_path: Path) -> None:
    driver = FakeDriver()
    driver.fail_read = ActionError(f"HTTP 500 echoing Authorization: Bearer {SECRET}")
    result = run(driver, tmp_path)
    assert "Bearer ***" in (result.error or "")
    assert SECRET not in result.model_dump_json()
    assert SECRET not in (tmp_path / AUDIT_PATH).read_text()


def test_an_incident_id_is_required(tmp_path: Path) -> None:
    result = run(FakeDriver(), tmp_path, incident=" ")
    assert result.status is Status.FAILED and "incident id is required" in (result.error or "")


def test_an_unusable_state_dir_is_a_failed_result(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    driver = FakeDriver()
    result = run(driver, blocker)
    assert result.status is Status.FAILED and "cannot use the state directory" in (result.error or "")
    assert result.audit_record is None and "audit record could not be written" in (result.error or "")
    assert driver.executed == 0


def test_damaged_audit_and_rate_files_do_not_block(tmp_path: Path) -> None:
    (tmp_path / AUDIT_PATH).parent.mkdir(parents=True)
    (tmp_path / AUDIT_PATH).write_text("{not json\n")
    (tmp_path / RATE_PATH).write_text("[]garbage")
    result = run(FakeDriver(), tmp_path)
    assert result.outcome == "applied" and result.audit_id is not None
    assert [r.outcome for r in audit_records(tmp_path)] == ["applied"]


def test_a_dry_run_over_the_rate_limit_says_it_would_be_refused(tmp_path: Path) -> None:
    for i in range(3):
        assert run(FakeDriver(), tmp_path, incident=f"inc-{i}").outcome == "applied"
    driver = FakeDriver()
    result = run(driver, tmp_path, incident="inc-x", dry_run=True)
    assert (result.status, result.outcome, result.dry_run) == (Status.FAILED, "rate_limited", True)
    assert result.details["rate_limit"] == {"max_changes": 3, "per_seconds": 3600.0, "recent_changes": 3}
    assert driver.executed == 0


def test_the_human_gate_flag_travels_with_the_result(tmp_path: Path) -> None:
    result = run(FakeDriver(weight=0), tmp_path)
    assert result.outcome == "noop" and result.details["sensitive"] is True
