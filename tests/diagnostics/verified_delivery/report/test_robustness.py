"""Missing, malformed and oddly shaped artifacts are reported, never raised; PII never reaches the report."""

from __future__ import annotations

import json
import random
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnostics.verified_delivery.report import ReportError, build_report
from testbed.faults import make_pii
from tests.diagnostics.verified_delivery.report.conftest import (
    ROLLBACK,
    ROLLBACK_ALERT,
    ROLLBACK_TIMES,
    copy_incident,
    edit_json,
    svgs,
    text_of,
    timeline_rows,
)

NOW = ROLLBACK_ALERT + timedelta(hours=30)


@pytest.fixture
def incident(tmp_path: Path) -> Path:
    return copy_incident(ROLLBACK, tmp_path, ROLLBACK_ALERT, ROLLBACK_TIMES)


def render(incident: Path) -> tuple[Any, str, str]:
    result = build_report(incident, now=NOW)
    return result, result.html.read_text(encoding="utf-8"), result.markdown.read_text(encoding="utf-8")


def section(html: str, name: str) -> str:
    m = re.search(rf'<section id="{name}">(.*?)</section>', html, re.S)
    assert m is not None, name
    return " ".join(text_of(m.group(1)).split())


# --- missing and malformed -----------------------------------------------------------------------------


def test_a_malformed_json_file_is_named_in_its_section_and_in_the_problems(incident: Path) -> None:
    (incident / "deep_diagnosis" / "asr_check.json").write_text('{"check": "asr_check", "status": ')
    result, html, md = render(incident)
    note = "deep_diagnosis/asr_check.json is malformed: not JSON (Expecting value at line 1 column 34)"
    assert note in result.problems
    assert note in section(html, "problems") and note in md
    assert re.search(r'id="check-asr_check" data-status="malformed"', html)
    assert f"ASR: {note}" in section(html, "evidence")  # why there is no WER plot
    assert "wer-per-clip" not in svgs(html)
    # the rest of the report is all there
    assert "similarity-stable" in svgs(html) and "rollback by rule critical_canary_finding" in section(
        html, "decision"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"[1, 2, 3]", "a JSON list, not an object"),
        (b"null", "a JSON NoneType, not an object"),
        (b"\xff\xfe{}", "not UTF-8 text"),
        (b"", "not JSON (Expecting value at line 1 column 1)"),
    ],
)
def test_every_kind_of_unreadable_file_says_what_is_wrong(
    incident: Path, content: bytes, problem: str
) -> None:
    (incident / "golden_window" / "metrics_sla.json").write_bytes(content)
    result, html, _ = render(incident)
    assert any(
        p.startswith("golden_window/metrics_sla.json is malformed: " + problem) for p in result.problems
    )
    assert "latency: golden_window/metrics_sla.json is malformed" in section(html, "evidence")
    assert not any(name.startswith("latency-") for name in svgs(html))


def test_a_folder_where_a_file_should_be_is_reported(incident: Path) -> None:
    (incident / "decision" / "decision.json").unlink()
    (incident / "decision" / "decision.json").mkdir()
    result, _, _ = render(incident)
    assert any(p.startswith("decision/decision.json is malformed: cannot be read") for p in result.problems)
    # the fast path's decision is the one shown at the top, and still in full below
    assert (result.outcome, result.rule) == ("rollback", "critical_canary_finding")


def test_missing_decision_and_response_are_said_not_guessed(incident: Path) -> None:
    for rel in (
        "decision/decision.json",
        "decision/fast_decision.json",
        "response/recovery_verification.json",
    ):
        (incident / rel).unlink()
    result, html, md = render(incident)
    assert result.outcome is None and result.time_to_recover_s is None
    assert "decision/decision.json is missing" in result.problems
    assert "decision/fast_decision.json is missing" not in result.problems  # optional: older runs lack it
    assert "decision no decision recorded" in section(html, "alert")
    assert "decision/decision.json is missing" in section(html, "decision")
    assert "time to recover: not verified (no recovery_verification.json)" in md


def test_an_incident_without_phase_2_and_without_incident_json(incident: Path) -> None:
    import shutil

    shutil.rmtree(incident / "deep_diagnosis")
    (incident / "incident.json").unlink()
    result, html, _ = render(incident)
    assert "incident.json is missing" in result.problems
    assert "deep_diagnosis/: no artifacts (the phase did not run or stored nothing)" in result.problems
    # one problem for the phase, not one per check
    assert not any(p.startswith("deep_diagnosis/clip_consistency") for p in result.problems)
    assert "deep_diagnosis/: no artifacts" in section(html, "evidence")
    assert result.incident_id == incident.name  # the folder names it
    # no alert start, no deadline verdict: said, not passed
    rows = timeline_rows(html)
    assert rows["golden_window"][0] == "unknown"
    assert "deadline unknown: the alert's start time is missing" in rows["golden_window"][1]
    assert "drift: deep_diagnosis/drift.json is missing" in section(html, "evidence")


