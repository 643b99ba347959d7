"""The phase-1 metric timeline: three range queries answered as Prometheus answers them (``matrix``
results of ``values`` pairs, "NaN" and "+Inf" strings, an off-step sample, a version with no series),
turned into per-channel figures through the pandas frame; Prometheus down or empty is insufficient
evidence, never an exception; the PromQL evaluated by the real Prometheus engine (promtool); and the
result stored beside ``metrics_sla`` without ever failing phase 1."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from diagnostics.golden_window import phase, timeline
from diagnostics.golden_window.timeline import Metric, MetricTimeline, grid, metric_timeline, queries
from diagnostics.incident.model import Incident
from diagnostics.incident.results import CheckResult, Status
from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.schemas import Channel
from diagnostics.sources.prometheus import PrometheusReader
from tests.conftest import free_port
from tests.support.http import Canned, CannedServer, Recorded, canned_server

BOOKS = load_runbooks()
TARGET = BOOKS.targets.get("testbed")
END = datetime(2025, 1, 1, 12, 10, 0, 400000, tzinfo=UTC)  # the incident's analysed_at
WINDOW_S = 600.0
T0 = 1735732800  # 2025-01-01T12:00:00Z: the window's first step (600 s / 6 s steps = 101 points)


def _series(version: str, channel: str, values: list[tuple[float, str]]) -> dict[str, Any]:
    return {"metric": {"channel": channel, "version": version}, "values": [[t, v] for t, v in values]}


def _steps(*values: str) -> list[tuple[float, str]]:
    return [(T0 + 6 * i, v) for i, v in enumerate(values)]


# What Prometheus answers to the three queries (GET /api/v1/query_range), by metric.
MATRICES: dict[Metric, list[dict[str, Any]]] = {
    Metric.REQUEST_RATE: [
        _series("stable", "image", _steps("4", "4", "4", "4")),
        _series("canary", "image", _steps("0.5", "0.5", "0.5", "0.5")),
        _series("stable", "text", _steps("10", "12")),  # no canary text series at all
    ],
    Metric.ERROR_RATE: [
        _series("stable", "image", _steps("0", "0", "0.005", "0")),
        # the second sample 1 s off its step (12:00:07): aligned to 12:00:06; 0/0 is "NaN"
        _series("canary", "image", [(T0, "0"), (T0 + 7, "0.02"), (T0 + 12, "0.05"), (T0 + 18, "NaN")]),
        _series("stable", "text", _steps("0", "0")),
    ],
    Metric.P99_LATENCY_MS: [  # seconds, as histogram_quantile answers
        _series("stable", "image", _steps("0.1", "0.1", "0.2", "0.2", "NaN")),
        _series("canary", "image", _steps("0.5", "NaN", "1.3", "2.5", "1.0")),
        _series("stable", "text", _steps("0.03", "0.05")),
        _series("stable", "audio", _steps("3.5", "4.0")),
        _series("canary", "audio", _steps("+Inf", "+Inf")),  # above every bucket: no number
    ],
}


def _metric_of(expr: str) -> Metric:
    if expr.startswith("histogram_quantile"):
        return Metric.P99_LATENCY_MS
    return Metric.ERROR_RATE if expr.startswith("clamp_max") else Metric.REQUEST_RATE


def prometheus_route(matrices: dict[Metric, list[dict[str, Any]]]) -> Any:
    """A /api/v1/query_range route answering each query's matrix."""

    def route(req: Recorded) -> Canned:
        expr = parse_qs(urlsplit(req.path).query)["query"][0]
        result = matrices[_metric_of(expr)]
        return Canned(200, {"status": "success", "data": {"resultType": "matrix", "result": result}})

    return route


def served(matrices: dict[Metric, list[dict[str, Any]]]) -> Any:
    return canned_server({("GET", "/api/v1/query_range"): prometheus_route(matrices)})


def recorded_timeline() -> MetricTimeline:
    """The timeline of the recorded answers (the report's tests draw it)."""
    with served(MATRICES) as prom:
        return metric_timeline(PrometheusReader(prom.url), TARGET, BOOKS.thresholds, END, WINDOW_S)


def _params(prom: CannedServer) -> list[dict[str, str]]:
    return [{k: v[0] for k, v in parse_qs(urlsplit(r.path).query).items()} for r in prom.requests]


