"""The SLA comparison, the dynamic thresholds and the canary gate rule on constructed inputs."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime

import pytest

from diagnostics.golden_window.canary_gate import (
    ChannelGate,
    GateVerdict,
    combine_gates,
    evaluate_channel_gate,
)
from diagnostics.golden_window.metrics_sla import (
    MetricsSlaResult,
    check_metrics_sla,
    decide_status,
    evaluate_channel,
)
from diagnostics.golden_window.thresholds import fit_gamma, histogram_to_samples, requests_slower_than
from diagnostics.incident.results import Status
from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.schemas import CanaryGates, Channel, Severity
from diagnostics.sources.prometheus import Sample, WindowStats

END = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
GATES = CanaryGates(
    p99_latency_ms=1200,
    rate_5xx=0.005,
    error_rate=0.05,
    sustained_s=60,
    min_requests=50,
    channel_p99_latency_ms={Channel.AUDIO: 6000},
)
BOOKS = load_runbooks()


def stats(
    version: str = "canary",
    channel: Channel = Channel.IMAGE,
    requests: float = 100,
    errors: float = 0,
    errors_5xx: float = 0,
    window_s: float = 60,
    buckets: list[tuple[float, float]] | None = None,
    **latency_ms: float | None,
) -> WindowStats:
    """Window figures; latency by label with '_' for '.', e.g. p99_99=180.0."""
    return WindowStats(
        version=version,
        channel=channel,
        end=END,
        window_s=window_s,
        requests=requests,
        errors=errors,
        errors_5xx=errors_5xx,
        latency_ms={k.replace("_", "."): v for k, v in latency_ms.items()},
        buckets=buckets or [],
    )


# --- gate rule --------------------------------------------------------------------------------------


def _by_gate(result: ChannelGate) -> dict[str, GateVerdict]:
    return {g.gate: g.verdict for g in result.gates}


def test_fewer_than_min_requests_is_insufficient_never_breach() -> None:
    # 49 requests, all slow and all 5xx: still not a verdict.
    trailing = stats(requests=49, errors=49, errors_5xx=49, p99=5000)
    result = evaluate_channel_gate(GATES, Channel.IMAGE, trailing, stats(requests=25, window_s=30, p99=5000))
    assert result.verdict is GateVerdict.INSUFFICIENT_EVIDENCE
    assert "49 canary requests < min_requests 50" in result.reason
    assert result.gates == []


def test_no_canary_traffic_is_insufficient() -> None:
    result = evaluate_channel_gate(GATES, Channel.TEXT, stats(requests=0), stats(requests=0, window_s=30))
    assert result.verdict is GateVerdict.INSUFFICIENT_EVIDENCE
    assert combine_gates(GATES, [result]).verdict is GateVerdict.INSUFFICIENT_EVIDENCE


def test_sustained_latency_breach_with_ratio_to_stable() -> None:
    trailing = stats(requests=412, p99=1830)
    recent = stats(requests=200, window_s=30, p99=1900)
    stable = stats(version="stable", requests=3000, p99=122)
    result = evaluate_channel_gate(GATES, Channel.IMAGE, trailing, recent, stable)
    assert result.verdict is GateVerdict.BREACH
    p99 = next(g for g in result.gates if g.gate == "p99_latency_ms")
    assert (p99.verdict, p99.value, p99.recent_value, p99.limit) == (GateVerdict.BREACH, 1830, 1900, 1200)
    assert p99.ratio_vs_stable == pytest.approx(15.0)  # 1830 / 122
    assert p99.requests == 412
    combined = combine_gates(GATES, [result])
    assert combined.summary().breaches == ["image p99_latency_ms 1830 ms > 1200 ms"]


def test_5xx_gate_by_hand() -> None:
    # 1 of 100 = 1.00 % > 0.5 %; recent half 1 of 50 = 2 % > 0.5 %: breach. Errors 1 % < 5 %: pass.
    trailing = stats(requests=100, errors=1, errors_5xx=1, p99=100)
    recent = stats(requests=50, window_s=30, errors=1, errors_5xx=1, p99=100)
    result = evaluate_channel_gate(GATES, Channel.TEXT, trailing, recent)
    assert _by_gate(result) == {
        "p99_latency_ms": GateVerdict.PASS,
        "rate_5xx": GateVerdict.BREACH,
        "error_rate": GateVerdict.PASS,
    }
    # exactly at the gate is not a breach: 5 of 1000 = 0.5 %
    at_gate = stats(requests=1000, errors=5, errors_5xx=5, p99=100)
    assert evaluate_channel_gate(GATES, Channel.TEXT, at_gate, at_gate).verdict is GateVerdict.PASS


def test_a_breach_that_recovered_in_the_recent_half_is_not_sustained() -> None:
    result = evaluate_channel_gate(
        GATES, Channel.IMAGE, stats(requests=100, p99=2000), stats(requests=50, window_s=30, p99=900)
    )
    assert result.verdict is GateVerdict.PASS
    assert "not sustained" in result.gates[0].reason


def test_a_breach_without_recent_data_is_insufficient() -> None:
    result = evaluate_channel_gate(
        GATES, Channel.IMAGE, stats(requests=100, p99=2000), stats(requests=0, window_s=30, p99=None)
    )
    assert result.verdict is GateVerdict.INSUFFICIENT_EVIDENCE


def test_per_channel_p99_gate() -> None:
    # audio's gate is 6000 ms: 5000 ms passes there, and would breach the 1200 ms default elsewhere.
    audio = evaluate_channel_gate(
        GATES, Channel.AUDIO, stats(channel=Channel.AUDIO, p99=5000), stats(channel=Channel.AUDIO, p99=5000)
    )
    assert audio.verdict is GateVerdict.PASS
    assert audio.gates[0].limit == 6000
    text = evaluate_channel_gate(GATES, Channel.TEXT, stats(p99=5000), stats(p99=5000))
    assert text.verdict is GateVerdict.BREACH


def test_combining_channels() -> None:
    ok = evaluate_channel_gate(GATES, Channel.TEXT, stats(p99=100), stats(p99=100))
    unserved = evaluate_channel_gate(GATES, Channel.AUDIO, stats(requests=0), stats(requests=0))
    short = evaluate_channel_gate(GATES, Channel.IMAGE, stats(requests=10, p99=100), stats(requests=5))
    bad = evaluate_channel_gate(GATES, Channel.ROUTER, stats(p99=9000), stats(p99=9000))
    assert combine_gates(GATES, [ok, unserved]).verdict is GateVerdict.PASS  # unserved channels don't count
    assert combine_gates(GATES, [ok, short]).verdict is GateVerdict.INSUFFICIENT_EVIDENCE  # never a pass
    assert combine_gates(GATES, [ok, short, bad]).verdict is GateVerdict.BREACH
    summary = combine_gates(GATES, [ok, short, bad]).summary()
    assert summary.breaches == ["router p99_latency_ms 9000 ms > 1200 ms"]
    assert len(json.dumps(summary.model_dump(mode="json"))) < 500  # fits in XCom comfortably


# --- SLA and dynamic thresholds ---------------------------------------------------------------------


def test_latency_sla_breach_finding_from_the_matrix() -> None:
    sla = BOOKS.thresholds.sla_for("testbed", Channel.IMAGE)  # P99.99 <= 200 ms, errors <= 1 %
    current = stats(requests=412, window_s=300, p99_99=1830.0)
    reference = stats(requests=400, window_s=300, p99_99=150.0)
    stable = stats(version="stable", requests=4000, window_s=300, p99_99=183.0)
    metrics, findings = evaluate_channel(
        current, reference, sla, BOOKS.thresholds.dynamic, BOOKS.priority_matrix, stable
    )
    assert metrics.breaches == ["latency_sla", "latency_dynamic"]
    # dynamic: max(180, 150 * e^(0.02 * 412 / 300)) = max(180, 150 * e^0.027467) = max(180, 154.18) = 180
    assert metrics.dynamic is not None
    assert metrics.dynamic.threshold_ms == pytest.approx(180.0)
    [finding] = findings
    assert finding.problem == "latency_sla_breach"
    assert finding.severity is Severity.MEDIUM  # the matrix's severity
    assert finding.action.startswith("Compare stable and canary latency")
    assert finding.runbook == "latency_sla_breach.md"
    assert finding.component == "embedding"
    assert (finding.version, finding.channel) == ("canary", "image")
    assert finding.evidence.startswith("canary image p99.99 1830 ms > SLA 200 ms and > dynamic 180 ms")
    assert "over 300 s, 412 requests" in finding.evidence
    assert "stable 183 ms (×10.0)" in finding.evidence  # 1830 / 183


def test_api_dynamic_threshold_under_load() -> None:
    # reference P99.99 150 ms, current 3000 requests in 60 s = 50 rps:
    # 150 * e^(0.02 * 50) = 150 * e = 407.74 ms; observed 300 ms is under it but over the 200 ms SLA.
    sla = BOOKS.thresholds.sla_for("testbed", Channel.TEXT)
    metrics, findings = evaluate_channel(
        stats(channel=Channel.TEXT, requests=3000, p99_99=300.0),
        stats(channel=Channel.TEXT, requests=600, p99_99=150.0),
        sla,
        BOOKS.thresholds.dynamic,
    )
    assert metrics.dynamic is not None
    assert metrics.dynamic.threshold_ms == pytest.approx(150 * math.e)
    assert metrics.dynamic.formula == "max(180, 150.0·e^(0.02·50.00)) ms"
    assert metrics.breaches == ["latency_sla"]
    assert len(findings) == 1


def test_the_dynamic_baseline_is_stables_reference_window() -> None:
    # The canary was already slow in its reference window (P99.99 3000 ms): its own baseline would give
    # 3000 * e^(0.02 * 1) = 3060.6 ms. Stable's reference P99.99 of 50 ms gives
    # max(180, 50 * e^0.02) = max(180, 51.0) = 180 ms, so the canary's 2900 ms breaches it.
    sla = BOOKS.thresholds.sla_for("testbed", Channel.TEXT)
    current = stats(channel=Channel.TEXT, requests=60, p99_99=2900.0)
    own_reference = stats(channel=Channel.TEXT, requests=60, p99_99=3000.0)
    stable_reference = stats(version="stable", channel=Channel.TEXT, requests=600, p99_99=50.0)
    alone, _ = evaluate_channel(current, own_reference, sla, BOOKS.thresholds.dynamic)
    assert alone.dynamic is not None and alone.dynamic.threshold_ms == pytest.approx(3000 * math.exp(0.02))
    assert alone.baseline_version == "canary"
    judged, _ = evaluate_channel(
        current, own_reference, sla, BOOKS.thresholds.dynamic, baseline=stable_reference
    )
    assert judged.dynamic is not None and judged.dynamic.threshold_ms == 180
    assert judged.baseline_version == "stable"
    assert judged.breaches == ["latency_sla", "latency_dynamic"]
    # a stable baseline without traffic falls back to the version's own reference
    empty = stats(version="stable", channel=Channel.TEXT, requests=0)
    fallback, _ = evaluate_channel(current, own_reference, sla, BOOKS.thresholds.dynamic, baseline=empty)
    assert fallback.baseline_version == "canary"


def test_asr_dynamic_threshold_from_the_reference_fit() -> None:
    # reference audio: 60 requests in (0.5, 0.75] s and 40 in (0.75, 1] s; current rate twice the reference.
    buckets = [(0.35, 0.0), (0.5, 0.0), (0.75, 60.0), (1.0, 100.0), (math.inf, 100.0)]
    reference = stats(channel=Channel.AUDIO, requests=100, buckets=buckets)
    current = stats(channel=Channel.AUDIO, requests=200, p99_9=900.0)
    sla = BOOKS.thresholds.sla_for("testbed", Channel.AUDIO)  # testbed: P99.9 <= 6000 ms
    metrics, _ = evaluate_channel(current, reference, sla, BOOKS.thresholds.dynamic)
    fit = fit_gamma(histogram_to_samples(buckets), 0.999)
    assert fit is not None and metrics.reference_gamma == fit
    # μ + 3.3 σ (1 + 0.15 * 2), load_ratio = (200 / 60) / (100 / 60) = 2
    expected = fit.mean_ms + 3.3 * fit.std_ms * 1.3
    assert metrics.dynamic is not None and metrics.dynamic.kind == "asr"
    assert metrics.dynamic.threshold_ms == pytest.approx(expected)
    # the samples' mean is (60 * 625 + 40 * 875) / 100 = 725 ms, and the gamma MLE keeps the mean
    assert fit.mean_ms == pytest.approx(725.0)
    # σ ≈ 141.8 ms (the samples' own std is 142.1), so 725 + 3.3 * 141.8 * 1.3 = 725 + 608.3 = 1333.3 ms
    assert metrics.dynamic.threshold_ms == pytest.approx(1333.3, abs=1.0)
    assert metrics.breaches == []  # 900 ms is under it
    slow = current.model_copy(update={"latency_ms": {"p99.9": 1500.0}})
    metrics, findings = evaluate_channel(
        slow, reference, sla, BOOKS.thresholds.dynamic, BOOKS.priority_matrix
    )
    assert metrics.breaches == ["latency_dynamic"]  # over 1333 ms, under the testbed's 6000 ms SLA
    assert findings[0].component == "audio_processor"
    assert "p99.9 1500 ms > dynamic 1333 ms = 725.0 + 3.3·141.8·(1 + 0.15·2.00) ms" in findings[0].evidence


def test_slow_requests_from_the_cumulative_buckets_by_hand() -> None:
    # 100 requests: 50 <= 0.1 s, 30 in (0.1, 0.2], 15 in (0.2, 0.35], 5 above 0.35 s
    buckets = [(0.1, 50.0), (0.2, 80.0), (0.35, 95.0), (math.inf, 100.0)]
    assert requests_slower_than(buckets, 200) == 20.0  # the SLA latency is a bucket bound: exact
    assert requests_slower_than(buckets, 350) == 5.0
    # between bounds: the largest bound at or below gives an upper bound (0.35 s: 5; 0.1 s: 50)
    assert requests_slower_than(buckets, 6000) == 5.0
    assert requests_slower_than(buckets, 150) == 50.0
    assert requests_slower_than(buckets, 50) is None  # no bound at or below 50 ms: cannot tell
    assert requests_slower_than([], 200) is None
    # any order; without an +Inf bucket the largest count is the total; extrapolation noise clipped
    assert requests_slower_than([(0.35, 95.0), (0.2, 80.0)], 200) == 15.0
    assert requests_slower_than([(0.2, 100.4), (math.inf, 100.0)], 200) == 0.0

    sla = BOOKS.thresholds.sla_for("testbed", Channel.TEXT)  # P99.99 <= 200 ms
    current = stats(channel=Channel.TEXT, requests=100, buckets=buckets)
    reference = stats(channel=Channel.TEXT, requests=40, buckets=[(0.2, 39.0), (math.inf, 40.0)])
    metrics, _ = evaluate_channel(current, reference, sla, BOOKS.thresholds.dynamic)
    assert (metrics.slow_requests, metrics.reference_slow_requests) == (20.0, 1.0)
    stored = json.loads(json.dumps(metrics.model_dump(mode="json")))
    assert (stored["slow_requests"], stored["reference_slow_requests"]) == (20.0, 1.0)
    no_histogram, _ = evaluate_channel(
        stats(channel=Channel.TEXT), stats(channel=Channel.TEXT), sla, BOOKS.thresholds.dynamic
    )
    assert no_histogram.slow_requests is None and no_histogram.reference_slow_requests is None


def test_error_findings_5xx_versus_4xx() -> None:
    sla = BOOKS.thresholds.sla_for("testbed", Channel.TEXT)
    # 30 errors of 1000 = 3 % > 1 %, of which 20 are 5xx = 2 % > 1 %: a 5xx burst (matrix: high)
    _, findings = evaluate_channel(
        stats(requests=1000, errors=30, errors_5xx=20),
        stats(),
        sla,
        BOOKS.thresholds.dynamic,
        BOOKS.priority_matrix,
    )
    [finding] = findings
    assert (finding.problem, finding.severity) == ("http_5xx_burst", Severity.HIGH)
    assert "error rate 3.00% > SLA 1.00% over 60 s (30 of 1000 requests, 5xx 2.00%)" in finding.evidence
    # 30 errors, 5 of them 5xx = 0.5 % <= 1 %: client errors, a check-specific medium finding
    _, findings = evaluate_channel(
        stats(requests=1000, errors=30, errors_5xx=5),
        stats(),
        sla,
        BOOKS.thresholds.dynamic,
        BOOKS.priority_matrix,
    )
    assert [(f.problem, f.severity) for f in findings] == [("error_rate_breach", Severity.MEDIUM)]


def test_no_traffic_no_findings() -> None:
    sla = BOOKS.thresholds.sla_for("testbed", Channel.TEXT)
    metrics, findings = evaluate_channel(stats(requests=0), stats(requests=0), sla, BOOKS.thresholds.dynamic)
    assert findings == [] and metrics.breaches == [] and metrics.gamma is None


def test_status_rule() -> None:
    ok_gate = combine_gates(GATES, [evaluate_channel_gate(GATES, Channel.TEXT, stats(p99=1), stats(p99=1))])
    bad_gate = combine_gates(
        GATES, [evaluate_channel_gate(GATES, Channel.TEXT, stats(p99=2e3), stats(p99=2e3))]
    )
    sla = BOOKS.thresholds.sla_for("testbed", Channel.TEXT)
    _, medium = evaluate_channel(
        stats(p99_99=900.0), stats(), sla, BOOKS.thresholds.dynamic, BOOKS.priority_matrix
    )
    assert decide_status([], ok_gate) is Status.OK
    assert decide_status(medium, ok_gate) is Status.DEGRADED
    assert decide_status([], bad_gate) is Status.FAILED


# --- the whole check over a fake reader ---------------------------------------------------------------


class FakeReader:
    """Answers the check's PromQL from a table: (metric fragment, version, channel) -> value."""

    def __init__(self, table: dict[tuple[str, str, str], float]) -> None:
        self.table = table
        self.queries: list[str] = []

    def query(self, promql: str, at: datetime) -> list[Sample]:
        self.queries.append(promql)
        out = []
        for (fragment, version, channel), value in self.table.items():
            if re.search(fragment, promql):
                out.append(Sample({"version": version, "channel": channel}, value))
        return out


