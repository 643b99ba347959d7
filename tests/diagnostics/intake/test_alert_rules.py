"""The Prometheus rules follow the runbooks' thresholds, are valid for the real promtool, and raise the
right alerts (with the labels grading.yaml grades on) on synthetic testbed series."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from diagnostics.intake.alert_rules import RULES_FILE, render
from diagnostics.intake.grading import Grader, load_grading
from diagnostics.runbooks import load_runbooks
from tests.conftest import REPO

DATA = Path(__file__).parent / "data"
PROMTOOL = shutil.which("promtool") or "promtool"
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool missing: apt-get install prometheus"
)


def test_the_committed_rules_are_generated_from_the_runbooks() -> None:
    committed = (REPO / RULES_FILE).read_text()
    assert committed == render(load_runbooks(REPO / "runbooks", environ={})), (
        f"{RULES_FILE} is out of date with runbooks/thresholds.yaml: run `triage24 intake rules --write`"
    )


def test_thresholds_drive_the_rules(tmp_path: Path) -> None:
    books = tmp_path / "runbooks"
    shutil.copytree(REPO / "runbooks", books)
    text = (books / "thresholds.yaml").read_text()
    (books / "thresholds.yaml").write_text(text.replace("rate_5xx: 0.005", "rate_5xx: 0.02"))
    rules = render(load_runbooks(books, environ={}))
    assert "> 0.02 and on () sum(increase(testbed_requests_total" in rules
    assert "canary 5xx rate {{ $value | humanizePercentage }} > 2.00% (gate)" in rules


def test_every_alert_is_graded_by_an_explicit_rule() -> None:
    grader = Grader(load_grading(REPO / "runbooks" / "grading.yaml"))
    rules = yaml.safe_load((REPO / RULES_FILE).read_text())
    grades = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            graded = grader.grade_alert({"alertname": rule["alert"], **rule["labels"]})
            assert graded.rule != "unclassified", rule["alert"]
            grades[rule["alert"]] = graded.grade.value
            assert rule["labels"]["target"] == "testbed"
    assert grades == {
        "LatencySLABreach": "L2",
        "ErrorRateHigh": "L2",
        "Http5xxBurst": "L2",
        "AsrTimeouts": "L2",
        "ModelNotLoaded": "L4",
        "TargetDown": "L4",
        "InstanceCpuSpike": "L1",
        "CanaryGateP99Latency": "L3",
        "CanaryGate5xx": "L3",
        "CanaryGateErrorRate": "L3",
    }


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        [PROMTOOL, "check", "rules", str(REPO / RULES_FILE)], capture_output=True, text=True
    )  # type: ignore[list-item]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 19 rules found" in done.stdout


@needs_promtool
def test_the_rules_fire_on_synthetic_testbed_series() -> None:
    done = subprocess.run(
        [PROMTOOL, "test", "rules", "testbed_rules_test.yml"],
        capture_output=True,
        text=True,
        cwd=DATA,
    )
    assert done.returncode == 0, done.stdout + done.stderr
