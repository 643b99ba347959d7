"""What an incident run left behind, read back into one typed observation per run.

Everything comes from the run itself (Airflow's run record: its conf, queue and end times) and from
the artifacts it stored under ``<artifacts>/<run id>/``: each result's file time is when it was
written (results are written atomically, so the mtime is the moment it became readable). Leaked PII is
looked for by value: the values the testbed's ``pii_in_logs`` fault wrote into its logs (the ground
truth) are searched for in every artifact file of the run, zip members included.
"""

from __future__ import annotations

import json
import tarfile
import zipfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from diagnostics.decision.model import acts_without_human

PHASE1 = "golden_window"
PHASE2 = "deep_diagnosis"
SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}
BLAMING = frozenset({"critical", "high"})
REPORT = Path("report") / "report.html"
PII_FIELDS = ("phone", "alt_phone", "id_card", "email", "card")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FindingBrief(_Model):
    phase: str
    check: str
    problem: str
    severity: str
    component: str
    version: str | None = None
    channel: str | None = None


class RunTimes(_Model):
    """Epoch seconds (UTC) of each step of one run; ``None``: it did not happen (or is not known)."""

    alert_fired: float | None = Field(default=None, description="earliest firing alert's startsAt")
    alert_delivered: float | None = Field(default=None, description="the intake received the delivery")
    created: float | None = Field(default=None, description="the run was queued")
    first_evidence: float | None = Field(default=None, description="the first phase-1 result written")
    phase1_done: float | None = None
    fast_decision: float | None = None
    decision: float | None = Field(default=None, description="the decision that acted (fast path or full)")
    rollback_applied: float | None = None
    recovery_verified: float | None = None
    report_written: float | None = None
    finished: float | None = None


class RunObservation(_Model):
    run_id: str
    kind: Literal["alert", "manual"]
    state: str | None = None
    conf_version: str | None = None
    grade: str | None = Field(default=None, description="the grade the run was created with (its conf)")
    reevaluates: str | None = Field(
        default=None, description="a re-evaluation run of the same incident: the run it supersedes"
    )
    incident_grade: str | None = Field(
        default=None, description="the intake's grade of the run's incident at the end (escalations raise it)"
    )
    alert_names: list[str] = Field(default_factory=list)
    times: RunTimes = Field(default_factory=RunTimes)
    checks: dict[str, str] = Field(default_factory=dict, description="phase-1 and phase-2 check statuses")
    phase1_status: str | None = None
    suspected_component: str | None = None
    suspected_version: str | None = None
    lead_problem: str | None = None
    lead_severity: str | None = None
    lead_phase: str | None = None
    top_action: str | None = None
    action_problem: str | None = Field(
        default=None, description="the priority-matrix problem whose action is the top action"
    )
    findings: list[FindingBrief] = Field(default_factory=list)
    decision: str | None = None
    decision_rule: str | None = None
    fast_path: bool = False
    needs_human: bool | None = None
    human_answer: str | None = None
    rollback_outcome: str | None = None
    rollback_weights: list[float | None] = Field(default_factory=list, description="[before, after]")
    recovered: bool | None = None
    report: str | None = None
    pii_leaks: list[str] = Field(default_factory=list, description="'file: kind' of each leaked value found")
    notes: list[str] = Field(default_factory=list)

    def blamed(self) -> list[FindingBrief]:
        """Findings at high or critical severity (what "something is blamed" means)."""
        return [f for f in self.findings if f.severity in BLAMING]


