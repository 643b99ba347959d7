"""Alertmanager's fingerprint, computed when a sender leaves it out: the values Prometheus' own tests and
real Alertmanagers produced, and dedup that survives an upgrade of the sender to a release that sends it."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diagnostics.intake.fingerprint import FNV64_OFFSET, alert_fingerprint, label_set_fingerprint
from diagnostics.intake.payload import validate
from diagnostics.intake.service import IntakeService
from tests.diagnostics.intake.conftest import DATA, MemoryBackend, body

PAYLOADS = Path(__file__).parent / "payloads"

# prometheus/common model/signature_test.go (commit 012cc753): TestMetricToFingerprint and the
# BenchmarkMetricToFingerprint* cases, labelSetToFingerprint - the function behind LabelSet.Fingerprint.
PROMETHEUS_VECTORS = [
    ({}, 14695981039346656037),
    ({"name": "garland, briggs", "fear": "love is not enough"}, 5799056148416392346),
    ({"first-label": "first-label-value"}, 5146282821936882169),
    ({"first-label": "first-label-value", "second-label": "second-label-value"}, 3195800080984914717),
    (
        {
            "first-label": "first-label-value",
            "second-label": "second-label-value",
            "third-label": "third-label-value",
        },
        13843036195897128121,
    ),
]


@pytest.mark.parametrize(("labels", "expected"), PROMETHEUS_VECTORS)
def test_prometheus_label_set_fingerprints(labels: dict[str, str], expected: int) -> None:
    assert label_set_fingerprint(labels) == expected
    assert alert_fingerprint(labels) == f"{expected:016x}"


def test_an_empty_label_set_is_the_fnv_offset_basis() -> None:
    assert alert_fingerprint({}) == "cbf29ce484222325" == f"{FNV64_OFFSET:016x}"


def _sent(path: Path) -> list[tuple[dict[str, str], str]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [(a["labels"], a["fingerprint"]) for a in data["alerts"]]


# Fingerprints real Alertmanagers sent: recorded from Alertmanager 0.25 (tests/.../data), and the label
# sets and fingerprints of deliveries recorded in public repositories (see payloads/manifest.yaml):
# kube-state-metrics labels, Chinese label values (multi-byte UTF-8), an Opsgenie-style priority.
RECORDED = [
    *_sent(DATA / "alertmanager-0.25-firing.json"),
    *_sent(PAYLOADS / "am-0.24-k8s-resolved-capitalised-warning.json"),
    *_sent(PAYLOADS / "am-0.26-chinese-labels.json"),
    *_sent(PAYLOADS / "am-0.24-priority-p0.json"),
]


@pytest.mark.parametrize(("labels", "sent"), RECORDED, ids=[fp for _, fp in RECORDED])
def test_the_fingerprints_real_alertmanagers_sent(labels: dict[str, str], sent: str) -> None:
    assert alert_fingerprint(labels) == sent


def test_six_distinct_recorded_fingerprints() -> None:
    assert len({fp for _, fp in RECORDED}) == 6


def test_an_alert_without_one_gets_alertmanagers_and_one_sent_is_kept() -> None:
    data = json.loads((PAYLOADS / "am-0.24-priority-p0.json").read_text())
    data["alerts"][0]["fingerprint"] = "ABCDEF0123456789"  # the sender's value wins, lower-cased
    assert validate(data).alerts[0].fingerprint == "abcdef0123456789"
    for absent in (None, ""):
        data["alerts"][0]["fingerprint"] = absent
        alert = validate(data).alerts[0]
        assert (alert.fingerprint, alert.fingerprint_computed) == ("4e4c4c3d872bf6d8", True)
        assert alert.as_conf()["fingerprint"] == "4e4c4c3d872bf6d8"
    del data["alerts"][0]["fingerprint"]
    assert validate(data).computed_fingerprints == 1


def test_dedup_survives_an_upgrade_of_the_sender(service: IntakeService, backend: MemoryBackend) -> None:
    """The same alert from Alertmanager 0.16 (no fingerprint) and, after the upgrade, from 0.24: one
    incident, and the resolve the new release sends annotates it."""
    old = json.loads((PAYLOADS / "am-0.16-no-fingerprint-priority-p0.json").read_text())
    new = json.loads((PAYLOADS / "am-0.24-priority-p0.json").read_text())
    first = service.handle(validate(old), body(old))
    again = service.handle(validate(new), body(new))
    assert (first.outcome, again.outcome) == ("created", "duplicate")
    assert again.run_id == first.run_id and len(backend.runs) == 1
    resolved = json.loads(json.dumps(new))
    resolved["status"] = resolved["alerts"][0]["status"] = "resolved"
    resolved["alerts"][0]["endsAt"] = "2022-12-02T10:30:00Z"
    done = service.handle(validate(resolved), body(resolved))
    assert (done.outcome, done.run_id) == ("resolved", first.run_id)
    assert backend.runs[first.run_id].conf["fingerprints"] == ["4e4c4c3d872bf6d8"]


# --- properties -----------------------------------------------------------------------------------

names = st.text(string.ascii_letters + "_", min_size=1, max_size=12)
values = st.text(max_size=20).filter(
    lambda v: "\x00" not in v and not any(0xD800 <= ord(c) <= 0xDFFF for c in v)
)
label_sets = st.dictionaries(names, values, max_size=8)


@given(labels=label_sets)
def test_the_fingerprint_is_16_lower_hex_digits_and_ignores_order(labels: dict[str, str]) -> None:
    fp = alert_fingerprint(labels)
    assert len(fp) == 16 and set(fp) <= set("0123456789abcdef")
    assert alert_fingerprint(dict(reversed(list(labels.items())))) == fp


@given(name=names, value=values, extra=values)
def test_the_separator_keeps_name_and_value_apart(name: str, value: str, extra: str) -> None:
    # {"ab": "c"} and {"a": "bc"} would collide without the 0xff after each name and value.
    if extra:
        assert alert_fingerprint({name + extra[0]: value}) != alert_fingerprint({name: extra[0] + value})
    assert alert_fingerprint({name: value}) != alert_fingerprint({})


@given(labels=st.dictionaries(names, values, min_size=1, max_size=6), sent=st.booleans())
def test_with_or_without_the_sent_fingerprint_an_alert_is_the_same_incident(
    labels: dict[str, str], sent: bool
) -> None:
    from diagnostics.intake.decide import payload_run_id
    from tests.diagnostics.intake.conftest import alert, delivery

    # Labels go in after the helper builds the alert: a label named like one of its parameters
    # ("starts", "status") is still a label.
    old = delivery([alert("x", 1_800_000_000.0)])
    old["alerts"][0]["labels"].update(labels)
    del old["alerts"][0]["fingerprint"]
    new = json.loads(json.dumps(old))
    new["alerts"][0]["fingerprint"] = alert_fingerprint(new["alerts"][0]["labels"]) if sent else ""
    assert payload_run_id(validate(old)) == payload_run_id(validate(new))
