"""Fixtures of the Airflow plugin tests: a small real DAG the intake can trigger (the incident DAG
arrives with a later issue), registered in the session's Airflow metadata DB, and the plugins folder
on sys.path as Airflow puts it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

if str(REPO / "plugins") not in sys.path:
    sys.path.append(str(REPO / "plugins"))

PROBE_DAG_ID = "triage24_intake_probe"
TEST_BUNDLE = "triage24-intake-tests"

# A real DAG standing in for the incident DAG. Its task records the conf it got and then holds the run
# open (an open incident) until the test writes $TRIAGE24_HOME/release/<run_id> or .../release/all.
PROBE_DAG = '''
"""Stand-in incident DAG of the intake tests: records its conf, holds the run open until released."""
import json, os, time
from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, get_current_context, task


@dag(dag_id="triage24_intake_probe", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
     tags=["triage24"], max_active_runs=64)
def triage24_intake_probe():
    @task(retries=0)
    def hold() -> str:
        ctx = get_current_context()
        run_id = ctx["dag_run"].run_id
        home = Path(os.environ["TRIAGE24_HOME"])
        (home / "probe").mkdir(parents=True, exist_ok=True)
        (home / "probe" / f"{run_id}.json").write_text(json.dumps(ctx["dag_run"].conf))
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if (home / "release" / run_id).exists() or (home / "release" / "all").exists():
                break
            time.sleep(0.5)
        return run_id

    hold()


triage24_intake_probe()
'''


def write_probe_dag(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "triage24_intake_probe.py"
    path.write_text(PROBE_DAG)
    return path


def register_dag_in_db(folder: Path) -> None:
    """What the dag-processor does: parse the folder and write its DAGs to the metadata DB."""
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dagbundle import DagBundleModel
    from airflow.utils.session import create_session

    with create_session() as session:
        if session.get(DagBundleModel, TEST_BUNDLE) is None:
            session.add(DagBundleModel(name=TEST_BUNDLE))
    bag = BundleDagBag(dag_folder=str(folder), bundle_path=folder, bundle_name=TEST_BUNDLE)
    assert bag.import_errors == {}, bag.import_errors
    sync_bag_to_db(bag, TEST_BUNDLE, None)


@pytest.fixture(scope="session")
def probe_dag_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("probe-dags")
    write_probe_dag(folder)
    return folder
