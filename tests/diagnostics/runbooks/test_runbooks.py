"""Runbooks load as validated data, and a malformed file fails naming file, line and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from diagnostics.cli import main
from diagnostics.runbooks import RunbookError, load_runbooks
from diagnostics.runbooks.schemas import Channel, Component

REPO_RUNBOOKS = Path(__file__).resolve().parents[3] / "runbooks"


@pytest.fixture
def books_dir(tmp_path: Path) -> Path:
    d = tmp_path / "runbooks"
    shutil.copytree(REPO_RUNBOOKS, d)
    return d


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"fixture text not found in {path.name}: {old!r}"
    path.write_text(text.replace(old, new, 1))


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_repo_runbooks_load_with_the_seed_values() -> None:
    books = load_runbooks(REPO_RUNBOOKS, environ={})
    assert [p.id for p in books.sop.phases] == [
        "intake",
        "golden_window",
        "deep_diagnosis",
        "decision",
        "verified_delivery",
    ]
    golden = books.sop.phase("golden_window")
    assert (golden.window.start_h, golden.window.end_h, golden.deadline_h) == (0, 2, 2)  # type: ignore[union-attr]
    deep = books.sop.phase("deep_diagnosis")
    assert (deep.window.start_h, deep.window.end_h) == (2, 12)  # type: ignore[union-attr]
    assert books.sop.phase("verified_delivery").deadline_h == 24

    matrix = {p.id: p for p in books.priority_matrix.problems}
    assert matrix["embedding_dim_mismatch"].first_component is Component.MULTIMODAL_ROUTER
    assert "embedding_dim" in matrix["embedding_dim_mismatch"].action
    assert matrix["audio_timeout"].first_component is Component.AUDIO_PROCESSOR
    assert "timeout_sec to at least 30" in matrix["audio_timeout"].action
    assert {"cuda_oom", "model_not_loaded", "http_5xx_burst", "latency_sla_breach"} <= set(matrix)

    t = books.thresholds
    assert t.sla[Channel.TEXT].latency.quantile == 0.9999 and t.sla[Channel.TEXT].latency.latency_ms == 200
    assert t.sla[Channel.AUDIO].latency.quantile == 0.999 and t.sla[Channel.AUDIO].latency.latency_ms == 350
    gates = t.canary_gates
    assert (gates.p99_latency_ms, gates.rate_5xx, gates.error_rate, gates.sustained_s) == (
        1200,
        0.005,
        0.05,
        300,
    )
    # The CPU testbed has its own audio targets; other targets fall back to the seed SLA.
    assert t.sla_for("testbed", Channel.AUDIO).latency.latency_ms == 6000
    assert t.sla_for("elsewhere", Channel.AUDIO).latency.latency_ms == 350
    assert t.gates_for("testbed").p99_gate_ms(Channel.AUDIO) == 6000
    assert t.gates_for("testbed").p99_gate_ms(Channel.TEXT) == 1200


def test_the_decision_policy_loads_with_the_seed_values() -> None:
    d = load_runbooks(REPO_RUNBOOKS, environ={}).decision
    assert (d.risk.risk_threshold, d.risk.error_margin, d.risk.min_requests) == (0.95, 0.005, 50)
    assert [r.id for r in d.precedence] == [
        "canary_gate_breach",
        "canary_watch_rejection",
        "critical_canary_finding",
        "bayesian_risk",
        "phase2_evidence",
        "insufficient_evidence",
        "continue",
    ]
    assert [s.percent for s in d.canary.stages] == [2, 15, 100]
    assert d.human_gate_for("L4").choice == "rollback" and d.human_gate_for("L2").choice == "hold"
    assert d.human_gate.sensitive_rollback_methods == []


def test_the_decisions_required_checks_are_golden_window_checks(books_dir: Path) -> None:
    _edit(books_dir / "decision.yaml", "metrics_sla]", "metrics_slo]")
    with pytest.raises(
        RunbookError, match=r"evidence.required_checks\[2\]: metrics_slo is not a golden_window"
    ):
        load_runbooks(books_dir, environ={})


def test_ports_in_targets_come_from_the_environment() -> None:
    default = load_runbooks(REPO_RUNBOOKS, environ={}).targets.get("testbed")
    assert str(default.versions["canary"].base_url) == "http://127.0.0.1:8102/"
    moved = load_runbooks(REPO_RUNBOOKS, environ={"TRIAGE24_TESTBED_CANARY_PORT": "9999"}).targets.get(
        "testbed"
    )
    assert str(moved.versions["canary"].base_url) == "http://127.0.0.1:9999/"


@pytest.mark.parametrize(
    ("file", "old", "new", "field", "expect", "line_of"),
    [
        (
            "thresholds.yaml",
            "rate_5xx: 0.005",
            "rate_5xx: 5",
            "canary_gates.rate_5xx",
            "less than or equal to 1",
            "rate_5xx: 5",
        ),
        (
            "thresholds.yaml",
            "p99_latency_ms: 1200      #",
            "p99_latncy_ms: 1200      #",
            "canary_gates.p99_latncy_ms",
            "unknown field",
            "p99_latncy_ms",
        ),
        (
            "thresholds.yaml",
            "correction: bh          #",
            "correction: holm        #",
            "drift.correction",
            "'bh' or 'bonferroni'",
            "correction: holm",
        ),
        (
            "priority_matrix.yaml",
            "first_component: audio_processor",
            "first_component: audio",
            "problems[1].first_component",
            "'llm', 'embedding'",
            "first_component: audio\n",
        ),
        (
            "priority_matrix.yaml",
            'keywords: ["CUDA out of memory"',
            'keywords: ["CUDA out of (memory"',
            "problems[2].keywords",
            "not a valid regular expression",
            "CUDA out of (memory",
        ),
        (
            "sop.yaml",
            "window: {start_h: 2, end_h: 12}",
            "window: {start_h: 12, end_h: 2}",
            "phases[2].window",
            "must be after start_h",
            "start_h: 12, end_h: 2",
        ),
        (
            "targets.yaml",
            "method: gateway_weight",
            "method: helm_rollback",
            "targets[0].rollback",
            "gateway_weight",
            "method: helm_rollback",
        ),
        (
            "decision.yaml",
            "risk_threshold: 0.95",
            "risk_threshold: 1.5",
            "risk.risk_threshold",
            "less than 1",
            "risk_threshold: 1.5",
        ),
        (
            "decision.yaml",
            "L4: {choice: rollback,",
            "L4: {choice: panic,",
            "human_gate.grades.L4.choice",
            "'rollback', 'hold' or 'continue'",
            "L4: {choice: panic,",
        ),
        (
            "decision.yaml",
            "sensitive_rollback_methods: []",
            "sensitive_rollback_methods: [helm]",
            "human_gate.sensitive_rollback_methods",
            "unknown rollback method(s) helm; targets.yaml knows: gateway_weight",
            "sensitive_rollback_methods: [helm]",
        ),
        (
            "decision.yaml",
            "    outcome: rollback\n  - id: critical_canary_finding",
            "    outcome: continue\n  - id: critical_canary_finding",
            "precedence",
            "a rule's outcome is fixed by what it tests: canary_watch_rejection -> rollback",
            "precedence:",
        ),
        (
            "decision.yaml",
            "  interval_s: 5\n",
            "  interval_s: 0\n",
            "verification.interval_s",
            "greater than 0",
            "interval_s: 0",
        ),
        (
            "decision.yaml",
            "- {percent: 15, max_risk: 0.05, min_requests: 10000}",
            "- {percent: 1, max_risk: 0.05, min_requests: 10000}",
            "canary.stages",
            "stages must be in increasing percent order",
            "stages:",
        ),
    ],
)
def test_malformed_runbook_names_file_line_field_and_expectation(
    books_dir: Path, file: str, old: str, new: str, field: str, expect: str, line_of: str
) -> None:
    path = books_dir / file
    _edit(path, old, new)
    with pytest.raises(RunbookError) as info:
        load_runbooks(books_dir, environ={})
    problems = [p for p in info.value.problems if p.field.startswith(field)]
    assert problems, f"no problem reported at {field}: {info.value}"
    assert any(expect in p.message for p in problems), str(info.value)
    assert problems[0].file == path
    assert problems[0].line == _line_of(path, line_of.strip()), str(info.value)


def test_yaml_syntax_error_reports_the_line(books_dir: Path) -> None:
    path = books_dir / "sop.yaml"
    lines = path.read_text().splitlines()
    lines[5] = "  - id: [unclosed"
    path.write_text("\n".join(lines))
    with pytest.raises(RunbookError) as info:
        load_runbooks(books_dir, environ={})
    (problem,) = info.value.problems
    assert problem.file == path and problem.line is not None and 6 <= problem.line <= 8
    assert "not valid YAML" in problem.message


def test_problems_in_several_files_are_reported_together(books_dir: Path) -> None:
    (books_dir / "targets.yaml").unlink()
    _edit(books_dir / "sop.yaml", "version: 1", "version: 0")
    with pytest.raises(RunbookError) as info:
        load_runbooks(books_dir, environ={})
    text = str(info.value)
    assert "targets.yaml: file not found" in text
    assert "sop.yaml:3: version: Input should be greater than or equal to 1" in text


def test_cross_references_are_checked(books_dir: Path) -> None:
    (books_dir / "cuda_oom.md").unlink()
    _edit(books_dir / "thresholds.yaml", "  testbed:\n", "  testbd:\n")
    with pytest.raises(RunbookError) as info:
        load_runbooks(books_dir, environ={})
    text = str(info.value)
    assert "problems[2].runbook: no file cuda_oom.md" in text
    assert "target_overrides.testbd: unknown target; targets.yaml defines: testbed" in text


def test_a_check_cannot_run_in_two_phases(books_dir: Path) -> None:
    _edit(books_dir / "sop.yaml", "checks: [clip_consistency,", "checks: [metrics_sla, clip_consistency,")
    with pytest.raises(RunbookError, match="a check runs in one phase only; repeated: metrics_sla"):
        load_runbooks(books_dir, environ={})


def test_unset_variable_without_default_is_named(books_dir: Path) -> None:
    _edit(books_dir / "targets.yaml", "${TRIAGE24_TESTBED_STABLE_PORT:-8101}", "${TESTBED_PORT_NOT_SET}")
    with pytest.raises(RunbookError, match="TESTBED_PORT_NOT_SET is not set and has no default"):
        load_runbooks(books_dir, environ={})


def test_cli_validate_exit_codes(books_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runbooks", "validate", "--dir", str(books_dir)]) == 0
    out = capsys.readouterr().out
    assert "8 problem types" in out and "7 decision rules" in out and "decision.yaml" in out
    _edit(books_dir / "thresholds.yaml", "error_rate: 0.05", "error_rate: lots")
    assert main(["runbooks", "validate", "--dir", str(books_dir)]) == 1
    out = capsys.readouterr().err
    assert (
        f"{books_dir / 'thresholds.yaml'}:{_line_of(books_dir / 'thresholds.yaml', 'error_rate: lots')}"
        in out
    )
    assert "canary_gates.error_rate" in out
