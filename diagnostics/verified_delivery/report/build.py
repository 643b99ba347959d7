"""``build_report``: one incident's diff report, ``report/report.html`` (with plots) and ``report/report.md``.

The report is what an on-call engineer reads after the incident and what the audit bundle keeps:
the alert and its grade, the SOP timeline against its deadlines, the evidence with the numbers behind
every finding, the metrics timeline of the window (stable vs canary per channel), the decisions and
their reasons, the action and the time to recover, and the regression diff. It is built only from the
incident's stored artifacts (plus, when the DAG has it, the phases' real start and end), so the same
function serves the DAG's phase-3 task and ``triage24 report``.

Guarantees, because the report leaves the system (audit bundle, tickets, e-mail):

- **PII-masked**: every artifact string is masked as it is read (:mod:`.load`), and the templates'
  ``finalize`` masks every value printed once more — a string that does not come from an artifact
  (a runbook title, a path) is masked too. Charts are built from masked data only.
- **Self-contained**: no script, no external stylesheet, font or image; the charts are inline SVG.
- **Never raises for the incident's state**: a missing or malformed artifact is named in its section
  and in the list of problems. Only an ``incident_dir`` that is not a folder is an error
  (:class:`ReportError`): there is nothing to report on and nowhere to write.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, Field

from diagnostics.pii import mask_pii
from diagnostics.runbooks import RunbookError, load_runbooks
from diagnostics.verified_delivery.report.load import Artifact, as_list, as_num, as_str, read_artifact
from diagnostics.verified_delivery.report.sections.evidence import phase_view
from diagnostics.verified_delivery.report.sections.formatting import fmt_s, fmt_ts
from diagnostics.verified_delivery.report.sections.metrics_timeline import REL as METRIC_TIMELINE
from diagnostics.verified_delivery.report.sections.metrics_timeline import metrics_timeline_view
from diagnostics.verified_delivery.report.sections.plots import (
    drift_plots,
    latency_plots,
    similarity_plots,
    wer_plots,
)
from diagnostics.verified_delivery.report.sections.regression import regression_view
from diagnostics.verified_delivery.report.sections.response import (
    action_view,
    decision_view,
    response_headline,
)
from diagnostics.verified_delivery.report.sections.trends import skipped_problem, trends_view
from diagnostics.verified_delivery.report.timeline import (
    DEFAULT_PHASES,
    PhaseSpan,
    TimelineRow,
    format_duration,
    timeline_rows,
)

log = logging.getLogger("triage24.report")

REPORT_DIR = "report"
HTML_NAME = "report.html"
MD_NAME = "report.md"
TEMPLATES = Path(__file__).with_name("templates")

PHASE1 = "golden_window"
PHASE2 = "deep_diagnosis"
DEFAULT_CHECKS: dict[str, tuple[str, ...]] = {
    PHASE1: ("health_snapshot", "model_integrity", "metrics_sla", "log_classification"),
    PHASE2: (
        "clip_consistency",
        "embedding_alignment",
        "asr_check",
        "temporal_alignment",
        "alignment_quality",
        "drift",
    ),
}
# Files in a phase folder that are not checks (the metric timeline has its own section).
NOT_CHECKS = frozenset({"summary", "evidence", "metric_timeline"})
RESPONSE_ORDER = ("rollback", "promote", "recovery_verification", "hold")
REGRESSION = "verified_delivery/regression_suite.json"
# The regression history of every run, beside the incidents under the artifact root.
HISTORY = "regression/history.jsonl"


class ReportError(ValueError):
    """There is no incident to report on at the given path."""


class ReportResult(BaseModel):
    """Where the report went, and the few facts a caller (the DAG's XCom, the CLI) shows about it."""

    model_config = ConfigDict(extra="forbid")

    incident_id: str
    html: Path
    markdown: Path
    outcome: str | None = Field(default=None, description="the full decision's outcome, else the fast one's")
    rule: str | None = None
    action: str
    time_to_recover_s: float | None = None
    plots: int = Field(description="inline SVG charts in the HTML page")
    problems: list[str] = Field(default_factory=list, description="missing or malformed artifacts")
    summary: str

    def brief(self) -> dict[str, Any]:
        """Small enough for XCom."""
        return {
            "incident_id": self.incident_id,
            "html": str(self.html),
            "markdown": str(self.markdown),
            "outcome": self.outcome,
            "rule": self.rule,
            "time_to_recover_s": self.time_to_recover_s,
            "plots": self.plots,
            "problems": len(self.problems),
            "summary": self.summary,
        }


# --- templates ----------------------------------------------------------------------------------------


def _mask_output(value: Any) -> Any:
    """Jinja ``finalize``: mask every printed string; the SVG charts (Markup, built from masked data)
    pass as they are, as do non-strings (formatted before printing anyway)."""
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    return mask_pii(value)


def _md(value: Any) -> str:
    """A value for a Markdown table cell or list item: one line, no table break, no raw HTML tag."""
    text = "" if value is None else str(value)
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def environment() -> Environment:
    """Jinja2 with autoescape on for HTML (and any string template), off for the Markdown summary."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(
            enabled_extensions=("html.j2", "html"), disabled_extensions=("md.j2",), default_for_string=True
        ),
        finalize=_mask_output,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = _md
    return env


def _write_text(path: Path, text: str) -> None:
    """Atomic, like the artifacts: a reader (the audit bundle) never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- runbooks ----------------------------------------------------------------------------------------


class _Sop:
    """What the report needs from runbooks/sop.yaml, with the built-in SOP when it cannot be read."""

    def __init__(self, deadlines_h: Mapping[str, float] | None) -> None:
        self.phases: list[tuple[str, str]] = [(p, "") for p in DEFAULT_PHASES]
        self.checks: dict[str, tuple[str, ...]] = dict(DEFAULT_CHECKS)
        self.deadlines_h: dict[str, float] = {}
        self.problem = ""
        try:
            books = load_runbooks()
        except (RunbookError, OSError) as exc:
            first = exc.problems[0] if isinstance(exc, RunbookError) and exc.problems else exc
            self.problem = f"runbooks unreadable ({first}): SOP order and check lists are the built-in ones"
            if deadlines_h is None:
                self.problem += ", deadlines unknown"
        else:
            self.phases = [(p.id, p.title) for p in books.sop.phases]
            for p in books.sop.phases:
                if p.checks and p.id in DEFAULT_CHECKS:
                    self.checks[p.id] = tuple(p.checks)
                if p.deadline_h is not None:
                    self.deadlines_h[p.id] = float(p.deadline_h)
        if deadlines_h is not None:
            self.deadlines_h = {str(k): float(v) for k, v in deadlines_h.items()}


# --- the report ---------------------------------------------------------------------------------------


def _phase_checks(incident_dir: Path, phase: str, listed: Sequence[str]) -> list[str]:
    """The SOP's checks of a phase, then any other check result stored in its folder."""
    try:
        found = sorted(p.stem for p in (incident_dir / phase).glob("*.json"))
    except OSError:
        found = []
    return [*listed, *(n for n in found if n not in listed and n not in NOT_CHECKS)]


def _response_names(incident_dir: Path) -> list[str]:
    try:
        found = sorted(p.stem for p in (incident_dir / "response").glob("*.json"))
    except OSError:
        return []
    return [n for n in RESPONSE_ORDER if n in found] + [n for n in found if n not in RESPONSE_ORDER]


def _parse_ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _regression_headline(view: Mapping[str, Any]) -> str:
    if view["state"] == "missing":
        return "not run"
    if view["state"] != "present":
        return "unreadable"
    counts = ", ".join(f"{n} {status}" for status, n in view.get("counts", {}).items())
    return " - ".join(x for x in (view.get("status"), counts) if x) or "no cases"


def _timeline_view(rows: Sequence[TimelineRow]) -> list[dict[str, str]]:
    out = []
    for r in rows:
        duration = r.duration_s
        out.append(
            {
                "phase": r.phase,
                "title": r.title,
                "start": fmt_ts(r.start),
                "end": fmt_ts(r.end) if r.end else ("running" if r.start else "n/a"),
                "duration": format_duration(duration) if duration is not None else "n/a",
                "deadline": (
                    f"{fmt_ts(r.deadline)} (+{r.deadline_h:g} h)"
                    if r.deadline is not None and r.deadline_h is not None
                    else (f"+{r.deadline_h:g} h" if r.deadline_h is not None else "none")
                ),
                "verdict": r.verdict,
                "verdict_text": r.verdict_text,
                "source": {"dag": "DAG", "artifacts": "artifact times", "none": "-"}[r.source],
            }
        )
    return out


class _Reader:
    """Reads the incident's artifacts and lists, in reading order, each one missing or malformed."""

    def __init__(self, incident_dir: Path, problems: list[str]) -> None:
        self.incident_dir = incident_dir
        self.problems = problems

    def read(self, rel: str, expected: bool = True) -> Artifact:
        art = read_artifact(self.incident_dir, rel)
        if art.state == "malformed" or (expected and art.state == "missing"):
            self.problems.append(art.note())
        return art


def _incident_view(incident: Artifact, alert_started: datetime | None) -> dict[str, Any]:
    """The alert section: what incident.json says about the alert and the run."""
    inc = incident.data
    return {
        "state": incident.state,
        "note": incident.note(),
        "target": as_str(inc.get("target"), "unknown"),
        "source": as_str(inc.get("source"), "unknown"),
        "grade": as_str(inc.get("grade")) or "ungraded",
        "escalated": inc.get("escalated") is True,
        "dry_run": inc.get("dry_run") is True,
        "alerts": ", ".join(as_str(a) for a in as_list(inc.get("alert_names"))) or "none (manual run)",
        "alert_started_at": fmt_ts(alert_started),
        "analysed_at": fmt_ts(_parse_ts(inc.get("analysed_at"))),
        "window": fmt_s(inc.get("window_s")),
        "suspected_version": as_str(inc.get("suspected_version")) or "none",
    }


def _evidence(reader: _Reader, sop: _Sop) -> tuple[list[dict[str, Any]], dict[str, dict[str, Artifact]]]:
    """Each phase's evidence view, and the check artifacts read for it (phase -> check -> artifact)."""
    incident_dir = reader.incident_dir
    phases = []
    titles = dict(sop.phases)
    arts: dict[str, dict[str, Artifact]] = {}
    for phase in (PHASE1, PHASE2):
        names = _phase_checks(incident_dir, phase, sop.checks.get(phase, DEFAULT_CHECKS[phase]))
        ran = (incident_dir / phase).is_dir()
        # A phase that never ran is one problem, not one per check.
        found = {n: reader.read(f"{phase}/{n}.json", expected=ran) for n in names}
        phase_summary = reader.read(f"{phase}/summary.json", expected=ran)
        if not ran:
            reader.problems.append(f"{phase}/: no artifacts (the phase did not run or stored nothing)")
        arts[phase] = found
        phases.append(phase_view(phase, titles.get(phase, ""), names, found, phase_summary))
    return phases, arts


class _Plots:
    """The charts of the evidence, the reasons a chart could not be drawn, and the WER table."""

    def __init__(self, incident_dir: Path, arts: Mapping[str, Mapping[str, Artifact]]) -> None:
        def source(phase: str, name: str) -> Artifact:
            """A plot's artifact: the one read already, or read now when the SOP no longer lists its check."""
            return arts[phase].get(name) or read_artifact(incident_dir, f"{phase}/{name}.json")

        self.plots: dict[str, list[dict[str, str]]] = {}
        self.notes: list[str] = []
        self.plots["latency"], notes = latency_plots(source(PHASE1, "metrics_sla"))
        self.notes.extend(notes)
        self.plots["similarity"], notes = similarity_plots(source(PHASE2, "clip_consistency"))
        self.notes.extend(notes)
        self.plots["wer"], notes, self.wer_table = wer_plots(source(PHASE2, "asr_check"))
        self.notes.extend(notes)
        self.plots["drift"], notes = drift_plots(source(PHASE2, "drift"))
        self.notes.extend(notes)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.plots.values())

    def context(self) -> dict[str, Any]:
        """The template variables of the charts."""
        return {
            # The charts are built by diagnostics.verified_delivery.report.svg, which escapes every
            # text it writes, from masked data: safe to insert as markup.
            "plots": {k: [{**p, "svg": Markup(p["svg"])} for p in v] for k, v in self.plots.items()},  # noqa: S704
            "plot_notes": self.notes,
            "wer_table": self.wer_table,
            "wer_versions": [k for k in (self.wer_table[0].keys() if self.wer_table else []) if k != "clip"],
        }


