"""After a scenario: what its runs left, the intake's journal and the peak memory, into its observation."""

from __future__ import annotations

import contextlib
import sqlite3

from diagnostics.config import Settings
from diagnostics.runbooks import RunbookError, load_runbooks
from harness.scenario.control import RssSampler
from harness.scenario.observe import leaked_pii, observe_run
from harness.scenario.runs import Tracked
from harness.scenario.schema import Scenario
from harness.scenario.scoring import ScenarioObservation


def collect(
    settings: Settings, sc: Scenario, obs: ScenarioObservation, tracked: dict[str, Tracked], rss: RssSampler
) -> None:
    """Read every tracked run into ``obs``, with the intake's outcomes and grades and the peak memory."""
    actions = _runbook_actions(settings, obs)
    pii = leaked_pii(sorted(settings.log_dir.glob("testbed-*.jsonl")), since=obs.started_at)
    obs.pii_values_logged = len(pii)
    for tr in tracked.values():
        run_obs = observe_run(
            settings.artifacts,
            tr.run,
            tr.kind,
            human_answer=tr.answered,
            pii_values=pii,
            actions=actions,
        )
        run_obs.notes += tr.notes
        obs.runs.append(run_obs)
    obs.runs.sort(key=lambda r: r.times.created or 0.0)
    if obs.primary is None and obs.runs and sc.trigger.kind == "alert":
        obs.primary = obs.runs[0].run_id  # interrupted before the timeline chose
    obs.primary = follow_reevaluations(obs)
    obs.deliveries = deliveries(settings, obs.started_at)
    obs.alert_groups = incident_groups(settings, [r.run_id for r in obs.runs])
    grades = incident_grades(settings, [r.run_id for r in obs.runs])
    for run_obs in obs.runs:
        run_obs.incident_grade = grades.get(run_obs.run_id)
    obs.peak_rss_mib = round(rss.peak_mib, 1) if rss.peak_mib else None
    obs.peak_pss_mib = round(rss.peak_pss_mib, 1) if rss.peak_pss_mib else None


def follow_reevaluations(obs: ScenarioObservation) -> str | None:
    """The primary run, or the latest run re-evaluating it (new evidence at the same incident): the
    incident's conclusion is that run's."""
    primary, seen = obs.primary, set()
    while primary is not None and primary not in seen:
        seen.add(primary)
        primary = next((r.run_id for r in obs.runs if r.reevaluates == primary), primary)
    return primary


def _runbook_actions(settings: Settings, obs: ScenarioObservation) -> dict[str, str]:
    """Each runbook action's matrix problem id (so a run's action is named by its problem)."""
    try:
        matrix = load_runbooks(settings.runbooks_dir).priority_matrix
    except RunbookError as exc:
        obs.errors.append(f"runbooks unreadable, runbook actions not named: {exc}")
        return {}
    return {p.action: p.id for p in matrix.problems}


def deliveries(settings: Settings, since: float) -> dict[str, int]:
    """The intake journal's delivery outcomes since ``since``, counted."""
    from diagnostics.intake.config import IntakeSettings

    path = IntakeSettings().journal_path(settings)
    if not path.is_file():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
            rows = conn.execute(
                "SELECT outcome, COUNT(*) FROM deliveries WHERE received_at >= ? GROUP BY outcome",
                (since,),
            ).fetchall()
    except sqlite3.Error:
        return {}
    return {str(k): int(v) for k, v in rows}


def incident_grades(settings: Settings, run_ids: list[str]) -> dict[str, str]:
    """The intake journal's grade of each run's incident now: an alert of a higher grade joining the
    group after the run was created raises it (the run's conf keeps the grade it opened with)."""
    from diagnostics.intake.config import IntakeSettings

    path = IntakeSettings().journal_path(settings)
    if not run_ids or not path.is_file():
        return {}
    out: dict[str, str] = {}
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
            for run_id in run_ids:
                row = conn.execute("SELECT grade FROM incidents WHERE run_id = ?", (run_id,)).fetchone()
                if row is not None:
                    out[run_id] = str(row[0])
    except sqlite3.Error:
        return out
    return out


def incident_groups(settings: Settings, run_ids: list[str]) -> dict[str, list[str]]:
    """Each run's incident's alert groups (the opener first, then those the correlation rules joined),
    from the intake journal; a re-evaluation run gets its incident's."""
    from diagnostics.intake.config import IntakeSettings
    from diagnostics.intake.journal import Journal, JournalError
    from diagnostics.intake.members import incident_alerts

    path = IntakeSettings().journal_path(settings)
    if not run_ids or not path.is_file():
        return {}
    try:
        held = incident_alerts(Journal(path), run_ids)
    except (JournalError, sqlite3.Error):
        return {}
    return {run_id: [g.group_key for g in alerts.groups] for run_id, alerts in held.items()}


__all__ = ["collect", "deliveries", "follow_reevaluations", "incident_grades", "incident_groups"]
