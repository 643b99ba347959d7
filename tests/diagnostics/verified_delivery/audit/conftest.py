"""Fixtures of the audit bundle tests: a real incident's artifacts, with generated PII planted in them.

``tests/diagnostics/fixtures/incident_rollback/`` is a trimmed copy of a real incident: the
``incident_response`` DAG run by ``benchmarks/rollback.py`` against the testbed with the canary's
CLIP checksum broken (phase 1 found ``model_not_loaded``, the decision rolled back by rule
``critical_canary_finding``, the gateway weight went 10 -> 0 and recovery was verified). Trimmed:
two of the eight metrics channels, one of the recovery samples; host paths replaced by
``/var/lib/triage24``.

:func:`plant_pii` writes a caller profile (``testbed.faults.make_pii``, the generator the PII tests
use) into every place evidence can carry it: a JSON string, a JSON key, a JSON number, a JSON-lines
log, a plain text log, and the human who approved at the gate.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from diagnostics.verified_delivery.audit import AuditKey
from diagnostics.verified_delivery.audit.masking import load_pii_policy
from testbed.faults import PiiSample, make_pii
from tests.conftest import REPO

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "incident_rollback"
INCIDENT = "incident__rb0-5c82a0-testbed-canary__f2765b485f14f4292dc1727f"
SECRET = "test-audit-key-0123456789abcdef-not-for-production"
KEY = AuditKey(SECRET)
POLICY = load_pii_policy(REPO / "runbooks", environ={})


def copy_incident(root: Path, incident_id: str = INCIDENT) -> Path:
    """The fixture incident under ``<root>/<incident_id>/`` (the artifact layout)."""
    target = root / incident_id
    shutil.copytree(FIXTURE, target)
    return target


def _edit_json(path: Path, edit: object) -> None:
    data = json.loads(path.read_text())
    edit(data)  # type: ignore[operator]
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def plant_pii(incident_dir: Path, sample: PiiSample, approver: str | None = None) -> None:
    """Generated PII in every kind of place evidence can carry it (see the module docstring)."""
    line = f"request completed caller profile: {sample.as_text()}"

    def log_classification(d: dict[str, object]) -> None:
        problems = d["classification"]["problems"]  # type: ignore[index]
        problems[0]["samples"].append(f"08:56:30.001 canary/text WARNING {line}")  # type: ignore[index]
        d["details"]["callers"] = {sample.email: 2, sample.cn_phone: 1}  # type: ignore[index]

    def rollback(d: dict[str, object]) -> None:
        who = approver or sample.email
        d["details"]["decided_by"] = f"human gate L3: 'Roll back the canary' answered by {who}"  # type: ignore[index]
        d["details"]["caller_card"] = int(sample.card)  # type: ignore[index]

    _edit_json(incident_dir / "golden_window" / "log_classification.json", log_classification)
    _edit_json(incident_dir / "response" / "rollback.json", rollback)
    records = [
        {"ts": "2026-12-01T08:56:30.001Z", "level": "WARNING", "version": "canary", "message": line},
        {"ts": "2026-12-01T08:56:31.002Z", "caller": {"phone": sample.intl_phone, "id": sample.cn_id}},
    ]
    (incident_dir / "golden_window" / "logs.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records) + "not json: " + line + "\n"
    )
    (incident_dir / "golden_window" / "excerpt.log").write_text(
        f"08:56:30 gateway INFO {line}\n08:56:31 gateway INFO from 203.0.113.7 手机{sample.cn_phone}，谢谢\n"
    )


def pii_values(sample: PiiSample) -> list[str]:
    """Every form a planted value could leak in: as written, and as bare digits."""
    values = [sample.cn_phone, sample.intl_phone, sample.cn_id, sample.email, sample.card, "203.0.113.7"]
    digits = [
        "".join(c for c in v if c.isdigit()) for v in (sample.intl_phone, sample.card, sample.cn_id[:17])
    ]
    return values + digits + [sample.email.split("@")[0] + "@"]


def sample(seed: int) -> PiiSample:
    return make_pii(random.Random(seed))


def all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def reseal_as_v1(bundle: Path) -> None:
    """Rewrite a (v2) bundle in place as the v1 format sealed it: Python's json.dumps canonical form,
    v1 format names, digest and signature recomputed with :data:`KEY`. The snapshot gets floats whose
    v1 text differs from RFC 8785's (``1.0``, ``1e-07``), so the two forms are told apart."""
    from diagnostics.verified_delivery.audit.bundle import (
        FORMAT_V1,
        MANIFEST,
        SEAL,
        SNAPSHOT,
        SNAPSHOT_SHA,
        bundle_digest,
        sign,
    )
    from diagnostics.verified_delivery.audit.canonical import legacy_canonical_json, sha256_hex

    snapshot = json.loads((bundle / SNAPSHOT).read_bytes())
    snapshot["format"] = "triage24.decision-snapshot/v1"
    snapshot["floats"] = [1.0, 1e-07, 1e16]
    raw = legacy_canonical_json(snapshot)
    (bundle / SNAPSHOT).write_bytes(raw)
    snapshot_sha = sha256_hex(raw)
    sha_line = f"{snapshot_sha}  {SNAPSHOT}\n".encode("ascii")
    (bundle / SNAPSHOT_SHA).write_bytes(sha_line)
    manifest = json.loads((bundle / MANIFEST).read_bytes())
    manifest["format"] = FORMAT_V1
    manifest["snapshot_sha256"] = snapshot_sha
    manifest["files"][SNAPSHOT] = {"sha256": snapshot_sha, "size": len(raw)}
    manifest["files"][SNAPSHOT_SHA] = {"sha256": sha256_hex(sha_line), "size": len(sha_line)}
    (bundle / MANIFEST).write_bytes(legacy_canonical_json(manifest))
    seal = json.loads((bundle / SEAL).read_bytes())
    seal["format"] = FORMAT_V1
    seal["bundle_digest"] = bundle_digest(manifest, seal["previous_digest"])
    seal["signature"] = sign(KEY, seal["bundle_digest"])
    (bundle / SEAL).write_bytes(legacy_canonical_json(seal))
