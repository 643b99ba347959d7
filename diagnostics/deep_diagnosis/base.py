"""What every phase-2 check shares: its context, its per-version outcome, its result, its baseline.

A check's status is the worst of the versions' (failed > degraded > insufficient_evidence > ok); the
decision reads both versions' (a failure stable shares is no evidence against the canary). Running a
check (measure and judge each version, record baselines) is :mod:`diagnostics.deep_diagnosis.runner`;
this module imports neither it nor the registry, which both build on it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from diagnostics.config import Settings
from diagnostics.deep_diagnosis.encoders import ReferenceEncoders, ReferenceModelError, resolve_path
from diagnostics.deep_diagnosis.service import ServiceClient
from diagnostics.golden_set import GoldenSet, load_golden
from diagnostics.incident.results import CheckResult, Finding, Status
from diagnostics.runbooks import Runbooks
from diagnostics.runbooks.schemas import Problem, Severity, Target

log = logging.getLogger("triage24.deep")

PHASE = "deep_diagnosis"
VERSIONS = ("stable", "canary")
STATUS_ORDER = {Status.FAILED: 3, Status.DEGRADED: 2, Status.INSUFFICIENT_EVIDENCE: 1, Status.OK: 0}

Progress = Callable[[str, int, int], None]  # (what, done, total)


def log_progress(what: str, done: int, total: int) -> None:
    log.info("%s: %d/%d", what, done, total)


def worst(statuses: list[Status]) -> Status:
    return max(statuses, key=lambda s: STATUS_ORDER[s]) if statuses else Status.INSUFFICIENT_EVIDENCE


class VersionOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    status: Status
    summary: str
    figures: dict[str, Any] = Field(default_factory=dict, description="the numbers behind the verdict")
    findings: list[Finding] = Field(default_factory=list)


class DeepResult(CheckResult):
    """A phase-2 check's result: one outcome per version, the baseline used, the thresholds."""

    modality: str = ""
    versions: dict[str, VersionOutcome] = Field(default_factory=dict)
    baseline: dict[str, Any] | None = Field(default=None, description="which baseline (version, recorded_at)")
    thresholds: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0

    def canary_status(self) -> Status | None:
        outcome = self.versions.get("canary")
        return outcome.status if outcome else None


@dataclass
class DeepContext:
    """What a check may use. ``incident`` is None when a baseline is recorded outside an incident."""

    books: Runbooks
    target: Target
    incident: Any | None = None  # diagnostics.incident.model.Incident
    sources: Any | None = None  # diagnostics.golden_window.phase.EvidenceSources
    settings: Settings = field(default_factory=Settings)
    progress: Progress = log_progress
    _golden: GoldenSet | None = None
    _encoders: ReferenceEncoders | None = None
    _memo: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """Compute once per context what every version's thread needs (reference outputs)."""
        with self._lock:
            if key not in self._memo:
                self._memo[key] = compute()
            return self._memo[key]

    def golden(self) -> GoldenSet:
        if self._golden is None:
            if self.target.golden is None:
                raise ReferenceModelError(
                    f"target {self.target.name} has no golden set (golden.path in runbooks/targets.yaml)"
                )
            self._golden = load_golden(resolve_path(self.target.golden.path, self.settings.repo_root))
        return self._golden

    def encoders(self) -> ReferenceEncoders:
        if self._encoders is None:
            config = self.target.reference
            forced = os.environ.get("TRIAGE24_REFERENCE_DEVICE")  # set in check pods: the pod's device
            if forced in ("cpu", "cuda", "auto"):
                config = config.model_copy(update={"device": forced})
            self._encoders = ReferenceEncoders(
                config, self.settings.repo_root, self.settings.model_dir / "reference-cache"
            )
        return self._encoders

    def client(self, version: str) -> ServiceClient:
        return ServiceClient(self.target, version)

    def problem(self, problem_id: str) -> Problem | None:
        return next((p for p in self.books.priority_matrix.problems if p.id == problem_id), None)


def baseline_dir(books: Runbooks, target: Target) -> Path:
    """Where the target's stored healthy baselines live (one JSON file per check)."""
    rel = target.baselines or f"baselines/{target.name}"
    p = Path(rel).expanduser()
    return p if p.is_absolute() else books.directory / p


def finding(
    ctx: DeepContext,
    check: str,
    problem: str,
    evidence: str,
    *,
    version: str,
    title: str,
    severity: str = "high",
    component: str = "embedding",
    action: str = "",
    channel: str | None = None,
) -> Finding:
    """A finding of a priority-matrix problem where the matrix has it, else a check-specific one."""
    known = ctx.problem(problem)
    if known is not None:
        return Finding.from_problem(known, check, evidence, version=version, channel=channel)
    return Finding(
        check=check,
        problem=problem,
        severity=Severity(severity),
        component=component,
        title=title,
        evidence=evidence,
        action=action,
        version=version,
        channel=channel,
    )
