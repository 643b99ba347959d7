"""Joining a suite run in parts into one summary (``benchmarks/results/scenarios.json``).

The whole suite takes hours on 2 cores, so it may run in parts (``scenario run`` on a few files at a
time, each with its own ``--out``). A figure is only honest when every part ran the same code on the
same scenario files on the same machine, so the merge refuses, naming the part and the fix:
- a part from another commit, or from a checkout with local changes (``-dirty``);
- a scenario whose file has changed since it ran (rescore that part, or run it again);
- a scenario present in two parts (a merge joins parts; it does not pick the better run);
- a part that was interrupted, that ran on another machine, or with the canary watch where another
  part ran without it.
Scenarios of the suite that no part ran are listed in ``not_run``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from harness.scenario.results import SUITE_FILE, ScenarioOutcome, _iso, summarize
from harness.scenario.schema import Scenario, ScenarioError, load_scenario, load_suite
from harness.scenario.scoring import ScenarioObservation, score


class MergeError(RuntimeError):
    """The parts cannot be joined honestly; ``problems`` says which part and why, each with its fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _part_summary(out_dir: Path, problems: list[str]) -> dict[str, Any] | None:
    path = out_dir / SUITE_FILE
    if not out_dir.is_dir():
        problems.append(f"{out_dir}: no such directory (give the --out directory of each `scenario run`)")
        return None
    if not path.is_file():
        problems.append(
            f"{out_dir}: no {SUITE_FILE}: not the --out directory of a `triage24 scenario run`, or one "
            "written before runs kept their summary there; run that part again"
        )
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        problems.append(f"{path}: not a suite summary (a JSON object)")
        return None
    if data.get("interrupted"):
        problems.append(f"{out_dir}: the run was interrupted, its last scenario is incomplete; run it again")
    return data


def _outcomes(out_dir: Path, seen: dict[str, Path], problems: list[str]) -> list[ScenarioOutcome]:
    found: list[ScenarioOutcome] = []
    for path in sorted(out_dir.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "observation" not in data:
            continue
        name = str(data["scenario"])
        if name in seen:
            problems.append(
                f"{path}: scenario {name!r} is also in {seen[name]}; keep one part's result "
                "(a merge joins parts, it does not pick the better run)"
            )
            continue
        seen[name] = path
        source = Path(data["file"])
        ran = Scenario.model_validate(data["definition"])
        if not source.is_file():
            problems.append(f"{path}: its scenario file {source} is gone; run the scenario again")
            continue
        try:
            now = load_scenario(source)
        except ScenarioError as exc:
            problems.append(f"{path}: its scenario file does not load now: {exc.problems[0]}")
            continue
        if now != ran:
            problems.append(
                f"{path}: ran {source} as it was then, and the file has changed since; "
                f"`triage24 scenario rescore {out_dir}` judges it against the file as it is, or run it again"
            )
            continue
        obs = ScenarioObservation.model_validate(data["observation"])
        found.append(ScenarioOutcome(source, ran, obs, score(ran, obs)))
    return found


def _one(values: dict[str, set[str]], what: str, fix: str, problems: list[str]) -> str | None:
    """The single value every part shares, or a problem naming which part has which."""
    distinct = set().union(*values.values()) if values else set()
    if len(distinct) == 1:
        return next(iter(distinct))
    if distinct:
        listing = "; ".join(f"{part}: {', '.join(sorted(v))}" for part, v in values.items())
        problems.append(f"the parts ran on different {what} ({listing}); {fix}")
    return None


def merge_parts(out_dirs: list[Path], *, command: str, suite: list[Path] | None = None) -> dict[str, Any]:
    """One summary of the parts in ``out_dirs`` (in that order), or :class:`MergeError`.
    ``suite``: the scenario files or directories the parts should cover, for ``not_run``."""
    problems: list[str] = []
    seen: dict[str, Path] = {}
    parts: list[dict[str, Any]] = []
    outcomes: list[ScenarioOutcome] = []
    commits: dict[str, set[str]] = {}
    machines: dict[str, set[str]] = {}
    watched: dict[str, set[str]] = {}
    for out_dir in out_dirs:
        summary = _part_summary(out_dir, problems)
        found = _outcomes(out_dir, seen, problems)
        if summary is None:
            continue
        ran_from = {o.observation.commit or "unknown" for o in found}
        commits[str(out_dir)] = ran_from
        machines[str(out_dir)] = {str(summary.get("machine"))}
        watched[str(out_dir)] = {"on" if summary.get("canary_watch") else "off"}
        for ran in sorted(ran_from):
            if ran == "unknown" or ran.endswith("-dirty"):
                problems.append(
                    f"{out_dir}: ran from {'no checkout' if ran == 'unknown' else ran} - a figure must "
                    "come from committed code; commit, then run that part again"
                )
        outcomes.extend(found)
        parts.append(
            {
                "out": str(out_dir),
                **{k: summary.get(k) for k in ("command", "date", "finished", "duration_s", "load_average")},
                "scenarios": [o.scenario.id for o in found],
                "notes": summary.get("notes", []),
                "peak_rss_mib_suite": summary.get("peak_rss_mib_suite"),
            }
        )
    commit = _one(commits, "commits", "run every part on one commit", problems)
    machine = _one(machines, "machines", "run every part on one machine", problems)
    watch = _one(watched, "canary watch settings", "run every part with --canary-watch or none", problems)
    if not outcomes and not problems:
        problems.append("no scenario results (<name>.json) in the parts")
    if problems:
        raise MergeError(problems)
    merged = summarize(outcomes, command=command, started=time.time(), load_start=(0.0, 0.0, 0.0), notes=[])
    merged.update(
        {
            "date": min(str(p["date"]) for p in parts),
            "finished": max(str(p["finished"]) for p in parts),
            "duration_s": round(sum(float(p["duration_s"] or 0) for p in parts), 1),
            "machine": machine,
            "commits": [commit],
            "load_average": {p["out"]: p["load_average"] for p in parts},
            "notes": sorted({n for p in parts for n in p["notes"]}),
            "peak_rss_mib_suite": max((p["peak_rss_mib_suite"] or 0.0) for p in parts),
            "parts": parts,
            "merged": _iso(),
            "interrupted": False,
            "canary_watch": watch == "on",
        }
    )
    if suite is not None:
        covered = {o.scenario.id for o in outcomes}
        merged["not_run"] = sorted(sc.id for _, sc in load_suite(suite) if sc.id not in covered)
    return merged


__all__ = ["MergeError", "merge_parts"]
