"""The regression history read as frames: malformed lines skipped and named, trends per channel and case."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from diagnostics.incident.results import Status
from diagnostics.runbooks import load_runbooks
from diagnostics.verified_delivery.regression.history import (
    case_trends,
    channel_of_case,
    channel_trends,
    read_history,
)
from diagnostics.verified_delivery.regression.suite import (
    CaseResult,
    RegressionResult,
    append_history,
    build_cases,
)

ALL_OK = {"audio": "ok", "image": "ok", "router": "ok", "text": "ok"}


def run(at: str, version: str, channels: dict[str, str], failing: list[str], **extra: object) -> str:
    status = "failed" if "failed" in channels.values() else "insufficient_evidence" if not channels else "ok"
    line = {
        "at": at,
        "target": "testbed",
        "version": version,
        "trigger": "schedule",
        "status": status,
        "channels": channels,
        "failing": failing,
        "seconds": 9.5,
        **extra,
    }
    return json.dumps(line, sort_keys=True)


# Lines as suite.append_history writes them, with three damaged ones and another target's run.
LINES = [
    run("2026-12-07T10:00:00+00:00", "canary", ALL_OK, []),  # 1
    run("2026-12-07T10:00:00+00:00", "stable", ALL_OK, []),  # 2
    run(  # 3
        "2026-12-07T11:00:00+00:00",
        "canary",
        {**ALL_OK, "router": "failed"},
        ["router_image_text:img-000", "router_image_text:img-001"],
    ),
    '{"at": "2026-12-07T11:30:00+00:00", "target": "testb',  # 4: cut short by a crash
    run(  # 5: 12:00 UTC, written with another offset
        "2026-12-07T14:00:00+02:00",
        "canary",
        {**ALL_OK, "router": "failed", "image": "degraded"},
        ["router_image_text:img-000"],
    ),
    run("yesterday", "canary", ALL_OK, []),  # 6
    json.dumps(
        {**json.loads(run("2026-12-07T12:30:00+00:00", "canary", ALL_OK, [])), "target": "other"}
    ),  # 7
    run("2026-12-07T13:00:00+00:00", "canary", {}, []),  # 8: still loading, not judged
    run(  # 9
        "2026-12-07T14:00:00+00:00",
        "canary",
        {**ALL_OK, "router": "failed"},
        ["router_image_text:img-000", "image_embedding:img-003", "router_audio:clip-1"],
    ),
    "[1, 2]",  # 10
    run("2026-12-07T14:00:00+00:00", "stable", ALL_OK, []),  # 11
    "",
]


@pytest.fixture
def history(tmp_path: Path) -> Path:
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


def test_malformed_lines_are_skipped_counted_and_named(
    history: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="triage24.regression"):
        h = read_history(history, target="testbed")
    assert h.runs == 7  # lines 1, 2, 3, 5, 8, 9, 11
    assert [s.split(":")[0] for s in h.skipped] == ["line 4", "line 6", "line 10"]
    assert h.skipped[0].startswith("line 4: not JSON (Unterminated string")
    assert h.skipped[1].startswith("line 6: at: Input should be a valid datetime")
    assert h.skipped[2] == "line 10: a JSON list, not an object"
    assert "3 malformed line(s) skipped: line 4" in caplog.text


def test_one_row_per_run_and_channel_and_per_failing_case(history: Path) -> None:
    h = read_history(history, target="testbed")
    assert len(h.channels) == 6 * 4  # six runs with channel verdicts, four channels each
    router = h.channels[(h.channels["version"] == "canary") & (h.channels["channel"] == "router")]
    assert list(router["line"]) == [1, 3, 5, 9]
    assert list(router["failing"]) == [0, 2, 1, 2]
    assert str(router["at"].iloc[2]) == "2026-12-07 12:00:00+00:00"  # the +02:00 line, in UTC
    assert list(h.cases["channel"]) == ["router", "router", "router", "router", "image", "router"]
    assert set(read_history(history).channels["target"]) == {"testbed", "other"}


def test_channel_trends_pass_rate_and_failing_cases_against_previous_and_median(history: Path) -> None:
    trends = {(t.version, t.channel): t for t in channel_trends(read_history(history, target="testbed"))}
    router = trends[("canary", "router")]
    assert (router.runs, router.judged, router.pass_rate) == (4, 4, 0.25)
    assert (router.latest_status, router.previous_status) == (Status.FAILED, Status.FAILED)
    assert (router.failing_latest, router.failing_previous, router.failing_median) == (2, 1, 1.5)
    assert (router.change_vs_previous, router.change_vs_median) == (1, 0.5)
    assert router.latest_at == datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    image = trends[("canary", "image")]
    assert (image.pass_rate, image.previous_status, image.failing_latest, image.change_vs_median) == (
        1.0,  # degraded passes
        Status.DEGRADED,
        1,
        1.0,
    )
    stable = trends[("stable", "text")]
    assert (stable.runs, stable.pass_rate, stable.failing_median, stable.change_vs_previous) == (
        2,
        1.0,
        0.0,
        0,
    )
    assert len(trends) == 8


def test_trends_look_at_the_last_runs_only(history: Path) -> None:
    h = read_history(history, target="testbed")
    router = next(t for t in channel_trends(h, last=3) if (t.version, t.channel) == ("canary", "router"))
    assert (router.runs, router.pass_rate, router.failing_median, router.change_vs_median) == (
        3,
        0.0,
        2.0,
        0.0,
    )
    (only,) = channel_trends(h, last=1)[:1]
    assert only.previous_status is None and only.change_vs_previous is None


def test_case_trends_count_failures_in_the_judged_runs_and_the_streak(history: Path) -> None:
    trends = case_trends(read_history(history, target="testbed"))
    assert [(t.case, t.channel, t.runs, t.failed, t.failing_latest, t.streak) for t in trends] == [
        ("router_image_text:img-000", "router", 4, 3, True, 3),
        ("image_embedding:img-003", "image", 4, 1, True, 1),
        ("router_audio:clip-1", "router", 4, 1, True, 1),
        ("router_image_text:img-001", "router", 4, 1, False, 0),
    ]
    assert trends[0].fail_rate == 0.75 and {t.version for t in trends} == {"canary"}
    assert trends[3].last_failed_at == datetime(2026, 12, 7, 11, 0, tzinfo=UTC)
    recent = case_trends(read_history(history, target="testbed"), last=2)  # runs 5 and 9
    assert [(t.case, t.failed, t.streak) for t in recent][:1] == [("router_image_text:img-000", 2, 2)]
    assert "router_image_text:img-001" not in {t.case for t in recent}


def test_no_file_is_an_empty_history_and_an_unreadable_one_is_named(tmp_path: Path) -> None:
    h = read_history(tmp_path / "missing.jsonl")
    assert (h.runs, h.skipped, len(h.channels), channel_trends(h), case_trends(h)) == (0, [], 0, [], [])
    (tmp_path / "dir.jsonl").mkdir()
    assert read_history(tmp_path / "dir.jsonl").skipped[0].startswith("dir.jsonl: cannot be read")
    bad = tmp_path / "bytes.jsonl"
    bad.write_bytes(b'\xff\xfe{"at": 1}\n' + LINES[0].encode() + b"\n")
    h = read_history(bad)
    assert (h.runs, h.skipped) == (1, ["line 1: not UTF-8 (invalid start byte)"])


def test_what_append_history_writes_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    failing = CaseResult(
        case="transcription:a-1", channel="audio", version="canary", status=Status.FAILED, metric="wer"
    )
    result = RegressionResult(
        status=Status.FAILED,
        summary="1 failing",
        target="testbed",
        version="canary",
        trigger="manual",
        cases=[failing],
        channels={"audio": Status.FAILED, "text": Status.OK},
        seconds=3.25,
    )
    append_history(path, result)
    h = read_history(path)
    assert h.skipped == []
    assert sorted(zip(h.channels["channel"], h.channels["failing"], strict=True)) == [
        ("audio", 1),
        ("text", 0),
    ]
    assert list(h.cases["case"]) == ["transcription:a-1"]


def test_every_suite_case_id_names_its_channel() -> None:
    from testbed.golden import load_golden

    cases = build_cases(load_golden(), load_runbooks().regression)
    assert [channel_of_case(c.id) for c in cases] == [c.channel for c in cases]
    assert channel_of_case("new_kind:x") == "unknown"
