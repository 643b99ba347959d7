"""Phase 2 on the machine of the service it diagnoses runs at a lower CPU priority."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from diagnostics.config import Settings
from harness.stack.components import LOCAL_DEEP_NICE, airflow_env
from tests.conftest import REPO


def _nice_after(*calls: int) -> list[int]:
    # A child process: niceness cannot be raised back, so the test process itself is never touched.
    code = (
        "import sys; from diagnostics.deep_diagnosis.phase import yield_cpu; "
        "print([yield_cpu(int(a)) for a in sys.argv[1:]])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, calls)], cwd=REPO, capture_output=True, text=True, check=True
    )
    return [int(x) for x in out.stdout.strip().strip("[]").split(",")]


def test_yield_cpu_lowers_priority_to_the_setting_and_never_raises_it() -> None:
    base = _nice_after(0)[0]  # the test may itself run niced
    high, low = min(base + 7, 19), min(base + 3, 19)
    assert _nice_after(high, low, 0) == [high, high, high]
    assert _nice_after(0) == [base]


def test_the_setting_comes_from_the_environment_and_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE24_DEEP_NICE", "12")
    assert Settings().deep_nice == 12
    monkeypatch.setenv("TRIAGE24_DEEP_NICE", "25")
    with pytest.raises(ValidationError, match="deep_nice"):
        Settings()


def test_the_local_stack_runs_phase_2_below_the_testbed(tmp_path: Path) -> None:
    secrets = {
        k: "x"
        for k in (
            "AIRFLOW__API_AUTH__JWT_SECRET",
            "AIRFLOW__API__SECRET_KEY",
            "TRIAGE24_WEBHOOK_TOKEN",
            "TRIAGE24_TESTBED_ADMIN_TOKEN",
            "TRIAGE24_AUDIT_KEY",
            "TRIAGE24_METRICS_TOKEN",
        )
    }
    env = airflow_env(Settings(home=tmp_path, deep_nice=0), secrets)
    assert env["TRIAGE24_DEEP_NICE"] == str(LOCAL_DEEP_NICE) == "15"
    assert airflow_env(Settings(home=tmp_path, deep_nice=5), secrets)["TRIAGE24_DEEP_NICE"] == "5"