class _Outcome:
    """The decisions, the response actions and the regression suite, and what the headline takes from them."""

    def __init__(self, reader: _Reader) -> None:
        fast = reader.read("decision/fast_decision.json", expected=False)
        full = reader.read("decision/decision.json")
        self.decisions = [
            decision_view("full decision", full),
            decision_view("fast-path decision", fast, collapsed=full.ok),
        ]
        self.response_arts = {
            n: reader.read(f"response/{n}.json") for n in _response_names(reader.incident_dir)
        }
        self.actions = [action_view(n, a) for n, a in self.response_arts.items()]
        self.headline = response_headline(self.actions, self.response_arts)
        self.regression = regression_view(reader.read(REGRESSION, expected=False))
        deciding = full if full.ok else fast if fast.ok else None
        self.outcome = (as_str(deciding.data.get("outcome")) or None) if deciding else None
        self.rule = (as_str(deciding.data.get("rule")) or None) if deciding else None

    @property
    def time_to_recover_s(self) -> float | None:
        recovery = self.response_arts.get("recovery_verification")
        if recovery is not None and recovery.ok and recovery.data.get("recovered") is True:
            return as_num(recovery.data.get("time_to_recover_s"))
        return None

    def headline_view(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome or "no decision recorded",
            "rule": self.rule or "n/a",
            **self.headline,
            "regression": _regression_headline(self.regression),
        }