def iso_ts(value: object) -> float | None:
    """Epoch seconds of an ISO-8601 string (``Z`` or an offset), else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _findings(summary: dict[str, Any] | None, phase: str) -> list[FindingBrief]:
    out = []
    for f in (summary or {}).get("findings") or []:
        if isinstance(f, dict) and f.get("problem") and f.get("severity"):
            out.append(
                FindingBrief(
                    phase=phase,
                    check=str(f.get("check", "")),
                    problem=str(f["problem"]),
                    severity=str(f["severity"]),
                    component=str(f.get("component", "")),
                    version=f.get("version"),
                    channel=f.get("channel"),
                )
            )
    return out


def _lead(summary: dict[str, Any] | None, phase: str) -> tuple[int, FindingBrief] | None:
    """The summary's lead finding: the most severe one on its suspected component (as it ranks them)."""
    findings = _findings(summary, phase)
    if not findings or summary is None:
        return None
    top = min(SEVERITY_RANK.get(f.severity, 9) for f in findings)
    tied = [f for f in findings if SEVERITY_RANK.get(f.severity, 9) == top]
    comp = summary.get("suspected_component")
    lead = next((f for f in tied if f.component == comp), tied[0])
    return top, lead


def observe_run(
    root: Path,
    run: dict[str, Any],
    kind: Literal["alert", "manual"],
    *,
    human_answer: str | None = None,
    pii_values: dict[str, str] | None = None,
    actions: dict[str, str] | None = None,
) -> RunObservation:
    """One run's observation from Airflow's run record ``run`` and its artifacts under ``root``;
    ``actions`` maps each priority-matrix action text to its problem id (the runbook action's name)."""
    run_id = str(run["dag_run_id"])
    base = root / run_id
    conf = run.get("conf") or {}
    firing = [a for a in conf.get("alerts") or [] if isinstance(a, dict) and a.get("status") == "firing"]
    fired = [t for t in (iso_ts(a.get("starts_at")) for a in firing) if t is not None]
    obs = RunObservation(
        run_id=run_id,
        kind=kind,
        state=run.get("state"),
        conf_version=conf.get("version"),
        grade=conf.get("grade"),
        reevaluates=conf.get("reevaluates") or None,
        alert_names=sorted({str(a.get("labels", {}).get("alertname", "")) for a in firing} - {""}),
        human_answer=human_answer,
    )
    t = obs.times
    t.alert_fired = min(fired) if fired else None
    t.alert_delivered = iso_ts(conf.get("received_at"))
    t.created = iso_ts(run.get("queued_at")) or iso_ts(run.get("run_after"))
    t.finished = iso_ts(run.get("end_date")) if run.get("state") in ("success", "failed") else None

    phase1 = sorted(p for p in (base / PHASE1).glob("*.json") if not p.name.startswith("."))
    evidence = [m for m in (_mtime(p) for p in phase1 if p.stem != "summary") if m is not None]
    t.first_evidence = min(evidence) if evidence else None
    s1 = _json(base / PHASE1 / "summary.json")
    s2 = _json(base / PHASE2 / "summary.json")
    t.phase1_done = _mtime(base / PHASE1 / "summary.json")
    for summary in (s1, s2):
        for name, status in ((summary or {}).get("checks") or {}).items():
            obs.checks[str(name)] = str(status)
    obs.phase1_status = (s1 or {}).get("status")
    obs.findings = _findings(s1, PHASE1) + _findings(s2, PHASE2)
    leads = [x for x in (_lead(s1, PHASE1), _lead(s2, PHASE2)) if x is not None]
    if leads:
        _, lead = min(leads, key=lambda x: x[0])  # the more severe phase; a tie goes to phase 1
        chosen = s1 if lead.phase == PHASE1 else s2
        obs.suspected_component = (chosen or {}).get("suspected_component") or lead.component
        obs.suspected_version = (chosen or {}).get("suspected_version") or lead.version
        obs.lead_problem, obs.lead_severity, obs.lead_phase = lead.problem, lead.severity, lead.phase
        obs.top_action = (chosen or {}).get("top_action")
        by_text = {" ".join(k.split()): v for k, v in (actions or {}).items()}
        if obs.top_action:
            obs.action_problem = by_text.get(" ".join(obs.top_action.split()))

    fast = _json(base / "decision" / "fast_decision.json")
    full = _json(base / "decision" / "decision.json")
    # the fast path was taken: Decision.rolls_back_without_human, as the fast decision stored it
    obs.fast_path = bool(
        fast
        and fast.get("outcome") == "rollback"
        and fast.get(
            "acts_without_human",
            acts_without_human(fast.get("outcome"), fast.get("promote_to"), fast.get("needs_human")),
        )
    )
    t.fast_decision = _mtime(base / "decision" / "fast_decision.json")
    if obs.fast_path:
        t.decision = t.fast_decision
    else:
        t.decision = _mtime(base / "decision" / "decision.json")
    acted = full or (fast if obs.fast_path else None)
    if acted:
        obs.decision, obs.decision_rule = acted.get("outcome"), acted.get("rule")
        obs.needs_human = acted.get("needs_human")
    elif fast:
        obs.notes.append(
            f"only the fast decision exists ({fast.get('outcome')}); the full one was not stored"
        )

    rb = _json(base / "response" / "rollback.json")
    if rb:
        obs.rollback_outcome = rb.get("outcome")
        obs.rollback_weights = [
            (rb.get("before") or {}).get("canary_weight"),
            (rb.get("after") or {}).get("canary_weight"),
        ]
        if rb.get("outcome") == "applied":
            t.rollback_applied = _mtime(base / "response" / "rollback.json")
    rv = _json(base / "response" / "recovery_verification.json")
    if rv:
        obs.recovered = bool(rv.get("recovered"))
        if obs.recovered:
            t.recovery_verified = _mtime(base / "response" / "recovery_verification.json")
    report = base / REPORT
    if report.is_file():
        obs.report = str(report)
        t.report_written = _mtime(report)
    if pii_values:
        obs.pii_leaks = find_values(base, pii_values)
    return obs


