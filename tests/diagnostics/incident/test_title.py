"""An incident's title: target and version, then the lead problem on its component once a check found
one, else the alert that opened it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from diagnostics.incident.model import incident_from_conf
from diagnostics.incident.results import Finding
from diagnostics.incident.title import MAX_TITLE_CHARS, incident_title, title_of, title_of_conf
from diagnostics.runbooks import load_runbooks

NOW = datetime(2026, 12, 1, 8, 57, tzinfo=UTC)


def _alert(name: str, status: str = "firing", **labels: str) -> dict[str, object]:
    return {
        "status": status,
        "labels": {"alertname": name, "target": "testbed", "version": "canary", **labels},
        "annotations": {"summary": f"{name} on the canary"},
        "starts_at": "2026-12-01T08:56:51Z",
        "fingerprint": f"fp-{name.lower()}",
    }


def _conf(*alerts: dict[str, object], version: str | None = "canary") -> dict[str, object]:
    return {
        "schema": "triage24.intake/v1",
        "group_key": '{}:{alertname="Http5xxBurst"}',
        "target": "testbed",
        "version": version,
        "alerts": list(alerts),
        "grade": "L2",
    }


def _finding(problem: str, component: str | None = None) -> Finding:
    matrix = load_runbooks().priority_matrix.problems
    return Finding.from_problem(
        next(p for p in matrix if p.id == problem), "model_integrity", "sha256 4a9c… ≠ pinned 9bda…",
        version="canary", component=component,
    )  # fmt: skip


def test_before_findings_the_title_names_target_version_and_alert() -> None:
    incident = incident_from_conf("incident__t", _conf(_alert("Http5xxBurst")), now=NOW)
    assert title_of(incident) == "testbed canary · Http5xxBurst"
    assert title_of_conf(_conf(_alert("Http5xxBurst"))) == "testbed canary · Http5xxBurst"


def test_once_a_finding_leads_the_title_names_its_problem_on_its_component() -> None:
    incident = incident_from_conf("incident__t", _conf(_alert("Http5xxBurst")), now=NOW)
    lead = _finding("model_not_loaded", component="embedding")
    assert title_of(incident, lead) == "testbed canary · model_not_loaded on embedding"


def test_more_alerts_show_as_a_count_and_resolved_ones_are_left_out() -> None:
    conf = _conf(_alert("Http5xxBurst"), _alert("ModelNotLoaded"), _alert("LatencySLA", status="resolved"))
    assert title_of_conf(conf) == "testbed canary · Http5xxBurst +1"
    incident = incident_from_conf("incident__t", conf, now=NOW)
    assert incident.alert_names == ("Http5xxBurst", "ModelNotLoaded")
    assert title_of(incident) == "testbed canary · Http5xxBurst +1"


def test_an_unknown_version_is_left_out_and_a_manual_run_says_so() -> None:
    assert title_of_conf(_conf(_alert("Http5xxBurst"), version=None)) == "testbed · Http5xxBurst"
    manual = incident_from_conf("manual__1", {"target": "testbed"}, now=NOW)
    assert title_of(manual) == "testbed · manual investigation"
    assert title_of_conf({}, default_target="testbed") == "testbed · manual investigation"
    assert title_of_conf({}) == "unknown target · manual investigation"


@pytest.mark.parametrize(
    ("conf", "expected"),
    [
        ({"target": 7, "alerts": "x"}, "unknown target · manual investigation"),
        ({"target": "t", "alerts": [None, {"labels": "x"}, {"labels": {"alertname": 3}}]},
         "t · manual investigation"),
        ({"target": "t", "alerts": [{"labels": {"alertname": "A\n  B"}}]}, "t · A B"),
    ],
)  # fmt: skip
def test_a_conf_the_run_would_reject_still_gets_a_one_line_title(
    conf: dict[str, object], expected: str
) -> None:
    assert title_of_conf(conf) == expected


def test_a_lead_without_a_component_or_a_problem_and_a_long_title() -> None:
    class Lead:
        def __init__(self, problem: str, component: str | None) -> None:
            self.problem, self.component = problem, component

    assert incident_title("testbed", "canary", ["A"], Lead("canary_gate_breach", None)) == (
        "testbed canary · canary_gate_breach"
    )
    assert incident_title("testbed", None, ["A"], Lead("  ", "embedding")) == "testbed · A", (
        "no problem: the alert"
    )
    long = incident_title("t" * 200, "canary", ["A"])
    assert len(long) == MAX_TITLE_CHARS and long.endswith("…")
