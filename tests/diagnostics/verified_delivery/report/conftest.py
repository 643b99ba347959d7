"""Fixtures of the report tests: two real incidents, copied with the artifact times they really had.

``tests/diagnostics/fixtures/report_healthy/`` and ``report_rollback/`` are trimmed copies of the
artifacts of two real ``incident_response`` runs (``tests/dags/test_incident_response.py``, scenarios
``test_1_healthy`` and ``test_2_a_critical...``) against the testbed:

- healthy: no fault; phase 1 and phase 2 all ``ok``, the decision ``continue`` (rule ``continue``),
  no response action;
- rollback: the canary's image encoder answers 512-d vectors to a 128-d router (fault
  ``embedding_dim_mismatch``); the fast path rolled back by rule ``critical_canary_finding``, the
  stored ``response/rollback.json`` is the idempotent re-run (``already_applied``), recovery was
  verified after 46.3 s; phase 2 found the mismatch (clip_consistency, embedding_alignment,
  alignment_quality failed on the canary).

Trimmed: 16 of the 64 matched cosines per version, 3 top features per drift feature set, 3 of the 12
recovery samples, one log sample per problem, at most 6 findings in the phase summaries. Git does
not keep modification times, so :func:`copy_incident` puts back the offsets (seconds after the alert)
at which the real run wrote each folder's files: the derived timeline is the real one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
HEALTHY = FIXTURES / "report_healthy"
ROLLBACK = FIXTURES / "report_rollback"

HEALTHY_ALERT = datetime(2026, 12, 1, 11, 6, 14, 721422, tzinfo=UTC)
ROLLBACK_ALERT = datetime(2026, 12, 1, 11, 7, 30, 487891, tzinfo=UTC)

# Seconds after the alert at which the real runs wrote the files (rounded; from the runs' mtimes).
HEALTHY_TIMES = {
    "incident.json": 7.1,
    "golden_window": 8.2,
    "golden_window/model_integrity.json": 6.4,
    "decision/fast_decision.json": 8.7,
    "deep_diagnosis": 70.0,
    "deep_diagnosis/clip_consistency.json": 25.0,
    "deep_diagnosis/summary.json": 71.4,
    "deep_diagnosis/evidence.json": 71.4,
    "decision/decision.json": 72.3,
}
ROLLBACK_TIMES = {
    "incident.json": 0.8,
    "golden_window": 2.4,
    "golden_window/health_snapshot.json": 0.6,
    "deep_diagnosis": 78.4,
    "deep_diagnosis/embedding_alignment.json": 3.4,
    "deep_diagnosis/summary.json": 79.2,
    "deep_diagnosis/evidence.json": 79.2,
    "decision/fast_decision.json": 78.8,
    "decision/decision.json": 137.1,
    "response/recovery_verification.json": 136.5,
    "response/rollback.json": 138.7,
}


def copy_incident(
    src: Path, root: Path, alert: datetime, times: dict[str, float], name: str | None = None
) -> Path:
    """The fixture under ``root / name`` with each file's mtime = alert + its offset (file, else folder)."""
    target = root / (name or src.name)
    shutil.copytree(src, target)
    for path in target.rglob("*.json"):
        rel = path.relative_to(target).as_posix()
        offset = times.get(rel, times.get(rel.split("/")[0], 1.0))
        ts = (alert + timedelta(seconds=offset)).timestamp()
        os.utime(path, (ts, ts))
    return target


def edit_json(path: Path, edit: Callable[[Any], Any]) -> None:
    """Change a stored artifact in place, keeping its modification time (the timeline reads it)."""
    stat = path.stat()
    data = json.loads(path.read_text(encoding="utf-8"))
    result = edit(data)
    path.write_text(json.dumps(data if result is None else result, indent=2, ensure_ascii=False) + "\n")
    os.utime(path, (stat.st_atime, stat.st_mtime))


def load(incident_dir: Path, rel: str) -> Any:
    return json.loads((incident_dir / rel).read_text(encoding="utf-8"))


def well_formed(svg: str) -> None:
    """Parse an SVG the report wrote (its own output, not untrusted input): raises if not valid XML."""
    ET.fromstring(svg)  # noqa: S314


# --- reading the rendered page ---------------------------------------------------------------------

SVG = re.compile(r'<svg class="plot plot-(?P<kind>[a-z]+)" data-plot="(?P<name>[^"]+)".*?</svg>', re.S)


def svgs(html: str) -> dict[str, str]:
    """data-plot name -> the whole <svg> element."""
    return {m.group("name"): m.group(0) for m in SVG.finditer(html)}


def text_of(html: str) -> str:
    """The page's text, as a reader sees it (tags dropped, entities decoded)."""
    return unescape(re.sub(r"<[^>]+>", " ", html))


def timeline_rows(html: str) -> dict[str, tuple[str, str]]:
    """phase -> (verdict, the row's text)."""
    rows = re.findall(
        r'<tr class="phase-row" data-phase="([^"]+)" data-verdict="([^"]+)">(.*?)</tr>', html, re.S
    )
    return {phase: (verdict, " ".join(text_of(body).split())) for phase, verdict, body in rows}
