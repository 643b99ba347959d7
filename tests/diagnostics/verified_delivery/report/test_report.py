"""The report of two real incidents: what it says (decision, evidence numbers, time to recover, the
timeline against its deadlines, the regression diff), its plots, and that it is self-contained."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from diagnostics.verified_delivery.report import PhaseSpan, ReportResult, build_report
from tests.diagnostics.verified_delivery.report.conftest import (
    HEALTHY,
    HEALTHY_ALERT,
    HEALTHY_TIMES,
    ROLLBACK,
    ROLLBACK_ALERT,
    ROLLBACK_TIMES,
    copy_incident,
    load,
    svgs,
    text_of,
    timeline_rows,
    well_formed,
)


@pytest.fixture
def healthy(tmp_path: Path) -> tuple[Path, ReportResult, str, str]:
    incident = copy_incident(HEALTHY, tmp_path, HEALTHY_ALERT, HEALTHY_TIMES)
    result = build_report(incident, now=HEALTHY_ALERT + timedelta(hours=3))
    return (
        incident,
        result,
        result.html.read_text(encoding="utf-8"),
        result.markdown.read_text(encoding="utf-8"),
    )


@pytest.fixture
def rollback(tmp_path: Path) -> tuple[Path, ReportResult, str, str]:
    incident = copy_incident(ROLLBACK, tmp_path, ROLLBACK_ALERT, ROLLBACK_TIMES)
    result = build_report(incident, now=ROLLBACK_ALERT + timedelta(hours=30))
    return (
        incident,
        result,
        result.html.read_text(encoding="utf-8"),
        result.markdown.read_text(encoding="utf-8"),
    )


# --- where it goes, what it returns --------------------------------------------------------------------


def test_writes_both_files_under_report_and_returns_a_summary(healthy: Any) -> None:
    incident, result, html, md = healthy
    assert result.html == incident / "report" / "report.html"
    assert result.markdown == incident / "report" / "report.md"
    assert html.startswith("<!DOCTYPE html>") and md.startswith("# Incident manual__2026-12-01T11:06:14")
    assert (result.outcome, result.rule, result.problems) == ("continue", "continue", [])
    assert result.time_to_recover_s is None
    assert result.plots == len(svgs(html)) == 5  # text latency, 2 similarity, WER, drift
    brief = result.brief()
    assert brief["outcome"] == "continue" and brief["html"].endswith("report/report.html")


def test_a_rebuild_replaces_the_report(healthy: Any) -> None:
    incident, result, html, _ = healthy
    result.html.write_text("stale")
    again = build_report(incident, now=HEALTHY_ALERT + timedelta(hours=3))
    assert again.html.read_text(encoding="utf-8") == html
    assert sorted(p.name for p in (incident / "report").iterdir()) == ["report.html", "report.md"]


# --- the healthy incident ------------------------------------------------------------------------------


def test_healthy_decision_evidence_and_no_action(healthy: Any) -> None:
    incident, _, html, md = healthy
    text = text_of(html)
    assert "continue by rule continue" in " ".join(text.split())
    assert "**continue** (rule `continue`)" in md
    # the decision's reasons, with their numbers
    assert "bayesian_risk: max risk 0.4041 (text error) ≤ 0.95" in text
    assert "bayesian_risk: max risk 0.4041 (text error) ≤ 0.95" in md
    # every check of both phases, with its status
    for check in (
        "health_snapshot",
        "model_integrity",
        "metrics_sla",
        "log_classification",
        "drift",
        "asr_check",
    ):
        assert re.search(rf'id="check-{check}" data-status="ok"', html), check
    # the numbers behind clip consistency and ASR, per version
    clip = load(incident, "deep_diagnosis/clip_consistency.json")["versions"]["canary"]["figures"]
    assert clip["margin"] == 0.9337
    assert "margin 0.9337" in text and "i2t@1 1, i2t@5 1, t2i@1 1, t2i@5 1" in text
    assert "stable mean 0.0909, canary mean 0.0909" in text
    wer = re.search(r'<table class="wer">.*?</table>', html, re.S)
    assert wer is not None
    assert re.search(r"<td>zh-stock</td><td>0.4286</td><td>0.4286</td>", wer.group(0))
    # no action was taken, nothing recovered: said so, not left blank
    assert "no response action recorded" in text
    assert "time to recover: not verified (no recovery_verification.json)" in md
    assert "not run yet: verified_delivery/regression_suite.json is missing" in text


def test_healthy_plots_have_one_mark_per_value(healthy: Any) -> None:
    incident, _, html, _ = healthy
    plots = svgs(html)
    for svg in plots.values():
        well_formed(svg)
    metrics = load(incident, "golden_window/metrics_sla.json")
    served = {
        c["channel"]
        for c in metrics["channels"]
        if any(v is not None for v in c["current"]["latency_ms"].values())
    }
    assert served == {"text"}
    values = [
        v for c in metrics["channels"] if c["channel"] == "text" for v in c["current"]["latency_ms"].values()
    ]
    assert plots["latency-text"].count('class="bar s') == sum(v is not None for v in values) == 8
    assert plots["latency-text"].count('class="bar s1"') == 4  # canary
    # every other channel had no traffic: no chart, but a line saying so
    assert not any(name.startswith("latency-image") for name in plots)
    assert "latency image: no latency data in the window for stable, canary" in text_of(html)
    clip = load(incident, "deep_diagnosis/clip_consistency.json")
    bins = len(clip["versions"]["stable"]["figures"]["hist_edges"]) - 1
    for version in ("stable", "canary"):
        assert plots[f"similarity-{version}"].count('class="bin s0"') == bins == 20
        assert plots[f"similarity-{version}"].count('class="bin s1"') == bins
    clips = load(incident, "deep_diagnosis/asr_check.json")["versions"]["stable"]["figures"]["per_clip"]
    assert plots["wer-per-clip"].count('class="bar s') == 2 * len(clips) == 22
    assert plots["drift-levels"].count('class="cell level-0"') == 4  # 2 versions x text, image


def test_healthy_timeline_rows_against_the_deadlines(healthy: Any) -> None:
    _, _, html, md = healthy
    rows = timeline_rows(html)
    assert list(rows) == ["intake", "golden_window", "deep_diagnosis", "decision", "verified_delivery"]
    assert rows["intake"][0] == "no_deadline"
    # phase 1 ran from its first artifact (6.4 s after the alert) to its last (8.2 s)
    verdict, row = rows["golden_window"]
    assert verdict == "met"
    assert "2026-12-01 11:06:22 UTC" in row and "2026-12-01 13:06:14 UTC (+2 h)" in row
    assert "met, 1 h 59 min before the deadline" in row
    assert rows["deep_diagnosis"][0] == "met" and "(+12 h)" in rows["deep_diagnosis"][1]
    # phase 3 left no artifact yet, three hours in: not run, due in 21 h
    assert rows["verified_delivery"][0] == "not_run"
    assert "not run yet, due in 21 h 00 min" in rows["verified_delivery"][1]
    assert "| golden_window | 2026-12-01 11:06:21 UTC | 2026-12-01 11:06:22 UTC |" in md
    assert "**met** met, 1 h 59 min before the deadline" in md


# --- the rolled-back incident --------------------------------------------------------------------------


def test_rollback_decisions_reasons_and_finding_evidence(rollback: Any) -> None:
    _, result, html, md = rollback
    text = " ".join(text_of(html).split())
    assert (result.outcome, result.rule) == ("rollback", "critical_canary_finding")
    assert "rollback by rule critical_canary_finding" in text
    assert "**rollback** (rule `critical_canary_finding`)" in md
    # both decisions: the full one, and the fast path's made on phase 1 alone
    assert 'data-decision="full decision"' in html and 'data-decision="fast-path decision"' in html
    assert "phase2_evidence: consistency check clip_consistency failed on canary" in text
    assert "phase2_evidence: phase 2 not measured: drift and consistency unknown" in text
    # the evidence with its numbers, per finding, with the runbook action
    assert "canary router error rate 85.71% > SLA 1.00% over 120 s (6 of 7 requests, 5xx 85.71%)" in text
    assert "stable text p99.99 741 ms > SLA 200 ms over 120 s, 369 requests" in text
    assert "image embeddings are 512-d, text embeddings 128-d: no cosine between them" in text
    assert "set the router's embedding_dim to the encoders' shared dimension" in text
    assert "canary router error rate 85.71% > SLA 1.00%" in md
    # the metrics table and the canary gate
    assert re.search(r"<td>router</td><td>canary</td><td>7.06</td><td>0.0588</td><td>85.71%</td>", html)
    assert "canary gate: insufficient evidence" in text
    # phase 2's statuses per version
    assert re.search(r'id="check-clip_consistency" data-status="failed"', html)
    assert "margin 0.9337" in text  # stable's, still measured


def test_rollback_action_and_time_to_recover(rollback: Any) -> None:
    incident, result, html, md = rollback
    recovery = load(incident, "response/recovery_verification.json")
    assert recovery["time_to_recover_s"] == 46.294
    assert result.time_to_recover_s == 46.294
    text = " ".join(text_of(html).split())
    assert "time to recover: 46.3 s" in text
    assert "time to recover 46.3 s" in text  # the recovery's own facts
    assert "- time to recover: 46.3 s" in md
    assert "rollback: already_applied" in text and "rollback: already_applied" in md
    assert "before canary_weight 10, gateway http://[ip]:39389, strategy percentage" in text
    assert "3 good samples in a row, confirmed at 56.6 s" in text


def test_rollback_plots_show_what_was_measured_and_say_what_was_not(rollback: Any) -> None:
    incident, _, html, _ = rollback
    plots = svgs(html)
    for svg in plots.values():
        well_formed(svg)
    metrics = load(incident, "golden_window/metrics_sla.json")
    for channel in ("text", "image", "audio", "router"):
        values = [
            v
            for c in metrics["channels"]
            if c["channel"] == channel
            for v in c["current"]["latency_ms"].values()
        ]
        assert plots[f"latency-{channel}"].count('class="bar s') == sum(v is not None for v in values)
    # the router's 6 s SLA is far above its 25-50 ms bars: written, not drawn (the bars stay readable)
    assert 'class="limit-note"' in plots["latency-router"] and 'class="limit"' not in plots["latency-router"]
    assert 'class="limit"' in plots["latency-text"]  # 200 ms SLA against a 741 ms p99.99
    # the canary's image embeddings are 512-d against 128-d text: no cosines, said so
    assert "similarity-stable" in plots and "similarity-canary" not in plots
    assert "similarity canary: no cosine histogram (image embeddings are 512-d" in text_of(html)
    # drift: 2 versions x 4 channels; only text (both) and image (stable) were tested
    drift = plots["drift-levels"]
    assert drift.count('class="cell ') == 8
    assert drift.count('class="cell level-0"') == 3 and drift.count('class="cell level-na"') == 5
    assert plots["wer-per-clip"].count('class="bar s') == 22


def test_rollback_timeline_from_the_artifacts_and_from_the_dag(tmp_path: Path) -> None:
    incident = copy_incident(ROLLBACK, tmp_path, ROLLBACK_ALERT, ROLLBACK_TIMES)
    now = ROLLBACK_ALERT + timedelta(hours=30)
    rows = timeline_rows(build_report(incident, now=now).html.read_text(encoding="utf-8"))
    assert {p: v for p, (v, _) in rows.items()} == {
        "intake": "no_deadline",
        "golden_window": "met",
        "deep_diagnosis": "met",
        "decision": "no_deadline",
        "verified_delivery": "met",
    }
    # phase 3 started at the fast path's rollback and ended at the last response artifact
    assert "2026-12-01 11:09:49 UTC" in rows["verified_delivery"][1]
    assert "artifact times" in rows["verified_delivery"][1]

    # the DAG's own record wins where it has one: phase 1 ran late, phase 3 is still running past 24 h
    timeline = [
        PhaseSpan(
            phase="golden_window", start=ROLLBACK_ALERT, end=ROLLBACK_ALERT + timedelta(hours=2, minutes=30)
        ),
        PhaseSpan(phase="verified_delivery", start=ROLLBACK_ALERT + timedelta(hours=3)),
    ]
    result = build_report(incident, timeline=timeline, now=now)
    rows = timeline_rows(result.html.read_text(encoding="utf-8"))
    assert rows["golden_window"][0] == "missed" and "missed by 30 min 00 s" in rows["golden_window"][1]
    assert "DAG" in rows["golden_window"][1]
    assert rows["verified_delivery"][0] == "missed"
    assert "missed: still running 6 h 00 min after the deadline" in rows["verified_delivery"][1]
    assert rows["deep_diagnosis"][0] == "met" and "artifact times" in rows["deep_diagnosis"][1]
    assert "deadline missed: golden_window, verified_delivery" in result.summary

    # passed deadlines replace sop.yaml's; a phase with a deadline but still running in time is open
    result = build_report(
        incident,
        timeline=[PhaseSpan(phase="verified_delivery", start=ROLLBACK_ALERT + timedelta(hours=3))],
        deadlines_h={"golden_window": 0.0005, "verified_delivery": 48},
        now=now,
    )
    rows = timeline_rows(result.html.read_text(encoding="utf-8"))
    assert rows["golden_window"][0] == "missed"  # ended 2.4 s after the alert, deadline 1.8 s
    assert "missed by 600 ms" in rows["golden_window"][1]
    assert rows["deep_diagnosis"][0] == "no_deadline"
    assert (
        rows["verified_delivery"][0] == "open"
        and "running, due in 18 h 00 min" in rows["verified_delivery"][1]
    )


# --- the regression diff -------------------------------------------------------------------------------


REGRESSION_SUITE = {
    "check": "regression_suite",
    "status": "failed",
    "summary": "canary: 3 cases, 1 failing; text ok, image failed, audio ok",
    "target": "testbed",
    "version": "canary",
    "trigger": "manual__2026-12-01T11:07:30.496796+00:00",
    "cases": [
        {
            "case": "text-refund",
            "channel": "text",
            "version": "canary",
            "status": "ok",
            "metric": "score",
            "value": 0.91,
            "baseline": 0.93,
            "tolerance": 0.05,
            "detail": "",
        },
        {
            "case": "image-circle",
            "channel": "image",
            "version": "canary",
            "status": "failed",
            "metric": "cosine_vs_baseline",
            "value": 0.12,
            "baseline": 1.0,
            "tolerance": 0.02,
            "detail": "embedding 512-d vs baseline 128-d",
        },
        {
            "case": "audio-en-refund",
            "channel": "audio",
            "version": "canary",
            "status": "ok",
            "metric": "wer",
            "value": 0.0,
            "baseline": 0.0,
            "tolerance": 0.1,
            "detail": "",
        },
    ],
    "channels": {"text": "ok", "image": "failed", "audio": "ok"},
}


def test_regression_suite_is_rendered_as_a_diff_when_present(tmp_path: Path) -> None:
    import json

    incident = copy_incident(ROLLBACK, tmp_path, ROLLBACK_ALERT, ROLLBACK_TIMES)
    (incident / "verified_delivery").mkdir()
    (incident / "verified_delivery" / "regression_suite.json").write_text(json.dumps(REGRESSION_SUITE))
    result = build_report(incident, now=ROLLBACK_ALERT + timedelta(hours=30))
    html, md = result.html.read_text(encoding="utf-8"), result.markdown.read_text(encoding="utf-8")
    rows = re.findall(r'<tr class="case( outside)?" data-status="([a-z_]+)">(.*?)</tr>', html, re.S)
    # failing first; each with value, baseline, delta and tolerance; outside its tolerance marked
    assert [(bool(o), st, text_of(body).split()[0]) for o, st, body in rows] == [
        (True, "failed", "image-circle"),
        (False, "ok", "audio-en-refund"),
        (False, "ok", "text-refund"),
    ]
    image = " ".join(text_of(rows[0][2]).split())
    assert "cosine_vs_baseline 0.12 1 -0.88 ± 0.02 failed embedding 512-d vs baseline 128-d" in image
    assert "-0.02" in text_of(rows[2][2])
    assert re.search(r"<td>image</td><td><span class=\"status st-failed\">failed</span>", html)
    assert "regression suite</dt><dd>failed - 1 failed, 2 ok" in html
    assert "| image-circle | image | canary | cosine_vs_baseline | 0.12 | 1 | -0.88 | ± 0.02 | failed |" in md


# --- self-contained ------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["healthy", "rollback"])
def test_the_page_is_self_contained(which: str, request: pytest.FixtureRequest) -> None:
    _, _, html, _ = request.getfixturevalue(which)
    assert not re.search(r"""(?:src|href|xlink:href|action|data)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"<script", html, re.I)
    assert not re.search(r"<link\b", html, re.I)
    assert not re.search(r"@import|url\s*\(", html, re.I)
    assert not re.search(r"<(?:img|iframe|object|embed)\b", html, re.I)
    if which == "rollback":
        # the artifacts do hold URLs (the gateway's): shown as text, never as a link, the IP masked
        assert "gateway http://[ip]:39389" in html
