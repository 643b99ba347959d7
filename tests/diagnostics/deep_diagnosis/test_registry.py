"""The check registry: a new phase-2 check is a module plus a line in runbooks/sop.yaml, never a DAG change;
phase 1 registers with the same registry."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from diagnostics.checks.registry import (
    CheckNotFound,
    CheckSpec,
    register,
    registered,
    resolve,
    unregister,
)
from diagnostics.deep_diagnosis.base import DeepContext, VersionOutcome
from diagnostics.incident.results import Status
from diagnostics.runbooks import load_runbooks
from tests.conftest import REPO

SOP_CHECKS = [
    "clip_consistency",
    "embedding_alignment",
    "asr_check",
    "temporal_alignment",
    "alignment_quality",
    "router_dispatch",
    "drift",
]


class VideoThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_frame_drop: float = 0.1


class VideoMeasurement(BaseModel):
    frames: int


def _measure(ctx: DeepContext, version: str, th: VideoThresholds) -> VideoMeasurement:
    return VideoMeasurement(frames=24)


def _judge(
    ctx: DeepContext, version: str, m: VideoMeasurement, base: VideoMeasurement | None, th: VideoThresholds
) -> VersionOutcome:
    return VersionOutcome(version=version, status=Status.OK, summary=f"{m.frames} frames")


@pytest.fixture
def video_check() -> Iterator[CheckSpec[VideoThresholds, VideoMeasurement]]:
    spec = register(
        CheckSpec(
            name="video_consistency",
            modality="video",
            inputs=("service", "golden.video", "reference.clip"),
            thresholds=VideoThresholds,
            measurement=VideoMeasurement,
            measure=_measure,
            judge=_judge,
            gpu=True,
        )
    )
    yield spec
    unregister("video_consistency")


@pytest.fixture
def runbooks_with(tmp_path: Path) -> Path:
    books = tmp_path / "runbooks"
    shutil.copytree(REPO / "runbooks", books)
    return books


def test_every_check_in_sop_yaml_resolves_to_a_registered_spec() -> None:
    books = load_runbooks()
    assert books.sop.phase("deep_diagnosis").checks == SOP_CHECKS
    for name in SOP_CHECKS:
        spec = resolve(name)
        assert spec.name == name and spec.phase == "deep_diagnosis"
        assert spec.measure is not None and spec.judge is not None and spec.inputs
        spec.thresholds_from(books)  # defaults validate
    assert set(SOP_CHECKS) <= set(registered())
    gpu = {n for n in SOP_CHECKS if resolve(n).gpu}
    assert gpu == {"clip_consistency", "embedding_alignment", "asr_check", "temporal_alignment"}


def test_an_unknown_check_names_the_module_to_add() -> None:
    with pytest.raises(CheckNotFound, match=r"add a module diagnostics\.deep_diagnosis\.no_such_check"):
        resolve("no_such_check")


def test_registering_a_different_check_under_a_taken_name_fails(video_check: CheckSpec) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match="registered twice"):
        register(CheckSpec(name="video_consistency", measure=lambda c, v, t: t, judge=_judge))  # type: ignore[arg-type,return-value]


def test_bad_thresholds_name_the_runbook_field(runbooks_with: Path) -> None:
    text = (runbooks_with / "thresholds.yaml").read_text()
    (runbooks_with / "thresholds.yaml").write_text(text + "deep:\n  clip_consistency: {min_margin: lots}\n")
    books = load_runbooks(runbooks_with)
    with pytest.raises(ValueError, match=r"thresholds.yaml: deep\.clip_consistency\.min_margin"):
        resolve("clip_consistency").thresholds_from(books)
    (runbooks_with / "thresholds.yaml").write_text(text + "deep:\n  asr_check: {max_error_rate: 0.4}\n")
    th = resolve("asr_check").thresholds_from(load_runbooks(runbooks_with))
    assert th.max_error_rate == 0.4 and th.max_mean_error_rate == 0.15  # type: ignore[attr-defined]


def test_a_registered_check_listed_in_sop_yaml_is_scheduled_by_the_dag(
    video_check: CheckSpec,  # type: ignore[type-arg]
    runbooks_with: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    sop = runbooks_with / "sop.yaml"
    sop.write_text(
        sop.read_text().replace("router_dispatch, drift]", "router_dispatch, drift, video_consistency]")
    )
    monkeypatch.setenv("TRIAGE24_RUNBOOKS_DIR", str(runbooks_with))
    bag = DagBag(dag_folder=str(REPO / "dags" / "incident_response.py"))
    assert bag.import_errors == {}
    dag = bag.dags["incident_response"]
    task = dag.get_task("deep_diagnosis.video_consistency")
    assert task.upstream_task_ids == {"fast_path.verify_now", "fast_path.no_fast_path"}  # after the fast path
    assert "deep_diagnosis.deep_summary" in task.downstream_task_ids
    deep = sorted(t.task_id for t in dag.tasks if t.task_id.startswith("deep_diagnosis."))
    assert deep == sorted(f"deep_diagnosis.{n}" for n in [*SOP_CHECKS, "video_consistency", "deep_summary"])


def test_the_incident_dag_has_a_deadline_alert_per_sop_deadline() -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags" / "incident_response.py")).dags["incident_response"]
    deadlines = {d.name: d for d in dag.deadline}
    assert set(deadlines) == {
        "golden_window_deadline",
        "deep_diagnosis_deadline",
        "verified_delivery_deadline",
    }
    assert [d.interval.total_seconds() / 3600 for d in deadlines.values()] == [2, 12, 24]
    assert all(
        d.callback.path == "diagnostics.verified_delivery.deadlines.deadline_missed"
        for d in deadlines.values()
    )
    groups = {t.task_id.split(".")[0] for t in dag.tasks if "." in t.task_id}
    assert groups == {
        "golden_window",
        "fast_path",
        "deep_diagnosis",
        "decision",
        "response",
        "verified_delivery",
    }


def test_the_trigger_form_offers_targets_and_the_phase2_checks() -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags" / "incident_response.py")).dags["incident_response"]
    params = dag.params
    checks = params.get_param("deep_checks")
    assert checks.value == SOP_CHECKS and checks.schema["items"]["enum"] == SOP_CHECKS
    assert checks.schema["title"] and checks.description
    assert params.get_param("target").schema["examples"] == ["testbed"]
    for name in ("target", "window_minutes", "dry_run", "deep_checks"):
        assert params.get_param(name).schema.get("title"), name


def test_phase_1_checks_register_with_the_same_registry_as_phase_2() -> None:
    from diagnostics.checks.registry import checks_of_phase, registered
    from diagnostics.golden_window.phase import PHASE_CHECKS

    books = load_runbooks()
    phase1 = checks_of_phase(books, "golden_window")
    assert [s.name for s in phase1] == books.sop.phase("golden_window").checks
    assert all(s.run is not None and s.measure is None for s in phase1)
    assert set(registered("golden_window")) == set(PHASE_CHECKS)
    # one name space: a name belongs to one phase
    assert not set(registered("golden_window")) & set(registered("deep_diagnosis"))
