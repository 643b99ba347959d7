"""Alertmanager webhook payloads: the real v4 shape parses; every malformed input is refused with the
HTTP status and the field path that explain it; run ids are deterministic."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from diagnostics.intake.payload import ZERO_TIME, PayloadError, check_content_type, loads, parse, validate
from diagnostics.intake.runid import RUN_ID_PATTERN, incident_run_id
from tests.diagnostics.intake.conftest import real_payload

LIMIT = 1024 * 1024


def refused(body: bytes | dict[str, Any], content_type: str = "application/json") -> PayloadError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(PayloadError) as info:
        parse(raw, content_type, LIMIT)
    return info.value


def fields(err: PayloadError) -> list[str]:
    return [p.field for p in err.problems]


def test_alertmanager_0_25_firing_delivery_parses() -> None:
    p = validate(real_payload("firing"))
    assert p.version == "4" and p.status == "firing" and p.receiver == "r"
    assert p.group_key == '{}:{alertname="CanaryGate5xx", target="testbed", version="canary"}'
    assert p.group_labels == {"alertname": "CanaryGate5xx", "target": "testbed", "version": "canary"}
    assert p.label("target") == "testbed" and p.label("severity") == "critical" and p.label("nope") is None
    assert [a.fingerprint for a in p.firing] == ["29d52bc6146ee80d", "0df63d4b74dc1f30"]
    first = p.alerts[0]
    # Alertmanager sends nanoseconds and Go's zero time as the endsAt of a firing alert.
    assert first.starts_at.isoformat() == "2026-11-22T05:15:52.942327+00:00"
    assert first.ends_at == ZERO_TIME
    conf = first.as_conf()
    assert conf["ends_at"] is None and conf["starts_at"] == "2026-11-22T05:15:52.942327Z"
    assert conf["generator_url"] == "" and conf["labels"]["channel"] == "audio"
    assert first.occurrence == ("29d52bc6146ee80d", "2026-11-22T05:15:52.942327Z")


def test_partly_and_fully_resolved_deliveries_parse() -> None:
    mixed = validate(real_payload("partly-resolved"))
    assert mixed.status == "firing"
    assert [a.status for a in mixed.alerts] == ["firing", "resolved"]
    assert mixed.resolved[0].as_conf()["ends_at"] == "2026-11-22T05:16:00Z"
    done = validate(real_payload("resolved"))
    assert done.status == "resolved" and done.firing == [] and len(done.resolved) == 1


def test_unknown_fields_are_ignored_and_dropped() -> None:
    data = real_payload()
    data["newField"] = {"from": "a newer alertmanager"}
    data["alerts"][0]["silencedBy"] = []
    p = validate(data)
    assert "newField" not in p.model_dump() and "silencedBy" not in p.alerts[0].model_dump()


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (lambda d: d.pop("groupKey"), "groupKey", "required"),
        (lambda d: d.pop("version"), "version", "missing; accepted: '4'"),
        (lambda d: d.update(version="3"), "version", "is '3'; accepted: '4' (Alertmanager's webhook) or '1'"),
        (lambda d: d.update(version=4), "version", "(a JSON number, not a string); accepted: '4'"),
        (lambda d: d.update(truncatedAlerts="0"), "truncatedAlerts", "integer"),
        (lambda d: d.update(truncatedAlerts=-1), "truncatedAlerts", "greater than or equal to 0"),
        (lambda d: d.update(alerts=[]), "alerts", "at least 1"),
        (lambda d: d.update(alerts={"a": 1}), "alerts", "list"),
        (lambda d: d["alerts"][0].update(status="pending"), "alerts[0].status", "'firing' or 'resolved'"),
        (lambda d: d["alerts"][0]["labels"].update(severity=3), "alerts[0].labels.severity", "string"),
        (lambda d: d["alerts"][0].update(labels={}), "alerts[0].labels", "at least 1"),
        (lambda d: d["alerts"][0].update(startsAt=1763790000), "alerts[0].startsAt", "timestamp string"),
        (lambda d: d["alerts"][0].update(startsAt="yesterday"), "alerts[0].startsAt", "datetime"),
        (lambda d: d["alerts"][0].update(startsAt="2026-11-22T05:15:52"), "alerts[0].startsAt", "timezone"),
        (lambda d: d["alerts"][0].update(fingerprint="not hex!"), "alerts[0].fingerprint", "pattern"),
        (lambda d: d["alerts"][0]["annotations"].update(x="\x00"), "alerts[0].annotations.x", "NUL"),
        (lambda d: d["commonLabels"].update(bad="\ud800"), "commonLabels.bad", "surrogate"),
        (lambda d: d.update(groupLabels=[]), "groupLabels", "dictionary"),
        (lambda d: d.update(status="resolved"), "status", "some alert is firing"),
    ],
)
def test_a_wrong_field_is_named_with_a_fix(mutate: Any, field: str, words: str) -> None:
    data = real_payload()
    mutate(data)
    err = refused(data)
    assert err.status == 422
    assert field in fields(err), fields(err)
    problem = next(p for p in err.problems if p.field == field)
    assert words in problem.message, problem.message
    assert problem.fix


def test_an_all_resolved_delivery_marked_firing_is_refused() -> None:
    data = real_payload("resolved")
    data["status"] = "firing"
    err = refused(data)
    assert err.status == 422 and fields(err) == ["status"]
    assert "'resolved'" in err.problems[0].fix


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"", "not valid JSON at line 1 column 1"),
        (b'{"version": "4",', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8 (byte 0)"),
        (b'{"a": NaN}', "NaN is not valid JSON"),
        (b'{"a": 1e999}', "out of range"),
        (b'{"a": ' + b"9" * 5000 + b"}", "not acceptable JSON"),
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        ("\ufeff{}".encode(), "not valid JSON"),
    ],
)
def test_unparseable_bodies_are_400(raw: bytes, words: str) -> None:
    err = refused(raw)
    assert err.status == 400 and fields(err) == ["body"]
    assert words in err.problems[0].message


@pytest.mark.parametrize("value", [b"[]", b"0", b'"x"', b"null", b"true"])
def test_json_that_is_not_an_object_is_422(value: bytes) -> None:
    assert refused(value).status == 422


@pytest.mark.parametrize(
    "ct",
    ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/vnd.am+json"],
)
def test_json_content_types_are_accepted(ct: str) -> None:
    check_content_type(ct)


@pytest.mark.parametrize(
    "ct", [None, "", "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"]
)
def test_other_content_types_are_415(ct: str | None) -> None:
    err = refused(b"{}", content_type=ct)  # type: ignore[arg-type]
    assert err.status == 415 and fields(err) == ["Content-Type"]
    assert "application/json" in err.problems[0].fix


def test_a_body_over_the_limit_is_413_before_anything_else() -> None:
    with pytest.raises(PayloadError) as info:
        parse(b"x" * 2049, "text/plain", 2048)
    assert info.value.status == 413 and "TRIAGE24_INTAKE_MAX_BODY_BYTES" in info.value.problems[0].fix


def test_loads_is_strict_json() -> None:
    assert loads(b'{"a": [1, 2.5, "\\u00e9"]}') == {"a": [1, 2.5, "é"]}


# --- run ids --------------------------------------------------------------------------------------

GROUP = '{}:{alertname="X", target="testbed"}'


def test_run_id_is_deterministic_and_order_insensitive() -> None:
    a = incident_run_id(GROUP, [("aa", "t1"), ("bb", "t2")], "CanaryGate5xx")
    b = incident_run_id(GROUP, [("BB", "t2"), ("aa", "t1"), ("aa", "t1")], "CanaryGate5xx")
    assert a == b
    assert re.match(r"^incident__canarygate5xx__[0-9a-f]{24}$", a)
    assert RUN_ID_PATTERN.match(a)
    # Airflow's default allowed_run_id_pattern.
    assert re.match(r"^[A-Za-z0-9_.~:+-]+$", a)


def test_run_id_changes_with_the_group_the_alerts_and_a_refire() -> None:
    base = incident_run_id(GROUP, [("aa", "t1")])
    assert incident_run_id(GROUP + "x", [("aa", "t1")]) != base
    assert incident_run_id(GROUP, [("aa", "t1"), ("bb", "t1")]) != base
    assert incident_run_id(GROUP, [("aa", "t2")]) != base, "a re-fire (new startsAt) is a new incident"
    # The readable part never changes the identity.
    assert incident_run_id(GROUP, [("aa", "t1")], "Ünïcode / name!").split("__")[-1] == base.split("__")[-1]


def test_run_id_readable_part_is_sanitised_and_bounded() -> None:
    run_id = incident_run_id(GROUP, [("aa", "t1")], "A very long alert name with spaces & symbols " * 3)
    assert RUN_ID_PATTERN.match(run_id), run_id
    with pytest.raises(ValueError, match="at least one firing alert"):
        incident_run_id(GROUP, [])
