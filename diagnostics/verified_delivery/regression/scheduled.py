"""The scheduled regression DAG's steps (I/O seam; the DAG only wires them).

Results go to ``<artifacts>/regression/runs/<run id>/``; every suite run is appended to
``<artifacts>/regression/history.jsonl``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from diagnostics.config import Settings
from diagnostics.incident.store import write_json

log = logging.getLogger("triage24.regression")

DRIFT_WINDOW_S = 3600.0  # latency drift: the last hour against the hour before


def _run_dir(run_id: str) -> Path:
    from diagnostics.incident.store import _segment

    return Settings().artifacts / "regression" / "runs" / _segment(run_id, "run id")


def suite_and_store(target_name: str, version: str, run_id: str) -> dict[str, Any]:
    from diagnostics.deep_diagnosis.base import DeepContext
    from diagnostics.runbooks import load_runbooks
    from diagnostics.verified_delivery.regression.suite import run_suite

    books = load_runbooks()
    target = books.targets.get(target_name)
    golden = DeepContext(books=books, target=target).golden()
    root = Settings().artifacts
    result = run_suite(
        books,
        target,
        golden,
        version,
        trigger="schedule",
        history=root / "regression" / "history.jsonl",
        ready_wait_s=books.regression.schedule.ready_wait_s,
    )
    path = write_json(_run_dir(run_id) / f"{version}.json", result.model_dump(mode="json"))
    log.info("regression %s/%s: %s - %s", target_name, version, result.status.value, result.summary)
    return {**result.brief(), "artifact": str(path)}


def drift_and_store(target_name: str, run_id: str) -> dict[str, Any]:
    from diagnostics.deep_diagnosis.base import DeepContext
    from diagnostics.deep_diagnosis.drift import channel_levels
    from diagnostics.deep_diagnosis.runner import run_check
    from diagnostics.golden_window.phase import EvidenceSources
    from diagnostics.incident.model import Incident
    from diagnostics.runbooks import load_runbooks

    books = load_runbooks()
    if not books.regression.schedule.drift_watch:
        return {"status": "skipped", "levels": {}}
    now = datetime.now(UTC)
    window = Incident(
        incident_id=run_id.replace("+", "_"),
        target=target_name,
        source="manual",
        alert_started_at=now,
        analysed_at=now,
        window_s=DRIFT_WINDOW_S,
    )
    ctx = DeepContext(
        books=books,
        target=books.targets.get(target_name),
        incident=window,
        sources=EvidenceSources.from_settings(),
    )
    result = run_check("drift", ctx)
    data = result.model_dump(mode="json")
    write_json(_run_dir(run_id) / "drift.json", data)
    return {
        "status": result.status.value,
        "summary": result.summary[:500],
        "levels": channel_levels(data, "canary"),
    }


def open_if_regressed(
    target_name: str,
    results: list[dict[str, Any]],
    drift: dict[str, Any] | None,
    *,
    url: str,
    token: str | None,
) -> dict[str, Any]:
    """Post an alert for a regressed canary (else end its episode); the intake's answer is returned."""
    from diagnostics.runbooks import load_runbooks
    from diagnostics.verified_delivery.regression.watch import (
        alert_payload,
        end_episodes,
        episode_start,
        post_alert,
        regressions,
    )

    root = Settings().artifacts
    canary = next((r for r in results if r.get("version") == "canary"), None)
    why = regressions(canary, (drift or {}).get("levels"))
    if not why:
        ended = end_episodes(root, target_name)
        return {
            "opened": False,
            "reason": "canary passes the suite and the drift watch",
            "episodes_ended": len(ended),
        }
    now = datetime.now(UTC)
    started = episode_start(root, f"{target_name}:canary", now)
    severity = load_runbooks().regression.schedule.incident_grade_severity
    payload = alert_payload(target_name, "canary", why, starts_at=started, severity=severity)
    answer = post_alert(url, token, payload)
    log.warning("canary of %s regressed (%s): intake answered %s", target_name, why, answer.get("outcome"))
    return {
        "opened": answer.get("outcome") == "created",
        "outcome": answer.get("outcome"),
        "run_id": answer.get("run_id"),
        "why": why,
    }


def record_if_approved(target_name: str, version: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Re-record the regression and phase-2 baselines from ``version`` when a person asked and it passed."""
    if version == "none":
        return {"recorded": False, "reason": "no approval to record baselines (record_baseline_from: none)"}
    mine = next((r for r in results if r and r.get("version") == version), None)
    if mine is None or mine.get("status") != "ok":
        status = mine.get("status") if mine else "not run"
        raise ValueError(f"{version} did not pass the suite ({status}): baselines not recorded")
    from diagnostics.deep_diagnosis.base import DeepContext
    from diagnostics.deep_diagnosis.phase import phase_checks
    from diagnostics.deep_diagnosis.runner import record_baselines
    from diagnostics.runbooks import load_runbooks
    from diagnostics.verified_delivery.regression.suite import record_baseline

    books = load_runbooks()
    target = books.targets.get(target_name)
    ctx = DeepContext(books=books, target=target)
    written = {"regression": str(record_baseline(books, target, ctx.golden(), version))}
    written.update({k: str(v) for k, v in record_baselines(ctx, phase_checks(books), version).items()})
    return {"recorded": True, "from": version, "files": written}
