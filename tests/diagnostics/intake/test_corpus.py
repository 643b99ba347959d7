"""The payload corpus (payloads/manifest.yaml): real-shaped deliveries of Alertmanager releases, Grafana,
bridges and relays, each posted to the webhook and checked offline with ``triage24 intake check``.

The webhook and the CLI must agree: the same acceptance, grade and rule, and the run id the CLI prints
is the one the service creates.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from diagnostics.intake.cli import register
from diagnostics.intake.payload import loads, validate
from tests.diagnostics.intake.conftest import TOKEN, MemoryBackend

PAYLOADS = Path(__file__).parent / "payloads"
MANIFEST: list[dict[str, Any]] = yaml.safe_load((PAYLOADS / "manifest.yaml").read_text(encoding="utf-8"))


def _raw(entry: dict[str, Any]) -> bytes:
    raw = (PAYLOADS / entry["file"]).read_bytes()
    if n := entry.get("repeat_alerts"):
        data = json.loads(raw)
        data["alerts"] = data["alerts"] * n
        raw = json.dumps(data).encode()
    return raw


def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="triage24")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["intake", "check", str(path)])
    code = int(args.func(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_corpus_is_large_and_varied() -> None:
    files = {e["file"] for e in MANIFEST}
    assert len(MANIFEST) >= 20 and len(files) >= 20
    statuses = {e["expect"]["status"] for e in MANIFEST}
    assert statuses >= {200, 201, 400, 413, 415, 422}
    on_disk = {p.name for p in PAYLOADS.glob("*.json")}
    assert on_disk <= {Path(f).name for f in files}, f"files without an expectation: {on_disk - files}"


@pytest.mark.parametrize(
    "entry", MANIFEST, ids=[f"{i:02d}-{e['file'].split('/')[-1]}" for i, e in enumerate(MANIFEST)]
)
def test_a_corpus_payload_gets_its_expected_answer(
    entry: dict[str, Any], client: TestClient, backend: MemoryBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    expect = entry["expect"]
    raw = _raw(entry)
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": entry.get("content_type", "application/json"),
    }
    resp = client.post("/alertmanager", content=raw, headers=headers)
    answer = resp.json()
    assert resp.status_code == expect["status"], answer
    if expect["status"] >= 400:
        problem = next((p for p in answer["problems"] if p["field"] == expect["field"]), None)
        assert problem is not None, answer["problems"]
        assert expect["message"] in problem["message"], problem
        assert problem["fix"], "every refusal says how to fix it"
    else:
        assert (answer["outcome"], answer["grade"], answer["rule"]) == (
            expect["outcome"],
            expect["grade"],
            expect["rule"],
        )
        assert expect.get("detail", "") in answer["detail"]
        payload = validate(loads(raw))
        if "fingerprints" in expect:
            assert [a.fingerprint for a in payload.alerts] == expect["fingerprints"]
        if "computed" in expect:
            assert payload.computed_fingerprints == expect["computed"]
        assert payload.origin == expect.get("origin", "alertmanager")
        if answer["outcome"] == "created":
            conf = backend.runs[answer["run_id"]].conf
            assert conf["origin"] == payload.origin and conf["truncated_alerts"] == payload.truncated_alerts
    if "content_type" in entry or "repeat_alerts" in entry:
        return  # the CLI reads files as JSON of any size under the limit: nothing more to compare
    code, out, err = _check(PAYLOADS / entry["file"], capsys)
    if expect["status"] >= 400:
        assert code == 1 and f"refused with HTTP {expect['status']}" in err and f"{expect['field']}:" in err
        return
    assert code == 0, err
    assert f"group grade {expect['grade']} ({expect['rule']})" in out
    if answer.get("run_id") and answer["outcome"] == "created":
        assert f"run id: {answer['run_id']}" in out, "the CLI prints the run id the service created"
    if expect["outcome"] == "resolved":
        assert (
            "starts an incident: no - no firing alert" in out
            and "yes" not in out.split("starts an incident")[1]
        )
