"""The decision's inputs from stored phase-1 results, and clear errors for malformed ones."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

import pytest

from diagnostics.decision import Outcome, decide, inputs_from_results
from diagnostics.deep_diagnosis.phase import phase2_evidence
from diagnostics.golden_window.metrics_sla import MetricsSlaResult, evaluate_channel
from diagnostics.incident.model import incident_from_conf
from diagnostics.incident.results import CheckResult, Finding, Status
from diagnostics.incident.summary import summarize
from diagnostics.runbooks.schemas import Channel, Severity
from tests.diagnostics.decision.builders import BOOKS, END, PHASE2_CHECKS, POLICY, gate_result, window

TARGET = BOOKS.targets.get("testbed")


def buckets(total: float, slow: float) -> list[tuple[float, float]]:
    """Cumulative buckets with ``slow`` requests above 0.2 s (the text/image SLA latency)."""
    return [(0.1, (total - slow) * 0.8), (0.2, total - slow), (0.35, total - slow * 0.5), (math.inf, total)]


def metrics_sla(canary_errors: float = 30, canary_slow: float = 15) -> dict[str, Any]:
    """A stored metrics_sla result: text and image, stable and canary, with histogram buckets."""
    channels = []
    for ch in (Channel.TEXT, Channel.IMAGE):
        sla = BOOKS.thresholds.sla_for("testbed", ch)
        for version, n, err, slow in (
            ("stable", 60000, 600, 300),
            ("canary", 3000, canary_errors, canary_slow),
        ):
            current = window(n, err, version=version, ch=ch).model_copy(update={"buckets": buckets(n, slow)})
            reference = window(n, err, version=version, ch=ch).model_copy(
                update={"buckets": buckets(n, slow)}
            )
            metrics, _ = evaluate_channel(current, reference, sla, BOOKS.thresholds.dynamic)
            channels.append(metrics)
    result = MetricsSlaResult(
        check="metrics_sla",
        status=Status.OK,
        summary="testbed: canary gate pass; within SLA; 126000 requests in 900 s",
        target="testbed",
        window_end=END,
        window_s=900,
        reference_s=900,
        channels=channels,
        gate=gate_result(),
    )
    return json.loads(json.dumps(result.model_dump(mode="json")))


def phase_summary(*findings: Finding) -> dict[str, Any]:
    results = [
        CheckResult(
            check=name,
            status=Status.OK,
            summary="ok",
            findings=list(findings) if name == "model_integrity" else [],
        )
        for name in ("health_snapshot", "model_integrity", "metrics_sla", "log_classification")
    ]
    return json.loads(json.dumps(summarize("golden_window", results).model_dump(mode="json")))


def incident(**conf: Any) -> dict[str, Any]:
    return incident_from_conf("manual__2026-01-01T12:00:00", {"target": "testbed", **conf}, now=END).summary()


def stored_phase2(**changes: dict[str, Any] | None) -> dict[str, Any]:
    """deep_diagnosis/evidence.json from stored phase-2 results: every sop.yaml check ok on both
    versions (with the figures each check's comparison reads), an hour after phase 1; ``name=result``
    replaces one, ``name=None`` leaves it out."""
    figures: dict[str, dict[str, Any]] = {
        "router_dispatch": {"misrouted": 0, "answered": 80},
        "clip_consistency": {"margin": 0.93, "samples": 64, "broken_samples": []},
        "asr_check": {"mean_error_rate": 0.09, "clips": 11, "failing_clips": []},
        "drift": {"levels": {"text": 0, "image": 0}},
    }
    results: dict[str, dict[str, Any] | None] = {
        name: {
            "check": name,
            "status": "ok",
            "versions": {
                v: {"status": "ok", "figures": figures.get(name, {"n": 1})} for v in ("stable", "canary")
            },
        }
        for name in PHASE2_CHECKS
    }
    results.update(changes)
    return phase2_evidence(results, measured_at=END + timedelta(hours=1))


def test_stored_results_become_inputs_with_every_count() -> None:
    inputs = inputs_from_results(
        incident(), metrics_sla(), phase_summary(), stored_phase2(), canary_weight_percent=2, target=TARGET
    )
    assert (inputs.incident_id, inputs.target, inputs.grade, inputs.dry_run) == (
        "manual__2026-01-01T12:00:00",
        "testbed",
        None,
        False,
    )
    assert (inputs.rollback_method, inputs.rollback_sensitive, inputs.canary_weight_percent) == (
        "gateway_weight",
        False,
        2,
    )
    assert inputs.metrics_status is Status.OK and inputs.gate is not None and inputs.phase2 is not None
    assert (inputs.analysed_at, inputs.suspected_version) == (END, None)
    text = next(c for c in inputs.channels if c.channel is Channel.TEXT)
    # slow requests come from the buckets: total - cumulative(le 0.2 s)
    assert (text.canary.requests, text.canary.errors, text.canary.slow_requests) == (3000, 30, 15)
    assert (text.stable.requests, text.stable.slow_requests) == (60000, 300)
    assert (
        text.stable_reference.requests,
        text.stable_reference.errors,
        text.stable_reference.slow_requests,
    ) == (
        60000,
        600,
        300,
    )
    assert [c.channel for c in inputs.channels] == [Channel.TEXT, Channel.IMAGE]
    assert set(inputs.phase1.checks) == {
        "health_snapshot",
        "model_integrity",
        "metrics_sla",
        "log_classification",
    }  # type: ignore[union-attr]
    d = decide(inputs, POLICY)
    assert d.outcome is Outcome.CONTINUE and d.promote_to == 15
    # the fast path's decision, before phase 2: it can roll back, never continue
    fast = decide(inputs.model_copy(update={"phase2": None}), POLICY)
    assert (fast.outcome, fast.promote_to) == (Outcome.INSUFFICIENT_EVIDENCE, None)


def test_a_canary_model_mismatch_in_the_stored_summary_rolls_back() -> None:
    problem = BOOKS.priority_matrix.get("model_not_loaded")
    assert problem is not None
    bad = Finding.from_problem(
        problem,
        "model_integrity",
        "canary clip-shapes (embedding): sha256 1234… ≠ pinned 9bda…",
        version="canary",
    )
    inputs = inputs_from_results(incident(), metrics_sla(), phase_summary(bad), None, target=TARGET)
    assert inputs.phase1 is not None and inputs.phase1.findings[0].severity is Severity.CRITICAL
    d = decide(inputs, POLICY)
    assert (d.outcome, d.rule) == (Outcome.ROLLBACK, "critical_canary_finding")


def test_an_intake_incident_carries_its_grade() -> None:
    conf = {
        "schema": "triage24.intake/v1",
        "target": "testbed",
        "grade": "L4",
        "alerts": [{"status": "firing", "starts_at": "2026-01-01T11:50:00Z", "labels": {"alertname": "X"}}],
    }
    inputs = inputs_from_results(incident(**conf), metrics_sla(), phase_summary(), None)
    assert inputs.grade is not None and inputs.grade.value == "L4"
    assert POLICY.human_gate_for(inputs.grade.value).choice.value == "rollback"


def test_missing_results_are_missing_evidence_not_errors() -> None:
    inputs = inputs_from_results(incident(), None, None, None)
    assert (
        inputs.metrics_status is None
        and inputs.gate is None
        and inputs.channels == []
        and inputs.phase1 is None
    )
    d = decide(inputs, POLICY)
    assert d.outcome is Outcome.INSUFFICIENT_EVIDENCE and d.needs_human
    assert "no metrics_sla result" in d.reasons and "no phase-1 summary" in d.reasons


def _drift(canary: dict[str, int], stable: dict[str, int]) -> dict[str, Any]:
    return {
        "check": "drift",
        "status": "failed",
        "versions": {
            "canary": {"status": "failed" if 2 in canary.values() else "ok", "figures": {"levels": canary}},
            "stable": {"status": "failed" if 2 in stable.values() else "ok", "figures": {"levels": stable}},
        },
    }


def test_phase2_evidence_is_read_with_both_versions() -> None:
    own = stored_phase2(drift=_drift({"image": 2, "text": 0}, {"image": 0, "text": 0}))
    inputs = inputs_from_results(incident(), metrics_sla(), phase_summary(), own)
    assert inputs.phase2 is not None and inputs.phase2.drift == {Channel.IMAGE: 2, Channel.TEXT: 0}
    assert inputs.phase2.stable_drift == {Channel.IMAGE: 0, Channel.TEXT: 0}
    drift = inputs.phase2.checks["drift"]
    assert (drift.canary, drift.stable, drift.canary_worse) == (Status.FAILED, Status.OK, True)
    assert drift.measure == "drift level canary vs stable: image 2 vs 0, text 0 vs 0"
    d = decide(inputs, POLICY)
    assert (d.rule, d.reasons[0]) == ("phase2_evidence", "drift level 2 >= 2 on canary image, stable level 0")
    # the same drift on stable, and the incident names stable: a shared cause, a human decides
    both = stored_phase2(drift=_drift({"image": 2, "text": 0}, {"image": 2, "text": 0}))
    stored = incident_from_conf("manual__x", {"target": "testbed", "version": "stable"}, now=END)
    on_stable = inputs_from_results(stored.model_dump(mode="json"), metrics_sla(), phase_summary(), both)
    assert (on_stable.suspected_version, on_stable.analysed_at) == ("stable", END)
    shared = decide(on_stable, POLICY)
    assert (shared.outcome, shared.needs_human) == (Outcome.INSUFFICIENT_EVIDENCE, True)
    assert shared.reasons[0].endswith("not the canary; the incident names stable as the suspect")


def test_a_crashed_or_absent_phase2_check_is_named_never_passed() -> None:
    crashed = {
        "check": "router_dispatch",
        "status": "insufficient_evidence",
        "summary": "check crashed: KeyError: 'route'",
        "details": {"crashed": True},
    }
    ev = stored_phase2(router_dispatch=crashed, clip_consistency=None)
    assert ev["checks"]["router_dispatch"] == {
        "canary": "insufficient_evidence",
        "stable": None,
        "crashed": True,
        "canary_worse": None,
        "measure": "check crashed: KeyError: 'route'",
    }
    assert "clip_consistency" not in ev["checks"] and "clip_consistency" not in ev["consistency"]
    d = decide(inputs_from_results(incident(), metrics_sla(), phase_summary(), ev), POLICY)
    assert (d.outcome, d.promote_to) == (Outcome.INSUFFICIENT_EVIDENCE, None)
    assert "required phase-2 check clip_consistency has no result ('continue')" in d.reasons
    assert (
        "required phase-2 check router_dispatch crashed ('continue'): check crashed: KeyError: 'route'"
        in d.reasons
    )


def test_without_slow_counts_the_latency_risk_has_no_verdict() -> None:
    stored = metrics_sla()
    for c in stored["channels"]:
        c.pop("slow_requests")
        c.pop("reference_slow_requests")
    d = decide(inputs_from_results(incident(), stored, phase_summary(), None), POLICY)
    assert d.outcome is Outcome.INSUFFICIENT_EVIDENCE


def _broken(path: str, value: object) -> dict[str, Any]:
    stored = metrics_sla()
    node: Any = stored
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return stored


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "channels.0.current.requests",
            "lots",
            "metrics_sla.channels.0.current.requests: Input should be a valid number",
        ),
        (
            "channels.1.current.errors",
            -3,
            "metrics_sla.channels.1.current.errors: Input should be greater than or equal to 0",
        ),
        (
            "channels.0.channel",
            "video",
            "metrics_sla.channels.0.channel: Input should be 'text', 'image', 'audio' or 'router'",
        ),
        ("gate", KeyError, "metrics_sla.gate: Field required"),
        (
            "gate.verdict",
            "maybe",
            "metrics_sla.gate.verdict: Input should be 'breach', 'pass' or 'insufficient_evidence'",
        ),
        ("status", KeyError, "metrics_sla.status: Field required"),
    ],
)
def test_a_malformed_metrics_result_names_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        inputs_from_results(incident(), _broken(field, value), phase_summary(), None)
    assert str(info.value).startswith(message), str(info.value)


def test_malformed_incident_summary_and_phase2_name_the_field() -> None:
    inc = incident()
    with pytest.raises(ValueError, match=r"^incident\.target: Field required"):
        inputs_from_results({k: v for k, v in inc.items() if k != "target"}, None, None)
    with pytest.raises(
        ValueError, match=r"^incident\.grade: Input should be 'L1', 'L2', 'L3' or 'L4' \(got 'L9'\)"
    ):
        inputs_from_results({**inc, "grade": "L9"}, None, None)
    with pytest.raises(
        ValueError, match=r"^incident\.dry_run: Input should be a valid boolean \(got 'yes'\)"
    ):
        inputs_from_results({**inc, "dry_run": "yes"}, None, None)
    with pytest.raises(ValueError, match=r"^phase_summary\.checks: Field required"):
        inputs_from_results(inc, None, {"status": "ok"})
    with pytest.raises(ValueError, match=r"^phase_summary\.findings\.0\.severity: Input should be"):
        inputs_from_results(inc, None, {"status": "ok", "checks": {}, "findings": [{"severity": "awful"}]})
    with pytest.raises(ValueError, match=r"^phase2\.drift\.image: Input should be 0, 1 or 2"):
        inputs_from_results(inc, None, None, {"drift": {"image": 3}})
    with pytest.raises(ValueError, match=r"^metrics_sla: expected a JSON object, got list"):
        inputs_from_results(inc, [], None)  # type: ignore[arg-type]
    other = TARGET.model_copy(update={"name": "elsewhere"})
    with pytest.raises(ValueError, match=r"^target: 'elsewhere' is not the incident's target 'testbed'"):
        inputs_from_results(inc, None, None, target=other)
