"""Phase summary ranking, the artifact store, and the phase-1 registry against sop.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics.golden_window.phase import PHASE, PHASE_CHECKS
from diagnostics.incident.results import CheckResult, Finding, Status
from diagnostics.incident.store import ArtifactError, read_result, result_path, write_result
from diagnostics.incident.summary import summarize
from diagnostics.runbooks import load_runbooks


def finding(check: str, severity: str, component: str, version: str | None = "canary") -> Finding:
    return Finding(
        check=check,
        problem=f"{component}_problem",
        severity=severity,  # type: ignore[arg-type]
        component=component,
        title="t",
        evidence="e",
        action=f"fix {component}",
        version=version,
    )


def result(check: str, status: Status, *findings: Finding) -> CheckResult:
    return CheckResult(check=check, status=status, summary=f"{check} {status.value}", findings=list(findings))


def test_findings_are_ranked_by_severity_and_the_worst_names_the_suspect() -> None:
    summary = summarize(
        "golden_window",
        [
            result("logs", Status.DEGRADED, finding("logs", "medium", "llm")),
            result("metrics", Status.FAILED, finding("metrics", "critical", "embedding")),
            result("health", Status.FAILED, finding("health", "high", "embedding", "stable")),
        ],
        gate={"verdict": "breach"},
    )
    assert [f.severity for f in summary.findings] == ["critical", "high", "medium"]
    assert summary.status == Status.FAILED
    assert (summary.suspected_component, summary.suspected_version) == ("embedding", "canary")
    assert summary.top_action == "fix embedding"
    assert summary.summary == "3 finding(s); most severe: critical embedding_problem on embedding (canary)"
    brief = summary.brief()
    assert brief["gate"] == {"verdict": "breach"} and len(brief["findings"]) == 3
    assert len(json.dumps(brief)) < 4000  # XCom-sized


def test_ties_go_to_the_component_most_findings_name() -> None:
    summary = summarize(
        "p",
        [
            result(
                "a",
                Status.FAILED,
                finding("a", "critical", "llm"),
                finding("a", "critical", "audio_processor"),
            ),
            result("b", Status.FAILED, finding("b", "critical", "audio_processor")),
        ],
    )
    assert summary.suspected_component == "audio_processor"


def test_among_equally_severe_findings_the_earlier_check_of_the_phase_leads() -> None:
    # Phase 2 on a misaligned canary: CLIP consistency, alignment quality and drift all fail at high;
    # the SOP's order (the direct measurement first) makes the CLIP finding the lead, not the alphabet.
    results = [
        result("alignment_quality", Status.FAILED, finding("alignment_quality", "high", "embedding")),
        result("clip_consistency", Status.FAILED, finding("clip_consistency", "high", "embedding")),
        result("drift", Status.FAILED, finding("drift", "high", "embedding")),
    ]
    by_name = summarize("deep_diagnosis", results)
    assert by_name.findings[0].check == "alignment_quality"
    ordered = summarize(
        "deep_diagnosis", results, check_order=["clip_consistency", "alignment_quality", "drift"]
    )
    assert [f.check for f in ordered.findings] == ["clip_consistency", "alignment_quality", "drift"]
    assert ordered.top_action == "fix embedding" and ordered.summary.endswith(
        "embedding_problem on embedding (canary)"
    )
    severe = [*results, result("asr", Status.FAILED, finding("asr", "critical", "audio_processor"))]
    assert (
        summarize("p", severe, check_order=["clip_consistency"]).findings[0].check == "asr"
    )  # severity first


def test_missing_evidence_never_counts_as_a_pass() -> None:
    summary = summarize(
        "p", [result("a", Status.INSUFFICIENT_EVIDENCE), result("b", Status.INSUFFICIENT_EVIDENCE)]
    )
    assert summary.status == Status.INSUFFICIENT_EVIDENCE
    assert summary.summary == "no check produced evidence; insufficient evidence from a, b"
    mixed = summarize("p", [result("a", Status.OK), result("b", Status.INSUFFICIENT_EVIDENCE)])
    assert mixed.status == Status.OK
    assert mixed.summary == "no findings; insufficient evidence from b"


def test_results_round_trip_through_the_artifact_root(tmp_path: Path) -> None:
    r = result("health_snapshot", Status.DEGRADED, finding("health_snapshot", "medium", "llm"))
    path = write_result(tmp_path, "incident__t__" + "a" * 24, "golden_window", "health_snapshot", r)
    assert path == tmp_path / ("incident__t__" + "a" * 24) / "golden_window" / "health_snapshot.json"
    assert read_result(
        tmp_path, "incident__t__" + "a" * 24, "golden_window", "health_snapshot"
    ) == r.model_dump(mode="json")
    assert [p.name for p in path.parent.iterdir()] == ["health_snapshot.json"]  # no temp file left behind


@pytest.mark.parametrize("bad", ["..", "../x", "a/b", "", "x" * 251])
def test_ids_that_could_escape_the_root_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ArtifactError, match="cannot be a path segment"):
        result_path(tmp_path, bad, "golden_window", "c")


def test_reading_a_missing_result_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no result of metrics_sla for r1/golden_window"):
        read_result(tmp_path, "r1", "golden_window", "metrics_sla")


def test_the_phase_1_registry_matches_the_sop() -> None:
    assert list(PHASE_CHECKS) == load_runbooks().sop.phase(PHASE).checks
    assert all(fn.__doc__ for fn in PHASE_CHECKS.values()), "each check's doc is its task doc in the UI"
