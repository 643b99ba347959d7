"""The scenario suite's results: one JSON file per scenario, the suite's summary, and rescoring them."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from diagnostics.config import Settings
from harness.scenario.schema import Scenario, load_scenario
from harness.scenario.scoring import ScenarioObservation, ScenarioScore, score, suite_figures

# Each run's --out directory keeps the run's own summary too: `scenario merge` joins parts from it.
SUITE_FILE = "_suite.json"

# The summary keeps these from the run it rescores: they describe the run, not the judgement.
_KEPT_ON_RESCORE = (
    "command",
    "date",
    "finished",
    "duration_s",
    "machine",
    "load_average",
    "notes",
    "peak_rss_mib_suite",
    "interrupted",
)


def _quiet(_: str) -> None:
    return None


@dataclass
class ScenarioOutcome:
    file: Path
    scenario: Scenario
    observation: ScenarioObservation
    score: ScenarioScore

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.id,
            "file": str(self.file),
            "status": self.score.status,
            "description": self.scenario.description,
            "tags": self.scenario.tags,
            "failed": [e.name for e in self.score.failed],
            "timings": self.score.timings,
            "expectations": [e.model_dump(mode="json") for e in self.score.expectations],
            "observation": self.observation.model_dump(mode="json"),
            "definition": self.scenario.model_dump(mode="json"),
        }


@dataclass
class SuiteResult:
    outcomes: list[ScenarioOutcome]
    summary: dict[str, Any]
    interrupted: bool = False


def checkout_commit(repo: Path) -> str | None:
    """The short commit of the checkout the runner runs from (``-dirty`` with local changes), or None."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def machine() -> str:
    return (
        f"{platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )


def _iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), UTC).isoformat(timespec="seconds")


def summarize(
    outcomes: list[ScenarioOutcome],
    *,
    command: str,
    started: float,
    load_start: tuple[float, float, float],
    notes: list[str],
) -> dict[str, Any]:
    figures = suite_figures([(o.scenario, o.observation, o.score) for o in outcomes])
    return {
        "benchmark": "scenarios",
        "command": command,
        "date": _iso(started),
        "finished": _iso(),
        "duration_s": round(time.time() - started, 1),
        "machine": machine(),
        "load_average": {
            "start": [round(x, 2) for x in load_start],
            "end": [round(x, 2) for x in os.getloadavg()],
        },
        "notes": notes,
        "commits": sorted({o.observation.commit for o in outcomes if o.observation.commit}),
        **figures,
        "definitions": {
            "accuracy": "share of scenarios whose every expectation was met",
            "healthy_rollbacks": "rollbacks applied in scenarios that expect none",
            "timings": "seconds from the alert's startsAt (a manual investigation: its trigger) to each step "
            "of the scenario's primary run; detection_s from the first fault to the alert's startsAt, "
            "fault_to_rollback_s from the first fault to the canary's weight set to 0",
            "peak_rss_mib": "highest sum of resident memory of every stack process (Airflow, Prometheus, "
            "Alertmanager, testbed) plus the scenario's traffic generator, sampled every 3 s",
            "peak_pss_mib": "the same processes' summed proportional set size (shared pages counted once)",
        },
        "results": [_summary_row(o) for o in outcomes],
    }


def _watch_row(o: ScenarioOutcome) -> dict[str, Any]:
    """The canary watch's verdict, where the runner ran one (``--canary-watch``)."""
    w = o.observation.canary_watch
    if w is None:
        return {}
    keep = ("run_id", "outcome", "channel", "test", "evidence", "e_value", "threshold", "looks")
    return {"canary_watch": {k: getattr(w, k) for k in keep}}


def _summary_row(o: ScenarioOutcome) -> dict[str, Any]:
    """One scenario's line in the summary."""
    primary = o.observation.primary_run()
    return {
        "scenario": o.scenario.id,
        "file": str(o.file),
        "status": o.score.status,
        "commit": o.observation.commit,
        "primary_run": o.observation.primary,
        "runs": len(o.observation.runs),
        "late_runs": o.observation.late_runs,
        "decision": primary.decision if primary is not None else None,
        "rollback": any(r.rollback_outcome == "applied" for r in o.observation.runs),
        "failed": [
            {
                "expectation": e.name,
                "expected": e.expected,
                "observed": e.observed,
                "detail": e.detail,
            }
            for e in o.score.failed
        ],
        "errors": o.observation.errors,
        "timings": o.score.timings,
        **_watch_row(o),
        "peak_rss_mib": o.observation.peak_rss_mib,
        "peak_pss_mib": o.observation.peak_pss_mib,
    }


def write_json(path: Path, data: Any) -> None:
    """``data`` as JSON at ``path``, replaced whole (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def rescore(out_dir: Path, summary_path: Path | None, say: Callable[[str], None] = _quiet) -> dict[str, Any]:
    """Score the observations stored in ``out_dir`` again, against the scenario files as they are now
    (the stored definition where a file is gone): the runs are not repeated, only judged. The summary
    keeps the run's command, date, machine, load and memory, and says when it was rescored."""
    outcomes: list[ScenarioOutcome] = []
    for path in sorted(out_dir.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "observation" not in data:
            continue
        source = Path(data["file"])
        sc = load_scenario(source) if source.is_file() else Scenario.model_validate(data["definition"])
        obs = ScenarioObservation.model_validate(data["observation"])
        outcome = ScenarioOutcome(source, sc, obs, score(sc, obs))
        write_json(path, outcome.as_json())
        outcomes.append(outcome)
        say(f"{sc.id}: {outcome.score.status}")
    previous: dict[str, Any] = {}
    if summary_path is not None and summary_path.is_file():
        previous = json.loads(summary_path.read_text(encoding="utf-8"))
    order = {name: i for i, name in enumerate(r["scenario"] for r in previous.get("results", []))}
    outcomes.sort(key=lambda o: order.get(o.scenario.id, len(order)))
    summary = summarize(
        outcomes, command=previous.get("command", ""), started=time.time(), load_start=(0, 0, 0), notes=[]
    )
    for key in _KEPT_ON_RESCORE:
        if key in previous:
            summary[key] = previous[key]
    summary["rescored"] = _iso()
    if summary_path is not None:
        write_json(summary_path, summary)
    return summary


def default_out_dir(settings: Settings) -> Path:
    return settings.home / "scenarios" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


__all__ = [
    "SUITE_FILE",
    "ScenarioOutcome",
    "SuiteResult",
    "checkout_commit",
    "default_out_dir",
    "machine",
    "rescore",
    "summarize",
    "write_json",
]
