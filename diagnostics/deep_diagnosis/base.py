"""What every phase-2 check shares: its context, its per-version outcome, its result, its baseline.

A check runs against each version of the target (stable and canary, at the same time: they are
separate services) — ``measure`` then ``judge`` against the stored healthy baseline. The check's
status is the worst of the versions' (failed > degraded > insufficient_evidence > ok); the decision
reads the canary's. A version that cannot be measured (service unreachable, reference weights
missing) is ``insufficient_evidence`` with the reason, never a crash and never a pass.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from diagnostics.config import Settings
from diagnostics.deep_diagnosis.encoders import ReferenceEncoders, ReferenceModelError, resolve_path
from diagnostics.deep_diagnosis.registry import CheckSpec, resolve
from diagnostics.deep_diagnosis.service import ServiceClient, ServiceError
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


# --- baselines ------------------------------------------------------------------------------------


def baseline_dir(books: Runbooks, target: Target) -> Path:
    rel = target.baselines or f"baselines/{target.name}"
    p = Path(rel).expanduser()
    return p if p.is_absolute() else books.directory / p


def load_baseline(
    books: Runbooks, target: Target, spec: CheckSpec[Any, Any]
) -> tuple[BaseModel | None, dict[str, Any] | None]:
    """(measurement, meta) of the stored healthy baseline, or (None, None) when none was recorded.
    A baseline that no longer matches the check's measurement model is reported, not used."""
    path = baseline_dir(books, target) / f"{spec.name}.json"
    if not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        measurement = spec.measurement.model_validate(data["measurement"])
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("baseline %s unusable (%s): judged without it", path, str(exc)[:200])
        return None, {"path": str(path), "error": str(exc)[:200]}
    meta = {k: data.get(k) for k in ("version", "recorded_at", "target")}
    return measurement, {**meta, "path": str(path)}


def save_baseline(
    books: Runbooks, target: Target, spec: CheckSpec[Any, Any], version: str, m: BaseModel
) -> Path:
    from diagnostics.incident.store import write_json

    path = baseline_dir(books, target) / f"{spec.name}.json"
    data = {
        "check": spec.name,
        "target": target.name,
        "version": version,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "measurement": m.model_dump(mode="json"),
    }
    return write_json(path, data)


# --- running a check --------------------------------------------------------------------------------


def measure_version(
    ctx: DeepContext, spec: CheckSpec[Any, Any], version: str, th: BaseModel
) -> BaseModel | str:
    """The measurement, or why there is none (a string)."""
    assert spec.measure is not None
    try:
        measured: BaseModel = spec.measure(ctx, version, th)
        return measured
    except ServiceError as exc:
        return f"{version} could not be measured: {exc}"
    except ReferenceModelError as exc:
        return f"reference model unavailable: {exc}"
    except FileNotFoundError as exc:
        return f"missing input: {exc}"


def run_check(name: str, ctx: DeepContext, versions: tuple[str, ...] = VERSIONS) -> DeepResult:
    """Run one phase-2 check on every version present (in parallel); a crash is reported, not raised."""
    started = time.perf_counter()
    spec = resolve(name)
    try:
        th = spec.thresholds_from(ctx.books)
        baseline, meta = load_baseline(ctx.books, ctx.target, spec)
        present = [v for v in versions if v in ctx.target.versions]

        def one(version: str) -> VersionOutcome:
            m = measure_version(ctx, spec, version, th)
            if isinstance(m, str):
                return VersionOutcome(version=version, status=Status.INSUFFICIENT_EVIDENCE, summary=m)
            assert spec.judge is not None
            return spec.judge(ctx, version, m, baseline, th)

        with ThreadPoolExecutor(max_workers=len(present) or 1) as pool:
            outcomes = dict(zip(present, pool.map(one, present), strict=True))
    except Exception as exc:  # a bug must not stop the incident's other checks
        log.error("check %s crashed:\n%s", name, traceback.format_exc())
        return DeepResult(
            check=name,
            status=Status.INSUFFICIENT_EVIDENCE,
            summary=f"check crashed: {type(exc).__name__}: {str(exc)[:300]}",
            details={"crashed": True},
            modality=spec.modality,
            seconds=round(time.perf_counter() - started, 3),
        )
    status = worst([o.status for o in outcomes.values()])
    summary = "; ".join(f"{v}: {o.summary}" for v, o in outcomes.items())
    if baseline is None and meta is None:
        summary += " (no stored baseline: judged on absolute bounds only)"
    findings = sorted((f for o in outcomes.values() for f in o.findings), key=Finding.rank_key)
    return DeepResult(
        check=name,
        status=status,
        summary=summary,
        findings=findings,
        modality=spec.modality,
        versions=outcomes,
        baseline=meta,
        thresholds=th.model_dump(mode="json"),
        seconds=round(time.perf_counter() - started, 3),
    )


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


def record_baselines(ctx: DeepContext, names: list[str], version: str = "stable") -> dict[str, Path | str]:
    """Measure ``version`` (a healthy one) with each check and store it as the check's baseline.
    Returns check -> the file written, or why nothing was (the old baseline is then kept)."""
    out: dict[str, Path | str] = {}
    for name in names:
        spec = resolve(name)
        th = spec.thresholds_from(ctx.books)
        m = measure_version(ctx, spec, version, th)
        out[name] = m if isinstance(m, str) else save_baseline(ctx.books, ctx.target, spec, version, m)
    return out
