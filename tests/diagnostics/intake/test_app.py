"""The webhook over HTTP (in-process): authentication on every route, status codes for every kind of bad
input, the token never in a log line, and property tests: whatever the body, never a 5xx."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnostics.intake.app import create_app
from diagnostics.intake.config import IntakeSettings
from diagnostics.intake.service import IntakeService
from tests.diagnostics.intake.conftest import (
    AUTH,
    TOKEN,
    Clock,
    MemoryBackend,
    body,
    other_version,
    real_payload,
)

URL = "/alertmanager"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def journal_size(service: IntakeService) -> int:
    return len(service.journal.deliveries(limit=100_000))


# --- authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
    ],
)
def test_every_route_refuses_missing_or_wrong_tokens(
    client: TestClient, service: IntakeService, backend: MemoryBackend, headers: dict[str, str]
) -> None:
    headers = {"Content-Type": "application/json", **headers}
    for method, path in (("POST", URL), ("GET", "/health"), ("POST", "/reconcile")):
        resp = client.request(method, path, content=body(real_payload()), headers=headers)
        assert resp.status_code == 401, (method, path)
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="triage24-intake"'
        assert resp.json()["problems"][0]["field"] == "Authorization"
    assert journal_size(service) == 0 and backend.runs == {} and backend.calls == []


def test_the_right_token_is_accepted_on_every_route(client: TestClient) -> None:
    assert client.post(URL, content=body(real_payload()), headers=AUTH).status_code == 201
    health = client.get("/health", headers=AUTH)
    assert health.status_code == 200 and health.json()["deliveries"] == {"created": 1}
    assert client.post("/reconcile", headers=AUTH).json()["still_pending"] == {}
    lower = {"authorization": f"bearer {TOKEN}", "content-type": "application/json"}
    assert client.post(URL, content=body(real_payload()), headers=lower).json()["outcome"] == "duplicate"


def test_no_configured_token_refuses_everything_with_503(
    service: IntakeService, settings: IntakeSettings, clock: Clock
) -> None:
    with TestClient(create_app(lambda: service, lambda: [], settings, clock=clock)) as client:
        resp = client.post(URL, content=body(real_payload()), headers=AUTH)
    assert resp.status_code == 503
    assert "TRIAGE24_WEBHOOK_TOKEN" in resp.json()["problems"][0]["fix"]
    assert journal_size(service) == 0


def sign(raw: bytes, ts: str, key: str = TOKEN) -> dict[str, str]:
    sig = hmac.new(key.encode(), ts.encode() + b"." + raw, hashlib.sha256).hexdigest()
    return {
        "X-Triage24-Timestamp": ts,
        "X-Triage24-Signature": f"sha256={sig}",
        "Content-Type": "application/json",
    }


def test_an_hmac_signature_inside_the_replay_window_is_accepted(client: TestClient, clock: Clock) -> None:
    raw = body(real_payload())
    ts = str(int(clock.now) - 100)
    assert client.post(URL, content=raw, headers=sign(raw, ts)).status_code == 201


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("stale", "outside the 300 s replay window"),
        ("future", "outside the 300 s replay window"),
        ("key", "signature does not match"),
        ("body", "signature does not match"),
        ("ts", "must be unix seconds"),
        ("scheme", "must be sha256=<hex>"),
    ],
)
def test_a_bad_or_replayed_signature_is_401(
    client: TestClient, service: IntakeService, clock: Clock, change: str, why: str
) -> None:
    raw = body(real_payload())
    ts = str(int(clock.now))
    headers = {
        "stale": lambda: sign(raw, str(int(clock.now) - 301)),
        "future": lambda: sign(raw, str(int(clock.now) + 301)),
        "key": lambda: sign(raw, ts, key="other"),
        "body": lambda: sign(raw + b" ", ts),
        "ts": lambda: {**sign(raw, ts), "X-Triage24-Timestamp": "yesterday"},
        "scheme": lambda: {**sign(raw, ts), "X-Triage24-Signature": "md5=abc"},
    }[change]()
    resp = client.post(URL, content=raw, headers=headers)
    assert resp.status_code == 401 and why in resp.json()["problems"][0]["message"]
    assert journal_size(service) == 0


def test_the_token_never_appears_in_logs(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    raw = body(real_payload())
    client.post(URL, content=raw, headers=AUTH)
    client.post(URL, content=raw, headers={"Authorization": f"Bearer {TOKEN}-almost"})
    client.post(URL, content=b"{", headers=AUTH)
    assert caplog.records, "the intake logs its decisions"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert TOKEN not in text and "almost" not in text


# --- status codes ---------------------------------------------------------------------------------


def test_status_codes_of_the_delivery_path(
    client: TestClient, backend: MemoryBackend, service: IntakeService
) -> None:
    raw = body(real_payload())
    created = client.post(URL, content=raw, headers=AUTH)
    assert created.status_code == 201 and created.json()["outcome"] == "created"
    assert created.json()["run_id"].startswith("incident__canarygate5xx-testbed-canary__")
    assert client.post(URL, content=raw, headers=AUTH).json()["outcome"] == "duplicate"
    backend.down = "database is locked"
    other = other_version(real_payload(), "canary-2")
    pending = client.post(URL, content=body(other), headers=AUTH)
    assert pending.status_code == 503 and pending.headers["Retry-After"] == "10"
    assert pending.json()["outcome"] == "pending" and "database is locked" in pending.json()["detail"]
    assert [d.outcome for d in service.journal.deliveries()] == ["pending", "duplicate", "created"]


def test_413_by_declared_length_and_by_streamed_size(
    service: IntakeService, settings: IntakeSettings, clock: Clock, backend: MemoryBackend
) -> None:
    small = settings.model_copy(update={"max_body_bytes": 2048})
    with TestClient(create_app(lambda: service, lambda: [TOKEN], small, clock=clock)) as client:
        declared = client.post(URL, content=b"x" * 4096, headers=AUTH)

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
            for _ in range(8):
                yield b" " * 512

        streamed = client.post(URL, content=chunks(), headers=AUTH)
    for resp in (declared, streamed):
        assert resp.status_code == 413
        assert "TRIAGE24_INTAKE_MAX_BODY_BYTES" in resp.json()["problems"][0]["fix"]
    assert journal_size(service) == 0 and backend.calls == []


def test_400_415_422_name_the_problem(client: TestClient, service: IntakeService) -> None:
    r400 = client.post(URL, content=b'{"version": ', headers=AUTH)
    r415 = client.post(URL, content=body(real_payload()), headers={**AUTH, "Content-Type": "text/plain"})
    bad = real_payload()
    bad["alerts"][0]["labels"]["severity"] = ["critical"]
    r422 = client.post(URL, content=body(bad), headers=AUTH)
    assert (r400.status_code, r415.status_code, r422.status_code) == (400, 415, 422)
    assert r400.json()["problems"][0]["message"].startswith("not valid JSON at line 1 column 13")
    assert r415.json()["problems"][0] == {
        "field": "Content-Type",
        "message": "'text/plain' is not JSON",
        "fix": "send Content-Type: application/json (Alertmanager does)",
    }
    assert r422.json()["problems"][0]["field"] == "alerts[0].labels.severity"
    assert journal_size(service) == 0


def test_a_broken_configuration_is_503_naming_it(settings: IntakeSettings, tmp_path: Path) -> None:
    broken = tmp_path / "grading.yaml"
    broken.write_text("version: 1\nservice_labels: [target]\n")

    def factory() -> IntakeService:
        from diagnostics.intake.service import build_service

        return build_service(MemoryBackend(), settings.model_copy(update={"grading_file": broken}))

    with TestClient(create_app(factory, lambda: [TOKEN], settings)) as client:
        resp = client.post(URL, content=body(real_payload()), headers=AUTH)
    assert resp.status_code == 503
    assert f"{broken}:" in resp.json()["problems"][0]["message"]
    assert "default: required field is missing" in resp.json()["problems"][0]["message"]


def test_an_unwritable_journal_is_503_so_alertmanager_retries(
    client: TestClient, service: IntakeService
) -> None:
    service.journal.close()
    resp = client.post(URL, content=body(real_payload()), headers=AUTH)
    assert resp.status_code == 503 and resp.json()["error"] == "journal unavailable"


# --- property tests: never a 5xx ------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def post(client: TestClient, raw: bytes) -> int:
    return client.post(URL, content=raw, headers=AUTH).status_code


@FUZZ
@given(raw=st.binary(max_size=4096))
def test_random_bytes_are_always_a_4xx(client: TestClient, service: IntakeService, raw: bytes) -> None:
    assert post(client, raw) in (400, 422)


@FUZZ
@given(value=json_values)
def test_random_json_is_always_a_4xx(client: TestClient, value: Any) -> None:
    # Not an object, or an object without Alertmanager's fields: a schema error.
    assert post(client, json.dumps(value).encode()) == 422


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(real_payload())
# Fields whose value may legitimately be anything of one type; mutating to another type must fail.
TYPED = [p for p in PATHS if p[-1] not in ("annotations", "commonAnnotations", "groupLabels", "commonLabels")]


@FUZZ
@given(path=st.sampled_from(TYPED), value=json_values)
def test_a_wrongly_typed_field_is_a_422_naming_it(
    client: TestClient, service: IntakeService, path: tuple[Any, ...], value: Any
) -> None:
    data = real_payload()
    node = data
    for part in path[:-1]:
        node = node[part]
    original = node[path[-1]]
    if type(value) is type(original) or (isinstance(original, str) and isinstance(value, str)):
        return  # same type: not a type mutation
    node[path[-1]] = value
    resp = client.post(URL, content=body(data), headers=AUTH)
    assert resp.status_code in (200, 201, 422), resp.text
    if resp.status_code == 422:
        dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        fields = [p["field"] for p in resp.json()["problems"]]
        assert any(f == dotted or f.startswith(dotted) or dotted.startswith(f) for f in fields), (
            dotted,
            fields,
        )
    elif path[-1] == "fingerprint":  # null is no fingerprint: Alertmanager's is computed from the labels
        assert value is None
    else:  # only a harmless change passes, e.g. an empty-dict annotations of an alert
        assert isinstance(value, dict | list) and not value


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    size=st.integers(min_value=0, max_value=2 * 1024 * 1024), where=st.sampled_from(["label", "annotation"])
)
def test_huge_strings_are_413_or_accepted_never_5xx(
    client: TestClient, service: IntakeService, size: int, where: str
) -> None:
    data = real_payload()
    key = "labels" if where == "label" else "annotations"
    data["alerts"][0][key]["huge"] = "x" * size
    raw = body(data)
    status = post(client, raw)
    assert status == (413 if len(raw) > 1024 * 1024 else status)
    assert status in (200, 201, 413)


@FUZZ
@given(
    depth=st.integers(min_value=1, max_value=300_000),
    kind=st.sampled_from("[{"),
    at=st.sampled_from(["top", "label"]),
)
def test_deep_nesting_is_a_4xx(client: TestClient, depth: int, kind: str, at: str) -> None:
    opening, closing = ("[", "]") if kind == "[" else ('{"a":', "}")
    nested = opening * depth + "1" + closing * depth
    if at == "top":
        raw = nested.encode()
    else:
        raw = body(real_payload()).replace(b'"severity": "critical"', f'"severity": {nested}'.encode(), 1)
        assert nested.encode() in raw
    assert post(client, raw) in (400, 413, 422)


unicode_text = st.text(st.characters(codec=None, exclude_categories=()), min_size=1, max_size=64)


@FUZZ
@given(value=unicode_text, name=unicode_text)
def test_unicode_is_accepted_where_valid_and_named_where_not(
    client: TestClient, service: IntakeService, value: str, name: str
) -> None:
    data = real_payload()
    data["alerts"][0]["labels"][name] = value
    data["alerts"][0]["annotations"]["description"] = value
    raw = json.dumps(data).encode("utf-8", "surrogatepass")
    resp = client.post(URL, content=raw, headers=AUTH)
    bad = any(("\x00" in s or any(0xD800 <= ord(c) <= 0xDFFF for c in s)) for s in (value, name))
    if bad or len(name) > 256:
        assert resp.status_code in (400, 422), resp.text
    else:
        assert resp.status_code in (200, 201), resp.text
