"""Test session setup.

Airflow reads its configuration when first imported, so the isolated Airflow home (a temp dir with
its own SQLite DB) is set here, at conftest import, before any test module imports airflow.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from diagnostics.config import Settings

REPO = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="triage24-test-airflow-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
)

# Airflow puts the DAG bundle's folder on sys.path (the DAG files import their adapter package from
# it); tests that load a DagBag from a path do the same.
if str(REPO / "dags") not in sys.path:
    sys.path.append(str(REPO / "dags"))

ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:
    """A fresh Airflow metadata DB, reset once per pytest session (only for tests that need it)."""
    from airflow.utils.db import resetdb

    resetdb()
    yield _AIRFLOW_HOME


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


from tests.support.testbed_procs import testbed_stack  # noqa: E402,F401 - shared session fixture


def stack_settings(home: Path, repo_root: Path = REPO, **overrides: object) -> Settings:
    """Settings for a throw-away stack: its own home and free ports, so tests never collide."""
    from diagnostics.config import Settings

    names = ("airflow", "prometheus", "alertmanager", "testbed_stable", "testbed_canary", "testbed_gateway")
    ports = {f"{name}_port": free_port() for name in names}
    return Settings(home=home, repo_root=repo_root, **{**ports, **overrides})  # type: ignore[arg-type]


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # CI must not pass while running no test (e.g. everything skipped or deselected by mistake).
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and exitstatus == 0 and not reporter.stats.get("passed"):
        session.exitstatus = 1
