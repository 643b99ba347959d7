"""``triage24 audit build|verify``: exit codes, one problem per line, the key never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics.cli import main
from diagnostics.verified_delivery.audit.chain import CHAIN_FILE
from tests.diagnostics.verified_delivery.audit.conftest import INCIDENT, SECRET, copy_incident, reseal_as_v1


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    artifacts = tmp_path / "artifacts"
    copy_incident(artifacts)
    monkeypatch.setenv("TRIAGE24_ARTIFACT_ROOT", str(artifacts))
    monkeypatch.setenv("TRIAGE24_AUDIT_KEY", SECRET)
    return artifacts


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(["audit", *argv])
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    return code, out.splitlines(), err


def test_build_then_verify_the_bundle_and_the_chain(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "build", INCIDENT)
    assert code == 0
    bundle = Path(out[0].removeprefix("bundle "))
    assert bundle.parent == root / "audit" / "bundles" / INCIDENT
    assert out[2] == "previous digest none (first bundle of the chain)"
    code, out, _ = _run(capsys, "build", INCIDENT, "--json")
    assert code == 0 and json.loads("\n".join(out))["previous_digest"]

    code, out, _ = _run(capsys, "verify", str(bundle))
    assert code == 0 and out == [out[0]] and out[0].startswith("ok: ") and "intact" in out[0]
    code, out, _ = _run(capsys, "verify", "--chain")  # the artifact root from the environment
    assert code == 0 and out[0].startswith("ok: ") and "chain of 2 bundle(s) intact" in out[0]
    code, out, _ = _run(capsys, "verify", "--chain", str(root))
    assert code == 0


def test_each_problem_on_its_own_line_and_exit_1(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run(capsys, "build", INCIDENT)
    code, out, _ = _run(capsys, "build", INCIDENT)
    bundle = Path(out[0].removeprefix("bundle "))
    (bundle / "evidence" / "incident.json").write_text("{}\n")
    (bundle / "evidence" / "golden_window" / "summary.json").unlink()
    (bundle / "evidence" / "notes.txt").write_text("added later\n")
    code, out, _ = _run(capsys, "verify", str(bundle))
    assert code == 1
    assert out[:-1] == [
        "missing: evidence/golden_window/summary.json: listed in the manifest, not in the bundle",
        out[1],
        "added: evidence/notes.txt: not in the manifest",
    ]
    assert out[1].startswith("modified: evidence/incident.json: sha256 ")
    assert out[-1] == "failed: 3 problem(s)"

    code, out, _ = _run(capsys, "verify", "--chain")
    assert code == 1 and len(out) == 4 and out[-1] == "failed: 3 problem(s)"
    rel = bundle.relative_to(root / "audit").as_posix()
    assert all(line.split(": ")[1].startswith(rel) for line in out[:-1])

    code, out, _ = _run(capsys, "verify", "--chain", "--json")
    result = json.loads("\n".join(out))
    assert code == 1 and result["status"] == "failed" and len(result["problems"]) == 3


def test_a_chain_break_fails_the_chain_but_not_the_bundle(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        _run(capsys, "build", INCIDENT)
    index = root / "audit" / CHAIN_FILE
    lines = index.read_text().splitlines(keepends=True)
    index.write_text(lines[0] + lines[2])
    code, out, _ = _run(capsys, "verify", "--chain")
    assert code == 1
    assert any(line.startswith("chain_break: ") and "is not its predecessor's digest" in line for line in out)
    assert any(line.startswith("added: bundles/") for line in out)
    bundle = root / "audit" / json.loads(lines[2])["bundle"]
    assert _run(capsys, "verify", str(bundle))[0] == 0


def test_no_key_or_nothing_to_verify_is_exit_2(
    root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = _run(capsys, "verify")
    assert code == 2 and "give a bundle folder, or --chain" in err
    code, _, err = _run(capsys, "build", "incident__nope")
    assert code == 2 and "no incident artifacts at" in err
    monkeypatch.delenv("TRIAGE24_AUDIT_KEY")
    for argv in (("build", INCIDENT), ("verify", "--chain")):
        code, _, err = _run(capsys, *argv)
        assert code == 2 and "TRIAGE24_AUDIT_KEY is not set" in err and "secrets.token_hex" in err
    monkeypatch.setenv("TRIAGE24_AUDIT_KEY", "k3y-leak")
    code, out, err = _run(capsys, "build", INCIDENT)
    assert code == 2 and "at least 16 bytes (got 8)" in err and "k3y-leak" not in err + "".join(out)


def test_a_wrong_key_fails_verification(
    root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = _run(capsys, "build", INCIDENT)
    bundle = out[0].removeprefix("bundle ")
    monkeypatch.setenv("TRIAGE24_AUDIT_KEY", "a-different-key-of-enough-length")
    code, out, _ = _run(capsys, "verify", bundle)
    assert code == 1 and out[0].startswith("bad_signature: seal.json: signed with key id ")


def test_a_v1_bundle_passes_and_says_so_or_fails_with_reject_legacy(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "build", INCIDENT)
    bundle = Path(out[0].removeprefix("bundle "))
    reseal_as_v1(bundle)  # the chain index still holds the v2 digest: verify the bundle alone
    code, out, _ = _run(capsys, "verify", str(bundle))
    assert code == 0 and out[0].startswith("ok: ") and "(format triage24.audit-bundle/v1: " in out[0]
    code, out, _ = _run(capsys, "verify", str(bundle), "--reject-legacy")
    assert code == 1 and out[0].startswith("legacy_format: manifest.json: triage24.audit-bundle/v1: ")