def _trends(
    incident_dir: Path, history: Path | None, target: str | None, problems: list[str]
) -> dict[str, Any]:
    """The regression history's trend section of ``target``; its malformed lines are a problem."""
    path = history if history is not None else incident_dir.parent / HISTORY
    view = trends_view(path, target, HISTORY if history is None else path.name)
    if skipped_problem(view):
        problems.append(skipped_problem(view))
    # The charts are built by diagnostics.verified_delivery.report.svg from masked data: safe markup.
    view["plots"] = [{**p, "svg": Markup(p["svg"])} for p in view["plots"]]  # noqa: S704
    return view


def _metrics_timeline(reader: _Reader) -> dict[str, Any]:
    """The metric timeline's section; a malformed file is a problem, an absent one is said there."""
    view = metrics_timeline_view(reader.read(METRIC_TIMELINE, expected=False))
    if view["state"] == "malformed":
        reader.problems.append(view["note"])
    # The charts are built by diagnostics.verified_delivery.report.svg from masked data: safe markup.
    view["plots"] = [{**p, "svg": Markup(p["svg"])} for p in view["plots"]]  # noqa: S704
    return view


def _summary(incident_id: str, res: _Outcome, rows: Sequence[TimelineRow], problems: Sequence[str]) -> str:
    """The one-line summary (XCom, CLI, the report's top)."""
    missed = [r.phase for r in rows if r.verdict == "missed"]
    return (
        f"{incident_id}: decision {res.outcome or 'none'}"
        + (f" ({res.rule})" if res.rule else "")
        + f"; action {res.headline['action']}; time to recover {res.headline['time_to_recover']}"
        + (f"; deadline missed: {', '.join(missed)}" if missed else "")
        + (f"; {len(problems)} artifact problem(s)" if problems else "")
    )