def test_unexpected_shapes_inside_valid_json_do_not_crash(incident: Path) -> None:
    edit_json(
        incident / "golden_window" / "metrics_sla.json", lambda d: d.update(channels={"text": 1}, gate=[])
    )
    edit_json(
        incident / "deep_diagnosis" / "clip_consistency.json",
        lambda d: d["versions"]["stable"]["figures"].update(hist_edges="x", matched_cosine=[1, 2]),
    )
    edit_json(incident / "deep_diagnosis" / "drift.json", lambda d: d.update(versions=["stable"]))
    edit_json(incident / "deep_diagnosis" / "asr_check.json", lambda d: d["versions"].update(canary=None))
    edit_json(incident / "response" / "recovery_verification.json", lambda d: d.update(samples="many"))
    edit_json(incident / "decision" / "decision.json", lambda d: d.update(risks={"a": 1}, reasons="one"))
    result, html, _ = render(incident)
    plots = svgs(html)
    assert not any(n.startswith(("latency-", "similarity-", "drift-")) for n in plots)
    assert plots["wer-per-clip"].count('class="bar s') == 11  # stable only; canary's outcome is not an object
    assert "similarity stable: no cosine histogram" in section(html, "evidence")
    assert "drift: no channel levels in the result" in section(html, "evidence")
    assert result.outcome == "rollback"


def test_an_empty_folder_still_gets_a_report_and_a_missing_one_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "incident__x"
    empty.mkdir()
    result = build_report(empty, now=NOW)
    assert result.outcome is None and result.plots == 0
    assert "incident.json is missing" in result.problems
    assert "golden_window/: no artifacts (the phase did not run or stored nothing)" in result.problems
    assert result.html.is_file() and result.markdown.is_file()
    with pytest.raises(ReportError, match="no incident artifacts at"):
        build_report(tmp_path / "nope")


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_FILES = (
    "incident.json",
    "golden_window/metrics_sla.json",
    "golden_window/summary.json",
    "deep_diagnosis/clip_consistency.json",
    "deep_diagnosis/asr_check.json",
    "deep_diagnosis/drift.json",
    "decision/decision.json",
    "response/rollback.json",
    "response/recovery_verification.json",
    "verified_delivery/regression_suite.json",
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rel=st.sampled_from(_FILES),
    key=st.sampled_from(
        [
            "versions",
            "channels",
            "cases",
            "figures",
            "status",
            "summary",
            "samples",
            "risks",
            "alert_started_at",
            "gate",
        ]
    ),
    value=_json,
)
def test_any_value_in_any_place_is_rendered_or_reported_never_raised(
    incident: Path, rel: str, key: str, value: Any
) -> None:
    path = incident / rel
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    if isinstance(data.get("versions"), dict):
        for outcome in data["versions"].values():
            if isinstance(outcome, dict) and isinstance(outcome.get("figures"), dict):
                outcome["figures"][key] = value
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(data, allow_nan=True))
    result = build_report(incident, now=NOW)
    assert result.html.read_text(encoding="utf-8").rstrip().endswith("</html>")


# --- PII -----------------------------------------------------------------------------------------------


def test_pii_planted_in_the_artifacts_reaches_neither_file(incident: Path) -> None:
    pii = make_pii(random.Random(8))
    line = f"caller profile: {pii.as_text()}"
    edit_json(
        incident / "golden_window" / "log_classification.json",
        lambda d: d["findings"][0].update(evidence=d["findings"][0]["evidence"] + "; " + line),
    )
    edit_json(incident / "incident.json", lambda d: d.update(alert_names=[f"Alert for {pii.email}"]))
    edit_json(
        incident / "deep_diagnosis" / "asr_check.json",
        lambda d: d["versions"]["canary"]["figures"]["per_clip"].update({f"clip-{pii.cn_phone}": 0.5}),
    )
    edit_json(
        incident / "deep_diagnosis" / "drift.json",
        lambda d: d["versions"]["canary"]["figures"].update(caller_card=int(pii.card), caller=pii.intl_phone),
    )
    edit_json(
        incident / "decision" / "decision.json", lambda d: d["reasons"].append(f"approved by {pii.email}")
    )
    edit_json(
        incident / "response" / "recovery_verification.json",
        lambda d: d.update(summary=d["summary"] + f"; paged {pii.intl_phone}, id {pii.cn_id}"),
    )
    result, html, md = render(incident)
    values = [pii.cn_phone, pii.intl_phone, pii.cn_id, pii.email, pii.card]
    digits = ["".join(c for c in v if c.isdigit()) for v in (pii.intl_phone, pii.card, pii.cn_id[:17])]
    for text in (html, md, result.model_dump_json()):
        for v in values + digits:
            assert v not in text
    # it was there, masked — the test would see a leak
    text = " ".join(text_of(html).split())
    assert (
        "caller profile: phone=[phone] alt_phone=[phone] id_card=[id_card] email=[email] card=[card]" in text
    )
    assert "Alert for [email]" in text and "approved by [email]" in text and "approved by [email]" in md
    assert "caller_card [card]" in text and "paged [phone], id [id_card]" in text
    assert "clip-[phone]" in svgs(html)["wer-per-clip"]


def test_pii_in_the_incident_folder_name_is_masked_too(tmp_path: Path) -> None:
    pii = make_pii(random.Random(3))
    incident = copy_incident(
        ROLLBACK, tmp_path, ROLLBACK_ALERT, ROLLBACK_TIMES, name=f"manual__{pii.cn_phone}"
    )
    (incident / "incident.json").unlink()
    result = build_report(incident, now=NOW)
    for path in (result.html, result.markdown):
        assert pii.cn_phone not in path.read_text(encoding="utf-8")
    assert result.incident_id == "manual__[phone]"
