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