# --- the window ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window_s", "step", "points"),
    [(600, 6, 101), (300, 3, 101), (7200, 61, 119), (60, 1, 61), (119, 1, 120)],
)
def test_the_step_keeps_every_series_to_120_points(window_s: float, step: float, points: int) -> None:
    start, got_step, got_points = grid(END, window_s)
    assert (got_step, got_points) == (step, points)
    assert start.timestamp() == 1735733400 - (points - 1) * step  # ends at 12:10:00, the second cut


# --- three queries, the frame, the figures ------------------------------------------------------------


def test_three_range_queries_cover_every_version_and_channel() -> None:
    with served(MATRICES) as prom:
        result = metric_timeline(PrometheusReader(prom.url), TARGET, BOOKS.thresholds, END, WINDOW_S)
    params = _params(prom)
    assert len(params) == 3
    assert {p["query"] for p in params} == set(queries(TARGET, 60).values())
    assert all((p["start"], p["end"], p["step"]) == (str(T0), str(T0 + 600), "6") for p in params)
    assert all("by (version, channel" in p["query"] for p in params)
    assert result.status is Status.OK
    assert (result.points, result.step_s, result.lookback_s) == (101, 6.0, 60.0)
    assert len(result.series) == 3 * 4
    assert result.summary == (
        "testbed: 101 steps of 6 s per series; canary over its bound: "
        "image error_rate from 12:00:06, image p99_latency_ms from 12:00:12"
    )


def test_image_p99_figures_from_the_aligned_frame() -> None:
    p99 = recorded_timeline().get(Channel.IMAGE, Metric.P99_LATENCY_MS)
    assert p99 is not None
    assert p99.stats["stable"].model_dump() == {"points": 4, "min": 100.0, "max": 200.0, "mean": 150.0}
    assert p99.stats["canary"].model_dump() == {"points": 4, "min": 500.0, "max": 2500.0, "mean": 1325.0}
    assert (p99.bound, p99.bound_name) == (1200.0, "canary gate p99 (image)")
    # 1300 ms at 12:00:12 is the first value over the 1200 ms gate; 2500 ms follows
    assert p99.canary_first_over == datetime(2025, 1, 1, 12, 0, 12, tzinfo=UTC)
    assert p99.canary_points_over == 2
    # both have a value at 12:00:00, :12, :18: (500 + 1300 + 2500) / (100 + 200 + 200)
    assert p99.common_points == 3
    assert p99.ratio == pytest.approx(4300 / 500, rel=1e-12)
    assert p99.values["canary"][:6] == [500.0, None, 1300.0, 2500.0, 1000.0, None]
    assert p99.values["stable"][4:] == [None] * 97  # "NaN" and the steps with no sample are no data


def test_an_off_step_sample_is_aligned_and_nan_is_no_data() -> None:
    err = recorded_timeline().get(Channel.IMAGE, Metric.ERROR_RATE)
    assert err is not None
    assert err.values["canary"][:4] == [0.0, 0.02, 0.05, None]
    assert err.stats["canary"].points == 3
    assert err.stats["canary"].mean == pytest.approx(0.07 / 3, rel=1e-12)
    assert err.stats["stable"].mean == 0.00125
    assert (err.bound, err.bound_name) == (0.01, "SLA error rate (image)")
    assert err.canary_first_over == datetime(2025, 1, 1, 12, 0, 6, tzinfo=UTC)
    assert err.canary_points_over == 2
    assert err.common_points == 3 and err.ratio == pytest.approx(14.0, rel=1e-12)
    rate = recorded_timeline().get(Channel.IMAGE, Metric.REQUEST_RATE)
    assert rate is not None and (rate.bound, rate.ratio, rate.canary_first_over) == (None, 0.125, None)


def test_a_version_without_a_series_and_inf_values_have_no_figures() -> None:
    result = recorded_timeline()
    text = result.get(Channel.TEXT, Metric.REQUEST_RATE)
    assert text is not None
    assert text.stats["stable"].model_dump() == {"points": 2, "min": 10.0, "max": 12.0, "mean": 11.0}
    assert text.stats["canary"].model_dump() == {"points": 0, "min": None, "max": None, "mean": None}
    assert (text.ratio, text.common_points) == (None, 0)
    audio = result.get(Channel.AUDIO, Metric.P99_LATENCY_MS)
    assert audio is not None
    assert audio.stats["canary"].points == 0  # "+Inf" twice: no data, never a crossing of the 6 s gate
    assert (audio.canary_first_over, audio.bound, audio.stats["stable"].mean) == (None, 6000.0, 3750.0)
    router = result.get(Channel.ROUTER, Metric.P99_LATENCY_MS)
    assert router is not None and all(v is None for v in router.values["stable"] + router.values["canary"])
    # what is stored reads back as the same model; a verdict is not a timeline's to give
    stored = json.loads(result.model_dump_json())
    assert MetricTimeline.model_validate(stored) == result
    with pytest.raises(ValueError, match="never a verdict"):
        MetricTimeline.model_validate({**stored, "status": "failed"})


