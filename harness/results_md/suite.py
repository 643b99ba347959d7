"""Spec of the scenario suite's summary (``scenarios.json``, written by ``triage24 scenario run`` or
``merge``): its parts with their commits, the suite's figures against the project's goals, and one
row per scenario."""

from __future__ import annotations

from typing import Any

from harness.results_md.model import Data, Figures, Section, code, fig, load_line, md_table, num, pct, text


def _parts(d: Data) -> list[dict[str, Any]]:
    for key in ("parts", "runs"):
        parts = d.get(key) if d.has(key) else None
        if isinstance(parts, list):
            return [p for p in parts if isinstance(p, dict)]
    return []


def _loads(value: Any) -> str:
    return " / ".join(f"{x:g}" for x in value) if isinstance(value, list) else "–"


def _parts_table(d: Data) -> str:
    parts = _parts(d)
    if not parts:
        return ""
    commits = d.raw.get("commits")
    only = commits[0] if isinstance(commits, list) and len(commits) == 1 else None
    rows = []
    for i, p in enumerate(parts):
        la = p.get("load_average") or {}
        duration = p.get("duration_s")
        rows.append(
            [
                str(p.get("part") or p.get("out") or i + 1),
                code(p.get("commit") or only or "not recorded"),
                code(p.get("command")),
                f"{p.get('date', '–')} → {p.get('finished', '–')}",
                f"{duration / 60:.0f}" if isinstance(duration, int | float) else "–",
                f"{_loads(la.get('start'))} → {_loads(la.get('end'))}",
                ", ".join(p.get("scenarios") or []) or "–",
                ", ".join(p.get("replaced_later") or []) or "–",
                num(1)(p.get("peak_rss_mib_suite")),
            ]
        )
    headers = [
        "part",
        "commit",
        "command",
        "started → finished",
        "minutes",
        "load (1/5/15 min): start → end",
        "results kept",
        "run again in a later part",
        "peak RSS (MiB)",
    ]
    notes = sorted(
        {str(n) for p in parts for n in p.get("notes") or []} | {str(n) for n in d.raw.get("notes") or []}
    )
    out = (
        f"The suite ran in {len(parts)} part(s); a scenario a later part ran again is replaced by that "
        "run:\n\n" + md_table(headers, rows, right=[4, 8])
    )
    if notes:
        d.used.add("notes")
        out += "\n\nNotes the parts recorded:\n\n" + "\n".join(f"- {n}" for n in notes)
    return out


def _definitions(d: Data) -> str:
    defs = d.get("definitions")
    if not isinstance(defs, dict):
        return ""
    return "Definitions, as the file records them:\n\n" + "\n".join(f"- `{k}`: {v}" for k, v in defs.items())


def _failed(r: dict[str, Any]) -> str:
    out = [
        f"{f.get('expectation')} (expected {text(f.get('expected'))}, got {text(f.get('observed'))})"
        for f in r.get("failed") or []
    ]
    out += [f"error: {e}" for e in r.get("errors") or []]
    return "; ".join(out) or "–"


def _scenarios(d: Data) -> str:
    results = d.get("results")
    if not isinstance(results, list):
        return ""
    rows = []
    for r in results:
        t = r.get("timings") or {}
        rows.append(
            [
                code(r.get("scenario")),
                code(r.get("commit") or "not recorded"),
                text(r.get("status")),
                text(r.get("decision")),
                text(r.get("rollback")),
                *(
                    num(1)(t.get(k))
                    for k in ("detection_s", "first_evidence_s", "rollback_applied_s", "total_s")
                ),
                str(len(r.get("late_runs") or [])),
                _failed(r),
            ]
        )
    headers = [
        "scenario",
        "commit",
        "status",
        "decision",
        "rollback",
        "detection s",
        "evidence s",
        "rollback s",
        "total s",
        "late runs",
        "failed expectations",
    ]
    return (
        "Per scenario (detection: first fault → the alert's `startsAt`; the other timings from the "
        "alert's `startsAt`, a manual investigation's from its trigger):\n\n"
        + md_table(headers, rows, right=range(5, 10))
    )


def _load(d: Data) -> str:
    if not _parts(d):
        return load_line(d)
    if "load_average" in d.raw:
        d.used.add("load_average")
    return "per part, in the parts table"


SCENARIOS = Section(
    "scenarios",
    "Scenario suite: real faults end to end, scored and timed",
    about=(
        "Each scenario (`benchmarks/scenarios/*.yaml`) injects real faults through the testbed's admin API "
        "on a stack the runner started in a temporary home, drives its own traffic through the gateway, "
        "waits for the alert-driven (or manually opened) `incident_response` run and scores every "
        "expectation against what a correct pipeline concludes. The runner, the format and what the "
        "suite found: `benchmarks/README.md`.",
    ),
    load=_load,
    blocks=(
        _parts_table,
        Figures(
            (
                fig("scenarios in the summary", "scenarios", fmt=num(0), bold=True),
                fig("passed", "passed", fmt=num(0)),
                fig("failed", "failed", fmt=num(0)),
                fig("runner errors", "errors", fmt=num(0)),
                fig("suite scenarios no part ran (`not_run`)", "not_run", fmt=text),
                fig("accuracy (every expectation met)", "accuracy", fmt=pct(0), goal=0.95, op="≥", bold=True),
                fig("expectations met", "expectation_accuracy", fmt=pct(0)),
                fig(
                    "rollbacks in scenarios that expect none",
                    "healthy_rollbacks",
                    fmt=num(0),
                    goal=0,
                    op="=",
                    bold=True,
                ),
                fig("… in which scenarios", "healthy_rollback_scenarios", fmt=text),
                fig("median fault → alert fired, detection (s)", "detection_median_s", fmt=num(1)),
                fig(
                    "median alert → first evidence (s)",
                    "first_evidence_median_s",
                    fmt=num(1),
                    goal=5,
                    bold=True,
                ),
                fig(
                    "median alert → rollback applied (s)",
                    "rollback_applied_median_s",
                    fmt=num(1),
                    goal=30,
                    bold=True,
                ),
                fig(
                    "median alert → incident finished, report included (s)",
                    "incident_total_median_s",
                    fmt=num(1),
                    goal=180,
                    bold=True,
                ),
                fig(
                    "peak summed RSS of the stack + testbed (MiB)",
                    "peak_rss_mib",
                    fmt=num(1),
                    goal=4096,
                    bold=True,
                ),
                fig("peak summed PSS (MiB)", "peak_pss_mib", fmt=num(1)),
            ),
        ),
        _scenarios,
        _definitions,
    ),
)

SPECS = (SCENARIOS,)
__all__ = ["SPECS"]
