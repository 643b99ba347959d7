from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.schemas import PriorityMatrix
from diagnostics.sources.logs.records import LogQuery
from tests.diagnostics.sources.logs.testbed_logs import T0, Testbed


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
