"""Running a phase-2 check: measure and judge every version against the stored baseline; record baselines.

A check runs against each version of the target (stable and canary, at the same time: they are
separate services) — ``measure`` then ``judge`` against the stored healthy baseline. A version that
cannot be measured (service unreachable, reference weights missing) is ``insufficient_evidence`` with
the reason, never a crash and never a pass.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from diagnostics.checks.registry import CheckSpec, resolve
from diagnostics.deep_diagnosis.base import (
    VERSIONS,
    DeepContext,
    DeepResult,
    VersionOutcome,
    baseline_dir,
    worst,
)
from diagnostics.deep_diagnosis.encoders import ReferenceModelError
from diagnostics.deep_diagnosis.service import ServiceError
from diagnostics.incident.results import Finding, Status
from diagnostics.runbooks import Runbooks
from diagnostics.runbooks.schemas import Target

log = logging.getLogger("triage24.deep")


# --- baselines ------------------------------------------------------------------------------------


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
    """Store ``m`` as the check's healthy baseline, measured on ``version``."""
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