# --- no evidence: never an exception -----------------------------------------------------------------


def test_an_unreachable_prometheus_is_insufficient_evidence() -> None:
    reader = PrometheusReader(f"http://127.0.0.1:{free_port()}", timeout_s=1)
    reader.sleep = lambda s: None
    started = time.monotonic()
    result = metric_timeline(reader, TARGET, BOOKS.thresholds, END, WINDOW_S)
    assert time.monotonic() - started < 2
    assert result.status is Status.INSUFFICIENT_EVIDENCE
    assert result.reason.startswith("cannot reach Prometheus at http://127.0.0.1:")
    assert result.summary.startswith("testbed: no metric timeline: cannot reach")
    assert result.series == [] and len(result.queries) == 3


def test_a_query_prometheus_rejects_is_insufficient_evidence() -> None:
    bad = {"status": "error", "errorType": "bad_data", "error": "parse error"}
    with canned_server({("GET", "/api/v1/query_range"): Canned(400, bad)}) as prom:
        result = metric_timeline(PrometheusReader(prom.url), TARGET, BOOKS.thresholds, END, WINDOW_S)
    assert result.status is Status.INSUFFICIENT_EVIDENCE and "parse error" in result.reason
    assert len(prom.requests) == 1  # a 400 is not retried, and the other two are not sent


def test_empty_results_are_insufficient_evidence() -> None:
    with served({m: [] for m in Metric}) as prom:
        result = metric_timeline(PrometheusReader(prom.url), TARGET, BOOKS.thresholds, END, WINDOW_S)
    assert len(prom.requests) == 3
    assert result.status is Status.INSUFFICIENT_EVIDENCE
    assert result.reason == "Prometheus had no sample in the window"
    assert all(st.points == 0 for s in result.series for st in s.stats.values())


# --- the PromQL, evaluated by Prometheus' own engine ------------------------------------------------

PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: apt-get install prometheus")
def test_the_promql_on_synthetic_series(tmp_path: Path) -> None:
    """15 s scrapes: stable text 60 requests each (4/s, p99 from two buckets), canary text 30 (6 of them
    errors: 20 %), stable image no error series (0 %), canary image no request at all (0/0: NaN)."""
    q = queries(TARGET, 60)
    sel = 'job="testbed",code="200"'
    series = {
        f'testbed_requests_total{{{sel},version="stable",channel="text"}}': "0+60x10",
        f'testbed_requests_total{{{sel},version="canary",channel="text"}}': "0+24x10",
        'testbed_requests_total{job="testbed",code="500",version="canary",channel="text"}': "0+6x10",
        'testbed_request_errors_total{job="testbed",code="500",version="canary",channel="text"}': "0+6x10",
        f'testbed_requests_total{{{sel},version="stable",channel="image"}}': "0+15x10",
        f'testbed_requests_total{{{sel},version="canary",channel="image"}}': "5+0x10",
        'testbed_request_duration_seconds_bucket{job="testbed",version="stable",channel="text",le="0.1"}': (
            "0+30x10"
        ),
        'testbed_request_duration_seconds_bucket{job="testbed",version="stable",channel="text",le="0.25"}': (
            "0+60x10"
        ),
        'testbed_request_duration_seconds_bucket{job="testbed",version="stable",channel="text",le="+Inf"}': (
            "0+60x10"
        ),
    }

    def expect(expr: str, samples: dict[str, float]) -> dict[str, Any]:
        return {
            "expr": expr,
            "eval_time": "150s",
            "exp_samples": [
                {"labels": "{" + f'version="{v}",channel="{c}"' + "}", "value": value}
                for (v, c), value in ((k.split("/"), x) for k, x in samples.items())
            ],
        }

    err = q[Metric.ERROR_RATE]
    tests = [
        expect(
            q[Metric.REQUEST_RATE], {"stable/text": 4, "canary/text": 2, "stable/image": 1, "canary/image": 0}
        ),
        # NaN never equals NaN in promtool: the no-traffic series is asked for as "is NaN"
        expect(f"({err}) == ({err})", {"stable/text": 0, "canary/text": 0.2, "stable/image": 0}),
        expect(
            f"({err}) != bool ({err})",
            {"stable/text": 0, "canary/text": 0, "stable/image": 0, "canary/image": 1},
        ),
        # rank 0.99 x 4/s = 3.96 in (0.1, 0.25]: 0.1 + 0.15 x (3.96 - 2) / 2
        expect(q[Metric.P99_LATENCY_MS], {"stable/text": 0.247}),
    ]
    spec = {
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": [{"series": k, "values": v} for k, v in series.items()],
                "promql_expr_test": tests,
            }
        ],
    }
    path = tmp_path / "timeline_test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# --- stored beside metrics_sla; never fails phase 1 -------------------------------------------------

