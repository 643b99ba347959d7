"""Incident runs' artifact folders as the DAG leaves them, for the metrics to read.

Each folder starts as a copy of a real run's artifacts (``tests/diagnostics/fixtures/incident_rollback``:
incident.json, the decision, the rollback); a test then states what differs — the grade, when the alert
started, what was decided and when (a file's modification time is when it was stored), a human gate's
answer (the DAG's own ``HumanAnswer`` model), the rollback (``ActionResult``), phase 2's evidence (built
by ``phase2_evidence``, as the DAG does).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from diagnostics.deep_diagnosis.phase import phase2_evidence
from diagnostics.response.rollback.contracts import ActionResult
from diagnostics.runbooks.decision import GATE_OPTIONS
from tests.conftest import REPO
from tests.diagnostics.intake.conftest import backend, clock, service, settings  # noqa: F401 - fixtures

FIXTURE = REPO / "tests" / "diagnostics" / "fixtures" / "incident_rollback"
T0 = 1_800_000_000.0  # when the alerts start, unix seconds


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _write(path: Path, data: dict[str, Any], mtime: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    if mtime is not None:
        os.utime(path, (mtime, mtime))


@dataclass
class Run:
    folder: Path

    def _edit(self, rel: str, mtime: float | None, **changes: Any) -> None:
        path = self.folder / rel
        data = json.loads(path.read_text(encoding="utf-8"))
        data.update(changes)
        _write(path, data, mtime)

    def incident(self, grade: str | None = "L2", alert_at: float = T0) -> Run:
        self._edit("incident.json", None, grade=grade, alert_started_at=iso(alert_at))
        return self

    def decision(
        self, at: float, outcome: str = "rollback", needs_human: bool = False, timeout_s: float = 1800.0
    ) -> Run:
        self._edit(
            "decision/decision.json",
            at,
            outcome=outcome,
            needs_human=needs_human,
            acts_without_human=not needs_human,
            human_gate={"choice": "hold", "escalate": True, "timeout_s": timeout_s},
        )
        return self

    def fast_decision(self, at: float, outcome: str = "rollback") -> Run:
        full = json.loads((self.folder / "decision" / "decision.json").read_text(encoding="utf-8"))
        _write(
            self.folder / "decision" / "fast_decision.json",
            {**full, "outcome": outcome, "needs_human": False},
            at,
        )
        return self

    def no_decision(self) -> Run:
        (self.folder / "decision" / "decision.json").unlink()
        return self

    def answer(self, choice: str, by: str | None, at: float, grade: str = "L2") -> Run:
        from triage24_airflow.gate import HumanAnswer  # the DAG's own record of an answer

        answer = HumanAnswer(
            task_id=f"decision.human_gate_{grade}",
            chosen=[GATE_OPTIONS[choice]],
            by=by,
            at=str(datetime.fromtimestamp(at, UTC)),
            try_number=1,
        )
        _write(self.folder / "decision" / f"human_gate_{grade}.json", answer.model_dump(mode="json"), at + 1)
        return self

    def rollback(
        self, outcome: str = "applied", method: str = "gateway_weight", at: float | None = None
    ) -> Run:
        finished = datetime.fromtimestamp(at if at is not None else T0 + 60, UTC)
        result = ActionResult(
            check="rollback",
            status="ok",
            summary=f"rollback {outcome}",
            action="rollback",
            method=method,
            target="testbed",
            incident_id=self.folder.name,
            dry_run=outcome == "dry_run",
            outcome=outcome,  # type: ignore[arg-type]
            changed=outcome == "applied",
            started_at=finished,
            finished_at=finished,
        )
        _write(self.folder / "response" / "rollback.json", result.model_dump(mode="json"))
        return self

    def no_rollback(self) -> Run:
        (self.folder / "response" / "rollback.json").unlink()
        return self

    def phase2(self, crashed: tuple[str, ...] = (), ok: tuple[str, ...] = ()) -> Run:
        crash = {"status": "insufficient_evidence", "summary": "check crashed: RuntimeError"}
        both_ok = {"canary": {"status": "ok"}, "stable": {"status": "ok"}}
        results: dict[str, dict[str, Any] | None] = {
            name: {"check": name, **crash, "details": {"crashed": True}} for name in crashed
        }
        for name in ok:
            results[name] = {
                "check": name,
                "status": "ok",
                "summary": "fine",
                "details": {},
                "versions": both_ok,
            }
        _write(self.folder / "deep_diagnosis" / "evidence.json", phase2_evidence(results))
        return self

    def phase3(self) -> Run:
        _write(self.folder / "verified_delivery" / "summary.json", {"check": "summary", "status": "ok"})
        return self


class Runs:
    def __init__(self, root: Path) -> None:
        self.root = root

    def add(self, run_id: str) -> Run:
        folder = self.root / run_id
        shutil.copytree(FIXTURE, folder)
        (folder / "response" / "recovery_verification.json").unlink()
        return Run(folder).incident()


@pytest.fixture
def runs(tmp_path: Path) -> Runs:
    root = tmp_path / "artifacts"
    root.mkdir()
    return Runs(root)