def test_no_data_for_the_target_is_insufficient_evidence() -> None:
    result = check_metrics_sla(
        FakeReader({}),
        BOOKS.targets.get("testbed"),
        BOOKS.thresholds,
        BOOKS.priority_matrix,
        window_end=END,
        window_s=300,
    )
    assert result.status is Status.INSUFFICIENT_EVIDENCE
    assert result.summary.startswith("testbed: no requests in the 300 s window ending 2025-01-01T12:00:00")
    assert result.gate.verdict is GateVerdict.INSUFFICIENT_EVIDENCE
    assert len(result.channels) == 8  # 2 versions x 4 channels, all zero


def test_the_whole_check_over_constant_answers() -> None:
    # The same numbers for every window: stable text fine, canary text with 5xx and slow.
    req = re.escape('increase(testbed_requests_total{job="testbed",version=~"canary|stable"}[')
    table = {
        (req, "stable", "text"): 600.0,
        (req, "canary", "text"): 120.0,
        (r'code=~"5\.\."', "canary", "text"): 12.0,
        (r"testbed_request_errors_total", "canary", "text"): 12.0,
        (r"histogram_quantile\(0\.99,", "stable", "text"): 0.05,
        (r"histogram_quantile\(0\.99,", "canary", "text"): 2.5,
        (r"histogram_quantile\(0\.9999,", "stable", "text"): 0.09,
        (r"histogram_quantile\(0\.9999,", "canary", "text"): math.nan,  # no data, not a number
    }
    reader = FakeReader(table)
    result = check_metrics_sla(
        reader,
        BOOKS.targets.get("testbed"),
        BOOKS.thresholds,
        BOOKS.priority_matrix,
        window_end=END,
        window_s=300,
    )
    assert result.status is Status.FAILED
    assert result.gate.verdict is GateVerdict.BREACH
    summary = result.gate_summary()
    assert summary.breaches == [
        "text p99_latency_ms 2500 ms > 1200 ms",
        "text rate_5xx 10.00% > 0.50%",
        "text error_rate 10.00% > 5.00%",
    ]
    canary_text = result.channel("canary", Channel.TEXT)
    assert canary_text is not None
    assert canary_text.current.rate_rps == pytest.approx(0.4)  # 120 / 300
    assert canary_text.current.latency(0.9999) is None
    assert canary_text.current.rate_5xx == pytest.approx(0.1)  # 12 / 120
    assert [f.problem for f in result.findings][:3] == ["canary_gate_breach"] * 3
    assert "http_5xx_burst" in [f.problem for f in result.findings]
    assert result.summary.startswith("testbed: canary gate breach (text p99_latency_ms")
    # the testbed's gates: trailing 60 s and its recent half
    assert any("[60s]" in q for q in reader.queries) and any("[30s]" in q for q in reader.queries)
    dumped = json.loads(json.dumps(result.model_dump(mode="json")))
    assert dumped["gate"]["verdict"] == "breach"
    assert dumped["status"] == "failed"
    # the stored result reads back as its model (its derived figures are recomputed, not refused)
    again = MetricsSlaResult.model_validate(dumped)
    assert again.model_dump(mode="json") == dumped