def _render(incident_dir: Path, context: Mapping[str, Any]) -> tuple[Path, Path]:
    """Render both templates and write them under ``<incident_dir>/report/``."""
    env = environment()
    html = env.get_template("report.html.j2").render(**context)
    markdown = env.get_template("report.md.j2").render(**context)
    out = incident_dir / REPORT_DIR
    html_path, md_path = out / HTML_NAME, out / MD_NAME
    _write_text(html_path, html)
    _write_text(md_path, markdown)
    return html_path, md_path


def build_report(
    incident_dir: Path,
    *,
    timeline: list[PhaseSpan] | None = None,
    deadlines_h: dict[str, float] | None = None,
    now: datetime | None = None,
    history: Path | None = None,
) -> ReportResult:
    """Write ``<incident_dir>/report/report.html`` and ``report.md``; return their paths and a summary.

    ``timeline``: each phase's real start and end as the DAG ran it (phase ids of runbooks/sop.yaml);
    phases it leaves out are derived from the artifacts' modification times. ``deadlines_h``: phase id
    -> hours after the alert (default: ``deadline_h`` in runbooks/sop.yaml). ``now``: the time open
    phases are judged at (default: the current time; tests pin it). ``history``: the regression
    history whose trends the report shows (default: ``regression/history.jsonl`` beside the incident,
    under the artifact root); absent, the section says there is none.
    """
    incident_dir = Path(incident_dir)
    if not incident_dir.is_dir():
        raise ReportError(f"no incident artifacts at {incident_dir}")
    now = now or datetime.now(UTC)
    sop = _Sop(deadlines_h)
    problems: list[str] = [sop.problem] if sop.problem else []
    reader = _Reader(incident_dir, problems)

    incident = reader.read("incident.json")
    incident_id = as_str(incident.data.get("incident_id")) or incident_dir.name
    alert_started = _parse_ts(incident.data.get("alert_started_at"))
    if incident.ok and alert_started is None:
        problems.append("incident.json has no valid alert_started_at: deadlines cannot be judged")
    # The order of the reads below is the order of the report's list of problems.
    phases, arts = _evidence(reader, sop)
    plots = _Plots(incident_dir, arts)
    metrics_timeline = _metrics_timeline(reader)
    res = _Outcome(reader)
    trends = _trends(incident_dir, history, as_str(incident.data.get("target")) or None, problems)
    rows = timeline_rows(
        incident_dir,
        alert_started,
        phases=sop.phases,
        deadlines_h=sop.deadlines_h,
        timeline=timeline,
        now=now,
    )
    summary = _summary(incident_id, res, rows, problems)
    html_path, md_path = _render(
        incident_dir,
        {
            "incident_id": incident_id,
            "incident": _incident_view(incident, alert_started),
            "generated_at": fmt_ts(now.astimezone(UTC)),
            "headline": res.headline_view(),
            "timeline": _timeline_view(rows),
            "timeline_given": timeline is not None,
            "phases": phases,
            "decisions": res.decisions,
            "actions": res.actions,
            "regression": res.regression,
            "trends": trends,
            "metrics_timeline": metrics_timeline,
            **plots.context(),
            "problems": problems,
            "summary": summary,
        },
    )
    log.info(
        "report of %s: %s, %s (%d plots, %d problems)",
        incident_id,
        html_path,
        md_path,
        plots.count + len(trends["plots"]) + len(metrics_timeline["plots"]),
        len(problems),
    )
    return ReportResult(
        incident_id=mask_pii(incident_id),
        html=html_path,
        markdown=md_path,
        outcome=res.outcome,
        rule=res.rule,
        action=mask_pii(res.headline["action"]),
        time_to_recover_s=res.time_to_recover_s,
        plots=plots.count + len(trends["plots"]) + len(metrics_timeline["plots"]),
        problems=[mask_pii(p) for p in problems],
        summary=mask_pii(summary),
    )
