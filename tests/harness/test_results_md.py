"""``benchmarks/RESULTS.md`` is generated from ``benchmarks/results/*.json`` (issue 22 §4): a spec's
table renders exactly, a file without a spec gets its scalars, a file stitched from several commits
says so, the specs' own text holds no figure, and the committed file is what the JSON gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.results_md.model import (
    Data,
    Figures,
    Section,
    commit_line,
    fig,
    num,
    pct,
    prose,
    spec_texts,
    static_digits,
)
from harness.results_md.render import SPECS, check, render, render_section

REPO = Path(__file__).resolve().parents[2]

DEMO = Section(
    "demo",
    "Demo benchmark",
    about=("A synthetic file: {count} requests.",),
    blocks=(
        Figures(
            (
                fig("p50 (s)", "p50_s", fmt=num(2), range="p50_range_s", goal="goal/p50_s", bold=True),
                fig("errors", "error_rate", fmt=pct(1), goal=0.01),
                fig("lost", "lost", fmt=num(0), goal="goal/lost", op="="),
            )
        ),
        prose("Slowest: {p50_range_s/1:n1} s."),
    ),
)

DEMO_JSON: dict[str, Any] = {
    "benchmark": "demo",
    "command": "benchmarks/demo.py --runs 3",
    "date": "2026-12-01T10:00:00+00:00",
    "machine": "x86_64, 2 cores",
    "commit": "abc1234",
    "load_average_1m": {"before": 0.5, "after": 1.25},
    "count": 30,
    "p50_s": 1.234,
    "p50_range_s": [1.0, 2.5],
    "error_rate": 0.02,
    "lost": 0,
    "goal": {"p50_s": 2.0, "lost": 0},
    "raw_samples": [1.0, 1.2, 2.5],
}


def _write(folder: Path, name: str, data: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(data), encoding="utf-8")


def test_a_spec_renders_its_section_exactly() -> None:
    out = render_section("demo", DEMO_JSON, DEMO, {})
    assert out == (
        "## Demo benchmark (`results/demo.json`)\n"
        "\n"
        "- **command**: `benchmarks/demo.py --runs 3`\n"
        "- **commit**: `abc1234`\n"
        "- **machine**: x86_64, 2 cores\n"
        "- **date**: 2026-12-01T10:00:00+00:00\n"
        "- **load**: 1-min load average before 0.5, after 1.25\n"
        "\n"
        "A synthetic file: 30 requests.\n"
        "\n"
        "| figure | value | goal |\n"
        "|---|---:|---|\n"
        "| p50 (s) | **1.23 (1.00 – 2.50)** | ≤ 2.00 — met |\n"
        "| errors | 2.0 % | ≤ 1.0 % — **not met** |\n"
        "| lost | 0 | = 0 — met |\n"
        "\n"
        "A goal the file does not record is the project's, as the spec in `harness/results_md/` states it.\n"
        "\n"
        "Slowest: 2.5 s.\n"
        "\n"
        "Also in the file, not shown here: `raw_samples` (a list of 3)."
    )


def test_a_key_the_spec_reads_but_the_file_lacks_is_shown_and_named() -> None:
    data = {k: v for k, v in DEMO_JSON.items() if k not in ("lost", "count")}
    out = render_section("demo", data, DEMO, {})
    assert "A synthetic file: (not in the file) requests." in out
    assert "| lost | – | = 0 |" in out
    assert "Read by this section but absent from the file: `count`, `lost`." in out


def test_a_file_without_a_spec_gets_its_top_level_figures(tmp_path: Path) -> None:
    _write(
        tmp_path, "mystery", {"date": "2026-12-02", "speed": 12.5, "ok": True, "name": "x", "runs": [1, 2]}
    )
    out = render(tmp_path, specs=())
    section = out[out.index("## mystery") :]
    assert "- **command**: not recorded in the file" in section
    assert "- **commit**: not recorded in the file" in section
    assert "- **load**: not recorded in the file" in section
    assert "| key | value |\n|---|---:|\n| `speed` | 12.5 |\n| `ok` | yes |\n| `name` | x |" in section
    assert "Also in the file, not shown here: `runs` (a list of 2)." in section


def test_an_unreadable_file_is_said_not_dropped(tmp_path: Path) -> None:
    tmp_path.joinpath("broken.json").write_text("{not json", encoding="utf-8")
    out = render(tmp_path, specs=())
    assert "## `results/broken.json`\n\ncould not be read:" in out


def test_several_commits_are_shown_plainly() -> None:
    stitched = {
        "commits": ["aaa1111", "bbb2222"],
        "runs": [{"commit": "aaa1111"}, {"commit": "bbb2222"}],
        "results": [{"commit": "aaa1111"}, {"commit": "aaa1111"}, {"commit": "bbb2222"}],
    }
    line = commit_line(stitched)
    assert line.startswith(
        "**commits: `aaa1111`, `bbb2222` — figures stitched from runs on different commits** "
        "(results: 2 from `aaa1111`, 1 from `bbb2222`)"
    )
    assert "rerun every part on one commit and join them with `triage24 scenario merge`" in line
    assert commit_line({"commits": ["ccc3333"]}) == "**commit**: `ccc3333`"
    assert commit_line({}) == "**commit**: not recorded in the file"


def test_the_index_marks_a_stitched_file(tmp_path: Path) -> None:
    _write(tmp_path, "demo", DEMO_JSON)
    _write(tmp_path, "suite", {"date": "2026-12-03", "results": [{"commit": "a1"}, {"commit": "b2"}]})
    out = render(tmp_path, specs=(DEMO,))
    assert "| `demo.json` | 2026-12-01T10:00:00+00:00 | `abc1234` | x86_64, 2 cores |" in out
    assert "| `suite.json` | 2026-12-03 | **2 commits**: `a1`, `b2` | – |" in out
    assert out.index("## Demo benchmark") < out.index("## suite")  # specs first, then the rest


def test_the_real_scenarios_file_shows_its_commits() -> None:
    raw = json.loads((REPO / "benchmarks/results/scenarios.json").read_text(encoding="utf-8"))
    if len({r.get("commit") for r in raw["results"]}) < 2:
        pytest.skip("scenarios.json is one run of one commit now")
    assert "figures stitched from runs on different commits" in commit_line(raw)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_a_specs_own_text_holds_no_figure(spec: Section) -> None:
    found = {t: static_digits(t) for t in (*spec.about, *spec_texts(spec.blocks)) if static_digits(t)}
    assert found == {}, "a figure in a spec's text: read it from the JSON with a {field}"


def test_static_digits_finds_a_typed_figure() -> None:
    assert static_digits("took ~130 MiB each") == ["~130"]
    assert static_digits("took {rss:n0} MiB, `--runs 3`, p99 of Triage24 in phase 2") == []


def test_the_committed_results_md_is_what_the_json_gives() -> None:
    drift = check(REPO / "benchmarks/RESULTS.md", REPO / "benchmarks/results")
    assert drift is None, drift.summary(Path("benchmarks/RESULTS.md")) if drift else ""


def test_every_results_file_has_a_spec() -> None:
    names = {n for s in SPECS for n in (s.name, *s.also)}
    files = {p.stem for p in (REPO / "benchmarks/results").glob("*.json")}
    assert files - names == set(), "a results file falls back to the generic section: give it a spec"


def test_the_command_writes_then_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results, out = tmp_path / "results", tmp_path / "RESULTS.md"
    _write(results, "mystery", {"speed": 1.5})
    args = ["results", "render", "--results", str(results), "--out", str(out)]
    assert main([*args, "--check"]) == 1  # no file yet
    assert main(args) == 0
    assert main([*args, "--check"]) == 0
    _write(results, "mystery", {"speed": 2.5})
    assert main([*args, "--check"]) == 1
    err = capsys.readouterr().err
    assert "differs from what the JSON gives: 2 line(s) changed" in err
    assert "-| `speed` | 1.5 |" in err and "+| `speed` | 2.5 |" in err
    assert main(["results", "render", "--results", str(tmp_path / "nowhere"), "--out", str(out)]) == 2


def test_data_paths_pick_list_elements_by_name() -> None:
    d = Data("x", {"results": [{"scenario": "a", "t": 1}, {"scenario": "b", "t": 2}], "l": [5, 6]})
    assert d.get("results/b/t") == 2
    assert d.get("l/1") == 6
    assert d.fill("{results/a/t:n1} and {l/0}") == "1.0 and 5"


def test_the_readmes_suite_figures_are_scenarios_json() -> None:
    """The README quotes the suite's headline figures, citing `benchmarks/results/scenarios.json`:
    they must be that file's (as `RESULTS.md` formats them)."""
    raw = json.loads((REPO / "benchmarks/results/scenarios.json").read_text(encoding="utf-8"))
    parts = raw.get("parts") or raw.get("runs") or []
    commits = {r.get("commit") for r in raw["results"]}
    quoted = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    assert "From `benchmarks/results/scenarios.json`: " in quoted
    not_run = raw.get("not_run") or []
    if len(commits) > 1:
        assert f"all {raw['scenarios']} run, in {len(parts)} parts on {len(commits)} commits" in quoted
    elif not_run:  # a suite still running in parts on one commit says how far it got
        (commit,) = commits
        assert f"(`{commit}`), {raw['scenarios']} of the suite's {raw['scenarios'] + len(not_run)} " in quoted
        assert f"in {len(parts)} parts" in quoted and f"The {len(not_run)} not run" in quoted
    else:
        assert f"all {raw['scenarios']} run" in quoted
    assert f"{raw['passed']} pass, {raw['healthy_rollbacks']} healthy rollbacks" in quoted
    medians = (
        f"medians alert → first evidence {raw['first_evidence_median_s']:.1f} s, → rollback "
        f"{raw['rollback_applied_median_s']:.1f} s, whole incident {raw['incident_total_median_s']:.1f} s"
    )
    assert medians in quoted


