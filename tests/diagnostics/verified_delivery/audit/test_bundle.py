"""Building the audit bundle of a real incident: contents, decision snapshot, canonical files, the
chain index, and no PII (nor the key) in any byte of it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.incident.results import Status
from diagnostics.verified_delivery.audit import (
    AuditError,
    build_bundle,
    canonical_json,
    seal_incident,
    verify_bundle,
    verify_chain,
)
from diagnostics.verified_delivery.audit.bundle import (
    MANIFEST,
    SEAL,
    SNAPSHOT,
    SNAPSHOT_SHA,
    approval,
    bundle_digest,
)
from diagnostics.verified_delivery.audit.chain import CHAIN_FILE, parse_chain
from tests.diagnostics.verified_delivery.audit.conftest import (
    FIXTURE,
    INCIDENT,
    KEY,
    POLICY,
    SECRET,
    all_bytes,
    copy_incident,
    pii_values,
    plant_pii,
    sample,
)

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _build(tmp_path: Path, previous: str | None = None) -> Path:
    incident = copy_incident(tmp_path / "artifacts")
    bundle = tmp_path / "bundle"
    build_bundle(incident, bundle, KEY, previous, policy=POLICY, created_at=NOW)
    return bundle


def test_a_clean_bundle_verifies_and_holds_every_artifact(tmp_path: Path) -> None:
    bundle = _build(tmp_path)
    result = verify_bundle(bundle, KEY)
    assert result.status is Status.OK, result.problems
    assert result.problems == [] and result.incident_id == INCIDENT
    artifacts = sorted(p.relative_to(FIXTURE).as_posix() for p in FIXTURE.rglob("*.json"))
    evidence = sorted(
        p.relative_to(bundle / "evidence").as_posix() for p in (bundle / "evidence").rglob("*.json")
    )
    assert evidence == artifacts
    manifest = json.loads((bundle / MANIFEST).read_bytes())
    assert set(manifest["files"]) == {f"evidence/{a}" for a in artifacts} | {SNAPSHOT, SNAPSHOT_SHA}
    assert result.files_checked == len(manifest["files"])
    for rel, entry in manifest["files"].items():
        data = (bundle / rel).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_digest_and_signature_are_the_documented_construction(tmp_path: Path) -> None:
    previous = "ab" * 32
    bundle = _build(tmp_path, previous)
    manifest_raw = (bundle / MANIFEST).read_bytes()
    seal = json.loads((bundle / SEAL).read_bytes())
    expected = hashlib.sha256(manifest_raw + previous.encode()).hexdigest()
    assert seal["bundle_digest"] == expected == bundle_digest(json.loads(manifest_raw), previous)
    assert seal["previous_digest"] == previous
    assert seal["signature"] == KEY.sign(expected.encode()) and seal["key_id"] == KEY.key_id
    for name in (MANIFEST, SEAL, SNAPSHOT):  # stored as exactly their canonical bytes
        raw = (bundle / name).read_bytes()
        assert raw == canonical_json(json.loads(raw))
        assert b"\n" not in raw  # one line, no trailing newline (newlines in strings are escaped)
    snapshot = (bundle / SNAPSHOT).read_bytes()
    digest = hashlib.sha256(snapshot).hexdigest()
    assert (bundle / SNAPSHOT_SHA).read_text() == f"{digest}  {SNAPSHOT}\n"
    assert json.loads(manifest_raw)["snapshot_sha256"] == digest


def test_canonical_json_is_sorted_compact_utf8() -> None:
    # RFC 8785: ECMAScript number form (1e-7, not Python's 1e-07; 1, not 1.0); the vectors are in
    # test_canonical.py
    assert canonical_json({"b": [1, 2.5, None, 1.0], "a": "上海", "c": {"z": True, "y": 1e-07}}) == (
        '{"a":"上海","b":[1,2.5,null,1],"c":{"y":1e-7,"z":true}}'.encode()
    )
    for refused in ({"s": "\ud800"}, {"x": float("nan")}, {"n": 2**53}):  # not I-JSON: refused
        with pytest.raises(ValueError):
            canonical_json(refused)


def test_the_decision_snapshot_holds_inputs_thresholds_models_outcome_and_approver(tmp_path: Path) -> None:
    incident = copy_incident(tmp_path / "artifacts")
    plant_pii(incident, sample(1), approver="alice.oncall@example.com")
    bundle = tmp_path / "bundle"
    build_bundle(incident, bundle, KEY, None, policy=POLICY, created_at=NOW)
    snap = json.loads((bundle / SNAPSHOT).read_bytes())
    original = json.loads((FIXTURE / "decision" / "decision.json").read_text())
    d = snap["decision"]
    assert (d["outcome"], d["rule"], d["status"]) == ("rollback", "critical_canary_finding", "failed")
    assert d["thresholds"]["risk"] == original["thresholds"]["risk"]
    assert d["thresholds"]["precedence"] == original["thresholds"]["precedence"]
    assert d["inputs"]["channels"] == original["inputs"]["channels"]
    assert d["inputs"]["canary_weight_percent"] == 10.0 and d["reasons"][0].startswith("critical canary")
    models = {(m["version"], m["name"]): m for m in snap["models"]["models"]}
    canary = models[("canary", "clip-shapes")]
    assert canary["verdict"] == "checksum_mismatch"
    assert canary["reported_sha256"] == "4a9cd6e705cdb94cde173396c4c07ab907db34359f3a0c0ae1f2049e8da67a9f"
    assert canary["expected_sha256"] == "9bdaad55e6ff714cd2fa6620c334506b7e8235177a73d60b78450c86eafc0d33"
    rollback = next(a for a in snap["actions"] if a["check"] == "rollback")
    assert (rollback["outcome"], rollback["changed"], rollback["method"]) == (
        "applied",
        True,
        "gateway_weight",
    )
    (gate,) = [a for a in snap["approvals"] if a["action"] == "rollback"]
    assert (gate["by"], gate["gate"], gate["choice"]) == ("human", "L3", "Roll back the canary")
    # the approver is an e-mail address: hashed, linkable, not readable
    assert re.fullmatch(r"\[email:[0-9a-f]{8}\]", gate["human"]) and snap["approved_by"] == [gate["human"]]
    assert "alice.oncall" not in (bundle / SNAPSHOT).read_text()
    assert snap["incident"]["grade"] == "L2" and snap["incident_id"] == INCIDENT


def test_who_decided_is_read_from_the_responses_decided_by() -> None:
    assert approval("decision") == {"by": "decision", "human": None, "text": "decision"}
    timeout = approval("human gate L2: 'Hold and escalate' by the timeout default")
    assert (timeout["by"], timeout["human"], timeout["choice"]) == (
        "timeout_default",
        None,
        "Hold and escalate",
    )
    human = approval("human gate L4: 'Roll back the canary' answered by bob")
    assert (human["by"], human["human"], human["gate"]) == ("human", "bob", "L4")


def test_a_bundle_without_a_decision_still_snapshots_what_exists(tmp_path: Path) -> None:
    incident = copy_incident(tmp_path / "artifacts")
    for sub in ("decision", "response"):
        for p in (incident / sub).iterdir():
            p.unlink()
        (incident / sub).rmdir()
    (incident / "golden_window" / "model_integrity.json").unlink()
    bundle = tmp_path / "bundle"
    build_bundle(incident, bundle, KEY, None, policy=POLICY)
    snap = json.loads((bundle / SNAPSHOT).read_bytes())
    assert (snap["decision"], snap["models"], snap["actions"], snap["approved_by"]) == (None, None, [], [])
    assert verify_bundle(bundle, KEY).status is Status.OK


def test_hidden_binary_and_symlinked_files_are_left_out_and_listed(tmp_path: Path) -> None:
    incident = copy_incident(tmp_path / "artifacts")
    (incident / "golden_window" / ".summary.json.tmp123").write_text('{"half": ')
    (incident / "report").mkdir()
    (incident / "report" / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    (incident / "report" / "elsewhere.json").symlink_to(tmp_path / "outside.json")
    (tmp_path / "outside.json").write_text('{"email": "leak@example.com"}')
    bundle = tmp_path / "bundle"
    info = build_bundle(incident, bundle, KEY, None, policy=POLICY)
    left = {o.path: o for o in info.omitted}
    assert {p: o.reason for p, o in left.items()} == {
        "golden_window/.summary.json.tmp123": "hidden",
        "report/plot.png": "binary",
        "report/elsewhere.json": "symlink",
    }
    assert left["report/plot.png"].sha256 == hashlib.sha256(b"\x89PNG\r\n\x1a\n\xff\xfe\x00").hexdigest()
    assert not (bundle / "evidence" / "report").exists()
    assert b"leak@example.com" not in all_bytes(bundle)
    manifest = json.loads((bundle / MANIFEST).read_bytes())
    assert {o["path"] for o in manifest["omitted"]} == set(left)
    assert verify_bundle(bundle, KEY).status is Status.OK


def test_a_file_name_that_is_not_utf8_is_left_out_and_listed(tmp_path: Path) -> None:
    incident = copy_incident(tmp_path / "artifacts")
    with open(os.fsencode(incident / "golden_window") + b"/notes-\xff.txt", "wb") as fh:
        fh.write(b"latin-1 name\n")
    bundle = tmp_path / "bundle"
    info = build_bundle(incident, bundle, KEY, None, policy=POLICY)
    assert [(o.path, o.reason, o.size) for o in info.omitted] == [
        ("golden_window/notes-\\xff.txt", "non_utf8_name", 13)
    ]
    assert verify_bundle(bundle, KEY).status is Status.OK


def test_values_jcs_refuses_reach_the_snapshot_as_strings(tmp_path: Path) -> None:
    incident = copy_incident(tmp_path / "artifacts")
    path = incident / "decision" / "decision.json"
    decision = json.loads(path.read_text())
    decision["inputs"] = {"trace": 2**70, "score": float("nan"), "label": "x\ud800"}
    path.write_text(json.dumps(decision))  # Python writes NaN and the lone surrogate's escape
    bundle = tmp_path / "bundle"
    build_bundle(incident, bundle, KEY, None, policy=POLICY)
    snap = json.loads((bundle / SNAPSHOT).read_bytes())
    assert snap["decision"]["inputs"] == {"trace": str(2**70), "score": "NaN", "label": "x\ufffd"}
    assert verify_bundle(bundle, KEY).status is Status.OK


def test_an_existing_bundle_is_never_overwritten_and_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    bundle = _build(tmp_path)
    before = all_bytes(bundle)
    with pytest.raises(AuditError, match="never overwritten"):
        build_bundle(tmp_path / "artifacts" / INCIDENT, bundle, KEY, None, policy=POLICY)
    assert all_bytes(bundle) == before
    with pytest.raises(AuditError, match="no incident artifacts"):
        build_bundle(tmp_path / "nope", tmp_path / "b2", KEY, None, policy=POLICY)
    with pytest.raises(AuditError, match="64 lower-case hex"):
        build_bundle(tmp_path / "artifacts" / INCIDENT, tmp_path / "b3", KEY, "not-a-digest", policy=POLICY)
    assert not (tmp_path / "b2").exists() and not (tmp_path / "b3").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_seal_incident_chains_bundles_in_the_index(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    copy_incident(root)
    copy_incident(root, "manual__2026-12-01T09:10:00+00:00")
    first = seal_incident(INCIDENT, KEY, root=root, policy=POLICY)
    second = seal_incident("manual__2026-12-01T09:10:00+00:00", KEY, root=root, policy=POLICY)
    third = seal_incident(INCIDENT, KEY, root=root, policy=POLICY)  # a second bundle of one incident
    entries, bad = parse_chain(root / "audit" / CHAIN_FILE)
    assert bad == []
    assert [e.seq for e in entries] == [1, 2, 3]
    assert [e.previous_digest for e in entries] == [None, first.bundle_digest, second.bundle_digest]
    assert [e.bundle_digest for e in entries] == [
        first.bundle_digest,
        second.bundle_digest,
        third.bundle_digest,
    ]
    assert all((root / "audit" / e.bundle / SEAL).is_file() for e in entries)
    chain = verify_chain(root, KEY)
    assert chain.status is Status.OK, chain.problems
    assert len(chain.bundles) == 3


def test_seal_incident_refuses_ids_that_are_not_folders(tmp_path: Path) -> None:
    for bad in ("../etc", "audit", ""):
        with pytest.raises(AuditError):
            seal_incident(bad, KEY, root=tmp_path, policy=POLICY)


def test_the_key_is_in_no_file(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    copy_incident(root)
    info = seal_incident(INCIDENT, KEY, root=root, policy=POLICY)
    assert SECRET.encode() not in all_bytes(root / "audit")
    assert SECRET not in info.model_dump_json() and SECRET not in repr(KEY)
    with pytest.raises(TypeError, match="never serialised"):
        import pickle

        pickle.dumps(KEY)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**6), st.booleans())
def test_no_generated_pii_reaches_any_file_of_the_bundle(seed: int, default_approver: bool) -> None:
    s = sample(seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "artifacts"
        incident = copy_incident(root)
        plant_pii(incident, s, approver=None if default_approver else s.cn_phone)
        seal_incident(INCIDENT, KEY, root=root, policy=POLICY)
        everything = all_bytes(root / "audit")
        text = everything.decode("utf-8")
        for value in pii_values(s):
            assert value not in text, value
        # the planted places are there, masked: nothing was dropped to pass this test
        assert "[id_card]" in text and "[card]" in text and "[email:" in text and "[phone:" in text
        assert "[ip:" in text and "手机[phone:" in text
        # ... and the real evidence around them is kept
        assert "4a9cd6e705cdb94cde173396c4c07ab907db34359f3a0c0ae1f2049e8da67a9f" in text
        assert "2026-12-01T08:56:59.163991Z" in text and '"window_s": 900.0' in text
