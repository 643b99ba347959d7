"""The artifact store's typed reader: a stored result comes back as the model that wrote it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics.incident.results import CheckResult, Status
from diagnostics.incident.store import ArtifactError, find_result, read_result, result_path, write_result


def test_a_result_reads_back_as_its_model(tmp_path: Path) -> None:
    result = CheckResult(check="health_snapshot", status=Status.OK, summary="all healthy")
    write_result(tmp_path, "run1", "golden_window", "health_snapshot", result)
    assert read_result(tmp_path, "run1", "golden_window", "health_snapshot", CheckResult) == result
    assert read_result(tmp_path, "run1", "golden_window", "health_snapshot")["status"] == "ok"


def test_missing_is_none_for_find_and_an_error_for_read(tmp_path: Path) -> None:
    assert find_result(tmp_path, "run1", "decision", "decision", CheckResult) is None
    with pytest.raises(ArtifactError, match="no result of decision for run1/decision"):
        read_result(tmp_path, "run1", "decision", "decision", CheckResult)


def test_a_result_of_the_wrong_shape_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = result_path(tmp_path, "run1", "decision", "decision")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"check": "decision", "status": "maybe", "summary": "?"}))
    with pytest.raises(ArtifactError, match=r"decision\.json: status: .*not a stored CheckResult"):
        find_result(tmp_path, "run1", "decision", "decision", CheckResult)
    path.write_text("{not json")
    with pytest.raises(ArtifactError, match="not JSON"):
        read_result(tmp_path, "run1", "decision", "decision")
