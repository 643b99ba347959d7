"""Every file in dags/ imports cleanly and every DAG follows the project's conventions."""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_every_dag_file_imports_without_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    files = sorted(p.name for p in DAGS.glob("*.py") if not p.name.startswith("_"))
    assert files, "dags/ holds no DAG file"
    loaded = {Path(d.fileloc).name for d in dagbag.dags.values()}
    assert set(files) <= loaded, f"files that define no DAG: {set(files) - loaded}"


def test_dags_follow_conventions(dagbag) -> None:  # type: ignore[no-untyped-def]
    for dag_id, dag in dagbag.dags.items():
        assert "triage24" in dag.tags, f"{dag_id}: tag it 'triage24' so the UI can filter it"
        assert dag.catchup is False, f"{dag_id}: incidents are not backfilled; set catchup=False"
        assert dag.doc_md, f"{dag_id}: give it docs (doc_md) for the on-call engineer"
        for t in dag.tasks:
            assert t.retries >= 1, f"{dag_id}.{t.task_id}: set retries >= 1 (transient I/O is normal)"


def test_dag_integrity_check_catches_a_broken_dag_file(tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "broken.py").write_text("from airflow.sdk import dag\nimport not_a_module_xyz\n")
    bag = DagBag(dag_folder=str(tmp_path))
    assert list(bag.import_errors) == [str(tmp_path / "broken.py")]
    assert "not_a_module_xyz" in next(iter(bag.import_errors.values()))


def test_selfcheck_dag_runs_and_reports_missing_sources_as_insufficient_evidence(
    dagbag, airflow_db, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    # Point the probes at a port nobody listens on: the run must still succeed.
    from tests.conftest import free_port

    monkeypatch.setenv("TRIAGE24_PROMETHEUS_PORT", str(free_port()))
    monkeypatch.setenv("TRIAGE24_ALERTMANAGER_PORT", str(free_port()))
    dag = dagbag.dags["triage24_selfcheck"]
    run = dag.test()
    assert run.state == "success"
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert {t: ti.state for t, ti in tis.items()} == {
        "validate_runbooks": "success",
        "probe_evidence_sources": "success",
    }
    probes = tis["probe_evidence_sources"].xcom_pull(task_ids="probe_evidence_sources")
    assert [p["status"] for p in probes] == ["insufficient_evidence", "insufficient_evidence"]
    books = tis["validate_runbooks"].xcom_pull(task_ids="validate_runbooks")
    assert books["phases"][1] == "golden_window"
    assert books["targets"] == ["testbed"]


def test_no_later_phase_waits_on_the_recovery_verifications_outcome(dagbag) -> None:  # type: ignore[no-untyped-def]
    # Not recovered is a stored, paged result (the task succeeds); even a verification that errors
    # (a broken config) must not hold up phase 2's diagnosis nor phase 3's report.
    dag = dagbag.dags["incident_response"]
    after = {
        verify: {t.task_id: t.trigger_rule for t in dag.get_task(verify).downstream_list}
        for verify in ("fast_path.verify_now", "response.verify_recovery")
    }
    assert set(after["fast_path.verify_now"]) >= {"deep_diagnosis.drift", "deep_diagnosis.asr_check"}
    assert after["response.verify_recovery"] == {"verified_delivery.regression_suite": "all_done"}
    assert {rule for rules in after.values() for rule in rules.values()} == {"all_done"}