# --- PII -------------------------------------------------------------------------------------------


def leaked_pii(log_files: Iterable[Path], since: float | None = None) -> dict[str, str]:
    """The PII values (value -> kind) the testbed wrote into its JSON-lines logs (the ``caller`` field of
    the ``pii_in_logs`` fault), optionally only in lines at or after ``since`` (epoch seconds)."""
    found: dict[str, str] = {}
    for path in log_files:
        try:
            fh = path.open(encoding="utf-8", errors="replace")
        except OSError:
            continue
        with fh:
            for line in fh:
                if '"caller"' not in line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(rec, dict):
                    continue
                if since is not None and (iso_ts(rec.get("ts")) or 0.0) < since - 5.0:
                    continue
                caller = rec.get("caller")
                if not isinstance(caller, dict):
                    caller = (rec.get("fields") or {}).get("caller")
                if isinstance(caller, dict):
                    for kind in PII_FIELDS:
                        value = caller.get(kind)
                        if isinstance(value, str) and len(value) >= 6:
                            found[value] = kind
    return found


def _texts(path: Path) -> Iterator[tuple[str, str]]:
    """(name, text) of a file, or of each member of a zip / tar archive."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield f"{path}!{info.filename}", zf.read(info).decode("utf-8", errors="replace")
        return
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tf:
            for member in tf.getmembers():
                fh = tf.extractfile(member) if member.isfile() else None
                if fh is not None:
                    yield f"{path}!{member.name}", fh.read().decode("utf-8", errors="replace")
        return
    yield str(path), path.read_text(encoding="utf-8", errors="replace")


def find_values(directory: Path, values: dict[str, str]) -> list[str]:
    """``'file: kind'`` for each of ``values`` (value -> kind) found verbatim in a file under
    ``directory`` (archives searched member by member). The values themselves are never returned."""
    hits: list[str] = []
    if not values or not directory.is_dir():
        return hits
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        try:
            for name, text in _texts(path):
                kinds = sorted({kind for value, kind in values.items() if value in text})
                hits += [f"{name}: {kind}" for kind in kinds]
        except (OSError, zipfile.BadZipFile, tarfile.TarError):
            continue
    return hits


__all__ = [
    "FindingBrief",
    "RunObservation",
    "RunTimes",
    "find_values",
    "iso_ts",
    "leaked_pii",
    "observe_run",
]
