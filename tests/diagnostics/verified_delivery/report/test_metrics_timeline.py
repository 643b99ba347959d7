"""The report's "Metrics timeline": one chart per channel with samples (p99 and error rate, stable vs
canary, each bound as a dashed line) and a row per channel and metric, from the stored
``golden_window/metric_timeline.json``; absent, insufficient or malformed, the section says so."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

from diagnostics.golden_window.timeline import unavailable
from diagnostics.verified_delivery.report import build_report
from tests.diagnostics.golden_window.test_timeline import END, recorded_timeline
from tests.diagnostics.verified_delivery.report.conftest import (
    HEALTHY,
    HEALTHY_ALERT,
    HEALTHY_TIMES,
    copy_incident,
    svgs,
    text_of,
    well_formed,
)

NOW = HEALTHY_ALERT + timedelta(hours=3)
TIMELINE = "golden_window/metric_timeline.json"


def _section(html: str) -> str:
    match = re.search(r'<section id="metrics-timeline">(.*?)</section>', html, re.S)
    assert match, "no metrics timeline section"
    return match.group(1)


def _row(html: str, channel: str, metric: str) -> str:
    match = re.search(rf'<tr class="mt-row" data-channel="{channel}" data-metric="{metric}">(.*?)</tr>', html)
    assert match, f"no row {channel} {metric}"
    return " ".join(text_of(match.group(1)).split())


def test_one_chart_per_channel_with_samples_and_its_bounds(tmp_path: Path) -> None:
    incident = copy_incident(HEALTHY, tmp_path, HEALTHY_ALERT, HEALTHY_TIMES)
    (incident / TIMELINE).write_text(recorded_timeline().model_dump_json(indent=2), encoding="utf-8")
    result = build_report(incident, now=NOW)
    html, md = result.html.read_text(encoding="utf-8"), result.markdown.read_text(encoding="utf-8")

    charts = {k: v for k, v in svgs(html).items() if k.startswith("metrics-timeline-")}
    # router had no p99 or error-rate sample: not charted, and said
    assert sorted(charts) == ["metrics-timeline-audio", "metrics-timeline-image", "metrics-timeline-text"]
    assert result.plots == 5 + 3  # the healthy incident's five charts, then these
    image = charts["metrics-timeline-image"]
    well_formed(image)
    # p99: stable 100,100,200,200 (one line), canary 500 | 1300,2500,1000 (a dot, a line);
    # error rate: stable 0,0,0.5,0 % and canary 0,2,5 % (a line each)
    assert image.count("<polyline ") == 4
    assert image.count('class="line s0"') == 2 and image.count('class="line s1"') == 2
    assert image.count('class="dot s1"') == 1
    # the bounds: the canary gate's p99 for image, the SLA error rate in percent
    assert re.findall(r'class="limit" data-limit="([^"]+)"', image) == ["1200", "1"]
    assert "gate 1200 ms" in image and "SLA 1 %" in image
    assert charts["metrics-timeline-text"].count("<polyline ") == 2  # stable only: no canary text series

    section = _section(html)
    assert _row(section, "image", "p99_latency_ms") == (
        "image p99_latency_ms 150 ms (4 pts) 1325 ms (4 pts) 2500 ms ×8.6 over 3 pts "
        "1200 ms (canary gate p99 (image)) 12:00:12 UTC (2 pts over)"
    )
    assert _row(section, "image", "error_rate") == (
        "image error_rate 0.12% (4 pts) 2.33% (3 pts) 5.00% ×14 over 3 pts "
        "1.00% (SLA error rate (image)) 12:00:06 UTC (2 pts over)"
    )
    assert _row(section, "text", "request_rate") == (
        "text request_rate 11 req/s (2 pts) n/a (0 pts) n/a n/a none n/a"
    )
    assert "no p99 or error-rate sample in the window on router: not charted" in text_of(section)
    assert "2025-01-01 12:00:00 UTC to 2025-01-01 12:10:00 UTC: 101 steps of 6 s" in text_of(section)
    assert 'id="check-metric_timeline"' not in html  # evidence of its own, not listed as a check
    assert "## Metrics timeline" in md
    assert "| image | p99_latency_ms | 150 ms (4 pts) | 1325 ms (4 pts) | 2500 ms | ×8.6 over 3 pts |" in md


def test_without_a_stored_timeline_the_section_says_so(tmp_path: Path) -> None:
    incident = copy_incident(HEALTHY, tmp_path, HEALTHY_ALERT, HEALTHY_TIMES)
    result = build_report(incident, now=NOW)
    html, md = result.html.read_text(encoding="utf-8"), result.markdown.read_text(encoding="utf-8")
    section = text_of(_section(html))
    assert "no metric timeline stored (golden_window/metric_timeline.json)" in section
    assert "<svg" not in _section(html) and result.plots == 5
    assert not any("metric_timeline" in p for p in result.problems)  # absent is not a problem
    assert "no metric timeline stored" in md


def test_a_timeline_without_evidence_shows_the_reason(tmp_path: Path) -> None:
    incident = copy_incident(HEALTHY, tmp_path, HEALTHY_ALERT, HEALTHY_TIMES)
    stored = unavailable("testbed", END, 600, "cannot reach Prometheus at http://127.0.0.1:9090: refused")
    (incident / TIMELINE).write_text(stored.model_dump_json(), encoding="utf-8")
    html = build_report(incident, now=NOW).html.read_text(encoding="utf-8")
    section = " ".join(text_of(_section(html)).split())
    # the reason as stored, PII-masked like every string of the report (an IPv4 address is masked)
    assert "insufficient evidence cannot reach Prometheus at http://[ip]:9090: refused" in section
    assert "<svg" not in _section(html)


def test_a_malformed_timeline_is_named_in_the_section_and_the_problems(tmp_path: Path) -> None:
    incident = copy_incident(HEALTHY, tmp_path, HEALTHY_ALERT, HEALTHY_TIMES)
    data = json.loads(recorded_timeline().model_dump_json())
    data["series"][0]["values"]["canary"] = [1.0]  # one value for 101 steps
    (incident / TIMELINE).write_text(json.dumps(data), encoding="utf-8")
    result = build_report(incident, now=NOW)
    html = result.html.read_text(encoding="utf-8")
    problem = next(p for p in result.problems if p.startswith(TIMELINE))
    assert "canary has 1 values for 101 steps" in problem
    assert problem in text_of(_section(html))
