from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from diagnostics.logs import LogQuery
from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.schemas import PriorityMatrix
from tests.diagnostics.logs.testbed_logs import T0, Testbed


@pytest.fixture(scope="session")
def matrix() -> PriorityMatrix:
    return load_runbooks().priority_matrix


@pytest.fixture
def testbed(tmp_path: Path) -> Iterator[Testbed]:
    tb = Testbed(tmp_path / "logs")
    yield tb
    tb.close()


@pytest.fixture
def window() -> LogQuery:
    return LogQuery(start=T0 - timedelta(minutes=5), end=T0 + timedelta(hours=1))