INCIDENT = Incident(
    incident_id="manual__timeline",
    target="testbed",
    source="manual",
    alert_started_at=END,
    analysed_at=END,
    window_s=WINDOW_S,
)


@pytest.fixture
def artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRIAGE24_ARTIFACT_ROOT", str(tmp_path))
    return tmp_path / INCIDENT.incident_id / "golden_window"


def test_the_timeline_is_stored_as_golden_window_metric_timeline(artifacts: Path) -> None:
    with served(MATRICES) as prom:
        path = phase.store_metric_timeline(INCIDENT, phase.EvidenceSources(prometheus_url=prom.url))
    assert path == artifacts / "metric_timeline.json"
    stored = MetricTimeline.model_validate(json.loads(path.read_text()))
    assert stored.status is Status.OK and len(prom.requests) == 3
    assert stored.model_copy(update={"elapsed_s": 0.0}) == recorded_timeline().model_copy(
        update={"elapsed_s": 0.0}
    )
    assert "metric_timeline" not in phase.PHASE_CHECKS  # evidence, not a check that can fail the run


def test_prometheus_is_not_asked_again_when_metrics_sla_could_not_read_it(artifacts: Path) -> None:
    failed = CheckResult(
        check="metrics_sla",
        status=Status.INSUFFICIENT_EVIDENCE,
        summary="no metrics",
        details={"error": "refused"},
    )
    with served(MATRICES) as prom:
        path = phase.store_metric_timeline(INCIDENT, phase.EvidenceSources(prometheus_url=prom.url), failed)
    assert path is not None and prom.requests == []
    stored = json.loads(path.read_text())
    assert stored["status"] == "insufficient_evidence"
    assert stored["reason"] == "not queried: metrics_sla could not read Prometheus (refused)"


def test_a_crashing_timeline_is_stored_as_insufficient_evidence(
    artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object) -> MetricTimeline:
        raise RuntimeError("frame shape")

    monkeypatch.setattr(timeline, "metric_timeline", crash)
    path = phase.store_metric_timeline(INCIDENT, phase.EvidenceSources(prometheus_url="http://127.0.0.1:1"))
    assert path is not None
    assert json.loads(path.read_text())["reason"] == "timeline crashed: RuntimeError: frame shape"


def test_an_unstorable_timeline_is_logged_not_raised(
    artifacts: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def full(*args: object) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(phase, "write_result", full)
    failed = CheckResult(
        check="metrics_sla", status=Status.INSUFFICIENT_EVIDENCE, summary="x", details={"error": "e"}
    )
    assert (
        phase.store_metric_timeline(INCIDENT, phase.EvidenceSources(prometheus_url="http://x"), failed)
        is None
    )
    assert "metric timeline not stored" in caplog.text and "disk full" in caplog.text


def test_the_metrics_check_task_stores_both_and_its_brief_is_unchanged(artifacts: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listening: metrics_sla is insufficient evidence
    brief = phase.run_and_store(
        "metrics_sla", INCIDENT, phase.EvidenceSources(prometheus_url=url, http_timeout_s=1)
    )
    assert brief["check"] == "metrics_sla" and brief["status"] == "insufficient_evidence"
    assert brief["artifact"] == str(artifacts / "metrics_sla.json")
    stored = json.loads((artifacts / "metric_timeline.json").read_text())
    assert stored["status"] == "insufficient_evidence"
    assert stored["reason"].startswith("not queried: metrics_sla could not read Prometheus (cannot reach")
