"""`triage24 scenario merge`: parts of one suite run join into one summary only when they ran the same
commit, the same scenario files and on the same machine; anything else is refused with the part and
the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.scenario.merge import MergeError, merge_parts
from harness.scenario.results import SUITE_FILE, ScenarioOutcome, write_json
from harness.scenario.schema import load_scenario
from harness.scenario.scoring import score
from tests.harness.scenario.test_scenarios import MINIMAL, observation, run_obs, write

SUITE = {
    "command": "triage24 scenario run x",
    "date": "2026-12-07T10:00:00+00:00",
    "finished": "2026-12-07T10:30:00+00:00",
    "duration_s": 1800.0,
    "machine": "x86_64, 2 cores, 23 GiB, Python 3.11.2",
    "load_average": {"start": [0.5, 0.5, 0.5], "end": [1.5, 1.2, 1.0]},
    "notes": ["ran on a stack the runner started"],
    "peak_rss_mib_suite": 6000.0,
    "interrupted": False,
}


def part(tmp_path: Path, name: str, scenarios: list[Path], commit: str = "abc1234", **suite: Any) -> Path:
    """A part's --out directory as `scenario run` leaves it: one JSON per scenario and its summary."""
    out = tmp_path / name
    out.mkdir()
    for path in scenarios:
        sc = load_scenario(path)
        obs = observation(run_obs(), commit=commit)
        write_json(out / f"{sc.id}.json", ScenarioOutcome(path, sc, obs, score(sc, obs)).as_json())
    write_json(out / SUITE_FILE, {**SUITE, **suite})
    return out


def scenarios(tmp_path: Path, *names: str) -> list[Path]:
    files = tmp_path / "scenarios"
    files.mkdir(exist_ok=True)
    return [write(files, MINIMAL, f"{n}.yaml") for n in names]


def refused(out_dirs: list[Path]) -> list[str]:
    with pytest.raises(MergeError) as info:
        merge_parts(out_dirs, command="triage24 scenario merge")
    return info.value.problems


def test_parts_of_one_commit_join_into_one_summary_with_each_parts_run(tmp_path: Path) -> None:
    a, b, c = scenarios(tmp_path, "a", "b", "c")
    one = part(tmp_path, "p1", [a, b])
    two = part(
        tmp_path, "p2", [c], duration_s=600.0, finished="2026-12-07T12:00:00+00:00", peak_rss_mib_suite=6400
    )
    merged = merge_parts([one, two], command="triage24 scenario merge p1 p2", suite=[a.parent])
    assert merged["scenarios"] == 3 and [r["scenario"] for r in merged["results"]] == ["a", "b", "c"]
    assert merged["commits"] == ["abc1234"] and merged["machine"] == SUITE["machine"]
    assert merged["duration_s"] == 2400.0 and merged["peak_rss_mib_suite"] == 6400
    assert (merged["date"], merged["finished"]) == ("2026-12-07T10:00:00+00:00", "2026-12-07T12:00:00+00:00")
    assert [p["scenarios"] for p in merged["parts"]] == [["a", "b"], ["c"]]
    assert merged["parts"][0]["command"] == "triage24 scenario run x"
    assert merged["not_run"] == [] and merged["command"] == "triage24 scenario merge p1 p2"


def test_the_scenarios_no_part_ran_are_listed(tmp_path: Path) -> None:
    a, _b = scenarios(tmp_path, "a", "b")
    merged = merge_parts([part(tmp_path, "p1", [a])], command="m", suite=[a.parent])
    assert merged["not_run"] == ["b"]


def test_parts_from_different_commits_or_a_dirty_checkout_are_refused(tmp_path: Path) -> None:
    a, b = scenarios(tmp_path, "a", "b")
    one, two = part(tmp_path, "p1", [a], commit="abc1234"), part(tmp_path, "p2", [b], commit="def5678")
    (msg,) = refused([one, two])
    assert "different commits" in msg and f"{one}: abc1234" in msg and f"{two}: def5678" in msg
    dirty = part(tmp_path, "p3", [a], commit="abc1234-dirty")
    assert any(f"{dirty}: ran from abc1234-dirty" in m and "commit, then run" in m for m in refused([dirty]))


def test_a_scenario_whose_file_changed_since_it_ran_is_refused_with_the_rescore_fix(tmp_path: Path) -> None:
    (a,) = scenarios(tmp_path, "a")
    one = part(tmp_path, "p1", [a])
    a.write_text(a.read_text().replace("magnitude: 0.5", "magnitude: 0.6"))
    (msg,) = refused([one])
    assert "has changed since" in msg and f"triage24 scenario rescore {one}" in msg


def test_a_scenario_in_two_parts_an_interrupted_part_and_another_machine_are_refused(tmp_path: Path) -> None:
    (a,) = scenarios(tmp_path, "a")
    one, two = (
        part(tmp_path, "p1", [a]),
        part(tmp_path, "p2", [a], interrupted=True, machine="arm64, 8 cores"),
    )
    found = refused([one, two])
    assert any("scenario 'a' is also in" in m and "does not pick" in m for m in found)
    assert any(f"{two}: the run was interrupted" in m for m in found)
    assert any("different machines" in m for m in found)


def test_parts_with_and_without_the_canary_watch_are_refused_and_a_watched_suite_says_so(
    tmp_path: Path,
) -> None:
    a, b = scenarios(tmp_path, "a", "b")
    watched, plain = part(tmp_path, "p1", [a], canary_watch=True), part(tmp_path, "p2", [b])
    (msg,) = refused([watched, plain])
    assert "different canary watch settings" in msg and f"{watched}: on" in msg and f"{plain}: off" in msg
    both = merge_parts([watched, part(tmp_path, "p3", [b], canary_watch=True)], command="m")
    assert both["canary_watch"] is True


def test_a_directory_without_the_runs_summary_is_refused(tmp_path: Path) -> None:
    (a,) = scenarios(tmp_path, "a")
    one = part(tmp_path, "p1", [a])
    (one / SUITE_FILE).unlink()
    (msg,) = refused([one])
    assert f"{one}: no {SUITE_FILE}" in msg and "run that part again" in msg
    assert any("no such directory" in m for m in refused([tmp_path / "missing"]))


def test_the_cli_writes_the_summary_or_names_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    a, b = scenarios(tmp_path, "a", "b")
    one, two = part(tmp_path, "p1", [a]), part(tmp_path, "p2", [b])
    out = tmp_path / "scenarios.json"
    assert main(["scenario", "merge", str(one), str(two), "--summary", str(out)]) in (0, 1)
    assert json.loads(out.read_text())["scenarios"] == 2
    other = part(tmp_path, "p3", [b], commit="def5678")
    assert main(["scenario", "merge", str(one), str(other), "--summary", str(tmp_path / "x.json")]) == 2
    assert "different commits" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
