"""Tampering is detected: any byte of any file flipped, any file deleted or added, any chain link
broken. Each property starts from a clean, verified bundle (or chain) and changes one thing."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.incident.results import Status
from diagnostics.verified_delivery.audit import (
    AuditKey,
    ProblemKind,
    seal_incident,
    verify_bundle,
    verify_chain,
)
from diagnostics.verified_delivery.audit.bundle import (
    FORMAT,
    FORMAT_V1,
    MANIFEST,
    SEAL,
    SNAPSHOT,
    build_bundle,
    bundle_digest,
    sign,
)
from diagnostics.verified_delivery.audit.canonical import canonical_json, legacy_canonical_json, sha256_hex
from diagnostics.verified_delivery.audit.chain import CHAIN_FILE
from tests.diagnostics.verified_delivery.audit.conftest import (
    INCIDENT,
    KEY,
    POLICY,
    copy_incident,
    plant_pii,
    reseal_as_v1,
    sample,
)


@pytest.fixture(scope="module")
def clean_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("bundle")
    incident = copy_incident(tmp / "artifacts")
    plant_pii(incident, sample(3))
    bundle = tmp / "bundle"
    build_bundle(incident, bundle, KEY, "cd" * 32, policy=POLICY)
    assert verify_bundle(bundle, KEY).status is Status.OK
    return bundle


@pytest.fixture(scope="module")
def clean_chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chain") / "artifacts"
    copy_incident(root)
    copy_incident(root, "incident__second")
    for incident in (INCIDENT, "incident__second", INCIDENT, "incident__second"):
        seal_incident(incident, KEY, root=root, policy=POLICY)
    assert verify_chain(root, KEY).status is Status.OK
    return root


@pytest.fixture
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def _files(bundle: Path) -> list[str]:
    return sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())


def _copy(src: Path) -> tuple[tempfile.TemporaryDirectory[str], Path]:
    tmp = tempfile.TemporaryDirectory()
    dst = Path(tmp.name) / src.name
    shutil.copytree(src, dst, symlinks=True)
    return tmp, dst


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_flipping_any_byte_of_any_file_is_detected(clean_bundle: Path, data: st.DataObject) -> None:
    files = _files(clean_bundle)
    rel = data.draw(st.sampled_from(files), label="file")
    size = (clean_bundle / rel).stat().st_size
    offset = data.draw(st.integers(0, size - 1), label="offset")
    mask = data.draw(st.integers(1, 255), label="xor")
    tmp, bundle = _copy(clean_bundle)
    with tmp:
        raw = bytearray((bundle / rel).read_bytes())
        raw[offset] ^= mask
        (bundle / rel).write_bytes(bytes(raw))
        result = verify_bundle(bundle, KEY)
        assert result.status is Status.FAILED
        assert any(p.path == rel for p in result.problems), [str(p) for p in result.problems]


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_deleting_any_file_is_detected(clean_bundle: Path, data: st.DataObject) -> None:
    rel = data.draw(st.sampled_from(_files(clean_bundle)))
    tmp, bundle = _copy(clean_bundle)
    with tmp:
        (bundle / rel).unlink()
        result = verify_bundle(bundle, KEY)
        assert result.status is Status.FAILED
        assert any(p.kind is ProblemKind.MISSING and p.path == rel for p in result.problems), result.problems


_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=12).filter(
    lambda n: n not in (".", "..")
)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), name=_name, content=st.binary(max_size=64))
def test_adding_any_file_is_detected(
    clean_bundle: Path, data: st.DataObject, name: str, content: bytes
) -> None:
    folders = sorted({str(Path(f).parent) for f in _files(clean_bundle)})
    folder = data.draw(st.sampled_from(folders))
    rel = (Path(folder) / name).as_posix()
    if (clean_bundle / rel).exists():
        rel = (Path(folder) / f"extra-{name}").as_posix()
    tmp, bundle = _copy(clean_bundle)
    with tmp:
        (bundle / rel).write_bytes(content)
        result = verify_bundle(bundle, KEY)
        assert result.status is Status.FAILED
        assert [str(p) for p in result.problems] == [f"added: {rel}: not in the manifest"]


def test_a_wrong_key_is_a_bad_signature_naming_both_key_ids(clean_bundle: Path) -> None:
    other = AuditKey("some-other-key-of-enough-length")
    result = verify_bundle(clean_bundle, other)
    assert [p.kind for p in result.problems] == [ProblemKind.BAD_SIGNATURE]
    assert KEY.key_id in result.problems[0].message and other.key_id in result.problems[0].message


def test_a_consistently_rewritten_bundle_fails_on_the_signature(clean_bundle: Path, scratch: Path) -> None:
    """Someone without the key edits evidence and recomputes every digest: only the key can sign."""
    bundle = scratch / "b"
    shutil.copytree(clean_bundle, bundle)
    target = bundle / "evidence" / "decision" / "decision.json"
    target.write_text(target.read_text().replace('"rollback"', '"continue"'))
    manifest = json.loads((bundle / MANIFEST).read_bytes())
    data = target.read_bytes()
    manifest["files"]["evidence/decision/decision.json"] = {"sha256": sha256_hex(data), "size": len(data)}
    (bundle / MANIFEST).write_bytes(canonical_json(manifest))
    seal = json.loads((bundle / SEAL).read_bytes())
    seal["bundle_digest"] = bundle_digest(manifest, seal["previous_digest"])
    forger = AuditKey("the-forgers-own-key-0000000000")
    seal["signature"] = sign(forger, seal["bundle_digest"])
    (bundle / SEAL).write_bytes(canonical_json(seal))
    result = verify_bundle(bundle, KEY)
    assert [p.kind for p in result.problems] == [ProblemKind.BAD_SIGNATURE]


def test_an_edited_snapshot_is_a_bad_snapshot_digest(clean_bundle: Path, scratch: Path) -> None:
    bundle = scratch / "b"
    shutil.copytree(clean_bundle, bundle)
    snap = json.loads((bundle / SNAPSHOT).read_bytes())
    snap["decision"]["outcome"] = "continue"
    (bundle / SNAPSHOT).write_bytes(canonical_json(snap))
    kinds = {(p.kind, p.path) for p in verify_bundle(bundle, KEY).problems}
    assert (ProblemKind.BAD_SNAPSHOT, SNAPSHOT) in kinds and (ProblemKind.MODIFIED, SNAPSHOT) in kinds


def test_a_missing_bundle_folder_is_reported(scratch: Path) -> None:
    result = verify_bundle(scratch / "nothing", KEY)
    assert result.status is Status.FAILED and result.problems[0].kind is ProblemKind.MISSING


def test_a_new_bundle_is_format_v2_rfc_8785(clean_bundle: Path) -> None:
    result = verify_bundle(clean_bundle, KEY)
    assert result.format == FORMAT == "triage24.audit-bundle/v2" and "pre-RFC 8785" not in result.summary
    for name in (MANIFEST, SEAL, SNAPSHOT):
        assert json.loads((clean_bundle / name).read_bytes())["format"].endswith("/v2")


def test_a_v1_bundle_verifies_by_its_own_form_and_says_so(clean_bundle: Path, scratch: Path) -> None:
    bundle = scratch / "b"
    shutil.copytree(clean_bundle, bundle)
    reseal_as_v1(bundle)
    raw = (bundle / SNAPSHOT).read_bytes()
    assert raw != canonical_json(json.loads(raw))  # 1.0, 1e-07: the v1 bytes are not RFC 8785's
    result = verify_bundle(bundle, KEY)
    assert result.status is Status.OK, [str(p) for p in result.problems]
    assert result.format == FORMAT_V1 and "sealed over the pre-RFC 8785 canonical JSON" in result.summary
    strict = verify_bundle(bundle, KEY, accept_legacy=False)
    assert [(p.kind, p.path) for p in strict.problems] == [(ProblemKind.LEGACY_FORMAT, MANIFEST)]
    assert "not RFC 8785" in strict.problems[0].message and strict.status is Status.FAILED
    # a v1 file re-encoded in the v2 form is not in its canonical form: an edit after sealing
    (bundle / SNAPSHOT).write_bytes(canonical_json(json.loads(raw)))
    kinds = {(p.kind, p.path) for p in verify_bundle(bundle, KEY).problems}
    assert (ProblemKind.BAD_SNAPSHOT, SNAPSHOT) in kinds


def test_relabelling_the_format_breaks_the_digest(clean_bundle: Path, scratch: Path) -> None:
    bundle = scratch / "b"
    shutil.copytree(clean_bundle, bundle)
    manifest = json.loads((bundle / MANIFEST).read_bytes())
    manifest["format"] = FORMAT_V1  # a v2 manifest passed off as v1, not re-signed
    (bundle / MANIFEST).write_bytes(legacy_canonical_json(manifest))
    kinds = [(p.kind, p.path) for p in verify_bundle(bundle, KEY).problems]
    assert (ProblemKind.BAD_DIGEST, MANIFEST) in kinds


def test_an_unknown_format_is_named(clean_bundle: Path, scratch: Path) -> None:
    bundle = scratch / "b"
    shutil.copytree(clean_bundle, bundle)
    seal = json.loads((bundle / SEAL).read_bytes())
    seal["format"] = "triage24.audit-bundle/v9"
    (bundle / SEAL).write_bytes(canonical_json(seal))
    problems = verify_bundle(bundle, KEY).problems
    assert [str(p) for p in problems] == [
        "malformed: seal.json: format 'triage24.audit-bundle/v9' is not one this verifier knows "
        "(triage24.audit-bundle/v1, triage24.audit-bundle/v2)"
    ]


# --- the chain ------------------------------------------------------------------------------------


def _lines(root: Path) -> list[str]:
    return (root / "audit" / CHAIN_FILE).read_text().splitlines(keepends=True)


def _break(root: Path, how: str, i: int, j: int) -> None:
    index = root / "audit" / CHAIN_FILE
    lines = _lines(root)
    if how == "delete":
        del lines[i]
    elif how == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    elif how == "duplicate":
        lines.insert(j, lines[i])
    elif how == "previous":
        entry = json.loads(lines[i])
        entry["previous_digest"] = sha256_hex(f"forged {i}".encode())
        lines[i] = json.dumps(entry) + "\n"
    elif how == "digest":
        entry = json.loads(lines[i])
        entry["bundle_digest"] = sha256_hex(f"forged {i}".encode())
        lines[i] = json.dumps(entry) + "\n"
    elif how == "resealed":
        # a bundle re-sealed with the right key but chained elsewhere, index edited to match
        entry = json.loads(lines[i])
        bundle = root / "audit" / entry["bundle"]
        seal = json.loads((bundle / SEAL).read_bytes())
        manifest = json.loads((bundle / MANIFEST).read_bytes())
        seal["previous_digest"] = sha256_hex(b"somewhere else")
        seal["bundle_digest"] = bundle_digest(manifest, seal["previous_digest"])
        seal["signature"] = sign(KEY, seal["bundle_digest"])
        (bundle / SEAL).write_bytes(canonical_json(seal))
        entry["previous_digest"], entry["bundle_digest"] = seal["previous_digest"], seal["bundle_digest"]
        lines[i] = json.dumps(entry) + "\n"
    elif how == "remove_bundle":
        entry = json.loads(lines[i])
        shutil.rmtree(root / "audit" / entry["bundle"])
    elif how == "truncate":
        lines[-1] = lines[-1][: max(1, j * 7 % len(lines[-1]) - 1)]
    index.write_text("".join(lines))


@settings(max_examples=80, deadline=None)
@given(
    how=st.sampled_from(
        ["delete", "swap", "duplicate", "previous", "digest", "resealed", "remove_bundle", "truncate"]
    ),
    i=st.integers(0, 3),
    j=st.integers(0, 3),
)
def test_breaking_the_chain_is_detected(clean_chain: Path, how: str, i: int, j: int) -> None:
    if how == "swap" and i == j:
        j = (i + 1) % 4
    tmp, root = _copy(clean_chain)
    with tmp:
        _break(root, how, i, j)
        result = verify_chain(root, KEY)
        assert result.status is Status.FAILED, (how, i, j)
        assert result.problems
        kinds = {p.kind for p in result.problems}
        if how == "delete" and i == 3:
            # the newest line gone: no later link breaks, but its bundle is outside the chain now
            assert ProblemKind.ADDED in kinds, [str(p) for p in result.problems]
        elif how in ("delete", "swap", "duplicate", "previous", "digest", "resealed"):
            assert ProblemKind.CHAIN_BREAK in kinds, [str(p) for p in result.problems]


def test_a_chain_break_names_the_bundle_and_both_digests(clean_chain: Path, scratch: Path) -> None:
    root = scratch / "artifacts"
    shutil.copytree(clean_chain, root)
    entries = [json.loads(line) for line in _lines(root)]
    _break(root, "delete", 1, 0)
    problems = [str(p) for p in verify_chain(root, KEY).problems]
    third = entries[2]["bundle"]
    expected = (
        f"chain_break: {third}: previous digest {entries[1]['bundle_digest'][:12]}… is not its "
        f"predecessor's digest {entries[0]['bundle_digest'][:12]}…"
    )
    assert expected in problems, problems
    # the removed line's bundle is still on disk: it is reported as outside the chain
    assert f"added: {entries[1]['bundle']}: a bundle that is not in the chain index" in problems


def test_tampering_inside_a_chained_bundle_is_reported_with_its_path(
    clean_chain: Path, scratch: Path
) -> None:
    root = scratch / "artifacts"
    shutil.copytree(clean_chain, root)
    entry = json.loads(_lines(root)[2])
    target = root / "audit" / entry["bundle"] / "evidence" / "incident.json"
    target.write_text(target.read_text().replace("L2", "L4"))
    problems = verify_chain(root, KEY).problems
    assert [(p.kind, p.path) for p in problems] == [
        (ProblemKind.MODIFIED, f"{entry['bundle']}/evidence/incident.json")
    ]


def test_an_empty_root_is_ok_and_bundles_without_an_index_are_not(clean_chain: Path, scratch: Path) -> None:
    assert verify_chain(scratch, KEY).status is Status.OK
    root = scratch / "artifacts"
    shutil.copytree(clean_chain, root)
    (root / "audit" / CHAIN_FILE).unlink()
    result = verify_chain(root, KEY)
    assert result.status is Status.FAILED
    assert (
        result.problems[0].kind is ProblemKind.MISSING and "4 bundle(s) exist" in result.problems[0].message
    )


def test_sealing_after_a_damaged_index_is_refused(clean_chain: Path, scratch: Path) -> None:
    from diagnostics.verified_delivery.audit import AuditError

    root = scratch / "artifacts"
    shutil.copytree(clean_chain, root)
    index = root / "audit" / CHAIN_FILE
    index.write_text(index.read_text()[:-20])
    with pytest.raises(AuditError, match=r"line 4: the last line is cut short.*verify --chain"):
        seal_incident(INCIDENT, KEY, root=root, policy=POLICY)