def test_the_live_canary_watch_section_shows_both_medians_each_scenario_and_what_is_not_measured() -> None:
    from harness.results_md.canary import CANARY_WATCH_LIVE

    watch = {"outcome": "rejected", "channel": "text", "test": "errors_5xx", "e_value": 3100.0}
    data = {
        "benchmark": "canary_watch",
        "command": "benchmarks/canary_watch_live.py",
        "commit": "abc1234",
        "fault_to_rollback_median_s": 41.3,
        "baseline_fault_to_rollback_median_s": 88.0,
        "healthy_rollbacks": 0,
        "silent_to_incident_median_s": None,
        "aa_false_rollback_rate": 0.0,
        "requests_to_detect_2x_median": 1989.5,
        "simulation": "benchmarks/results/canary_watch_sim.json",
        "goal": {
            "fault_to_rollback_median_s": 30,
            "silent_to_incident_median_s": 300,
            "healthy_rollbacks": 0,
        },
        "scenarios": {
            "error_burst_canary": {
                "baseline": {"fault_to_rollback_s": 84.0, "rollback": True, "status": "pass"},
                "watch": {
                    "fault_to_rollback_s": 41.3,
                    "rollback": True,
                    "status": "fail",
                    "opened_by": ["CanaryWatchRejected"],
                    "watch": watch,
                },
            },
            "healthy_control": {
                "watch": {"rollback": False, "status": "pass", "watch": {"outcome": "stopped"}}
            },
        },
    }
    out = render_section("canary_watch", data, CANARY_WATCH_LIVE, {})
    assert "| **41.3** | ≤ 30.0 — **not met** |" in out
    assert "| the same with today's rules, same run (s) | 88.0 |" in out
    assert "| silent fault → incident, median (s) | not measured |" in out
    assert "1,989.5" in out
    verdict = "rejected: text/errors_5xx, e = 3,100"
    assert f"| `error_burst_canary` | 84.0 s | 41.3 s | {verdict} | CanaryWatchRejected | fail |" in out
    assert "| `healthy_control` | not run | no rollback | stopped | – | pass |" in out
