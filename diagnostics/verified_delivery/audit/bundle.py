"""The audit bundle of one incident: masked evidence, a decision snapshot, a manifest, a signed seal.

What an auditor gets, months later, to answer "what did the pipeline see, what did it decide, who
approved, and has anything been changed since": ::

    <bundle>/
      evidence/<path>                 every artifact of the incident, PII-masked per runbooks/pii.yaml
      decision_snapshot.json          canonical JSON: inputs, thresholds, outcome, reasons, models and
                                      checksums, actions, who approved
      decision_snapshot.json.sha256   its SHA-256, ``sha256sum -c`` format
      manifest.json                   canonical JSON: SHA-256 and size of every file above, what was
                                      left out and why, the PII policy applied
      seal.json                       canonical JSON: bundle digest, previous digest, signature, key id

Masking happens in memory, before anything is written: no unmasked byte reaches the bundle folder.
The bundle is written to a temporary sibling folder and renamed into place, so it appears whole or
not at all, and an existing bundle is never overwritten (bundles are immutable).

Digests (canonical JSON, RFC 8785: :mod:`diagnostics.verified_delivery.audit.canonical`)::

    bundle_digest = sha256(canonical(manifest) + previous_digest)   # "" for the first bundle
    signature     = HMAC-SHA256(signing key, bundle_digest)         # hex, ASCII
    signing key   = HMAC-SHA256(audit key, "triage24.audit/bundle-signature")

``previous_digest`` is the bundle digest of the bundle before this one in the chain
(:mod:`diagnostics.verified_delivery.audit.chain`): changing, removing or reordering any earlier
bundle breaks every
later link. The manifest records it too, and the seal repeats the manifest's incident id, creation
time and previous digest: since the signature vouches for the digest and the digest for the
manifest, a verifier can tell which of the two files was changed.

Hidden files (temp and lock files), symbolic links, binary files (which cannot be masked line
by line) and files whose names are not UTF-8 (JCS holds only Unicode) are left out, and listed in
the manifest with the reason.

Formats: ``triage24.audit-bundle/v2`` (this one) digests and stores RFC 8785 (JCS) bytes; v1 used
Python's ``json.dumps`` form (:func:`~diagnostics.verified_delivery.audit.canonical.legacy_canonical_json`),
which other languages cannot reproduce for every float. v1 bundles still verify, by their own form
(:data:`CANONICAL_FORMS`), and the verifier says they are v1 (or rejects them when asked to).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from diagnostics.runbooks.pii import PiiPolicy
from diagnostics.verified_delivery.audit.canonical import (
    canonical_json,
    file_sha256,
    jcs_safe,
    legacy_canonical_json,
    sha256_hex,
)
from diagnostics.verified_delivery.audit.keys import AuditKey
from diagnostics.verified_delivery.audit.masking import PiiMasker, load_pii_policy

FORMAT = "triage24.audit-bundle/v2"
FORMAT_V1 = "triage24.audit-bundle/v1"
#: The canonical JSON each bundle format digests and stores (v1: before RFC 8785).
CANONICAL_FORMS: dict[str, Callable[[Any], bytes]] = {
    FORMAT_V1: legacy_canonical_json,
    FORMAT: canonical_json,
}
BundleFormat = Literal["triage24.audit-bundle/v1", "triage24.audit-bundle/v2"]
SNAPSHOT_FORMAT = "triage24.decision-snapshot/v2"
EVIDENCE = "evidence"
SNAPSHOT = "decision_snapshot.json"
SNAPSHOT_SHA = "decision_snapshot.json.sha256"
MANIFEST = "manifest.json"
SEAL = "seal.json"
# Files of the bundle that the manifest cannot list (it is one of them; the seal signs it).
UNLISTED = frozenset({MANIFEST, SEAL})

_HEX64 = r"^[0-9a-f]{64}$"


class AuditError(ValueError):
    """A bundle cannot be built (no incident folder, bundle already exists, unusable chain index)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Strict):
    sha256: str = Field(pattern=_HEX64)
    size: int = Field(ge=0)


class Omitted(_Strict):
    """An artifact of the incident that is not in the bundle, and why (its digest, so it is anchored)."""

    path: str
    reason: Literal["hidden", "symlink", "binary", "non_utf8_name"]
    size: int | None = None
    sha256: str | None = None


class PolicyRecord(_Strict):
    version: int
    kinds: dict[str, str]
    salt: str
    hash_length: int


class Manifest(_Strict):
    format: BundleFormat
    incident_id: str
    created_at: str
    previous_digest: str | None = Field(pattern=_HEX64, description="the chain's previous bundle digest")
    snapshot_sha256: str = Field(pattern=_HEX64)
    pii_policy: PolicyRecord
    files: dict[str, FileEntry] = Field(description="bundle-relative POSIX path -> digest and size")
    omitted: list[Omitted] = Field(default_factory=list)


class Seal(_Strict):
    format: BundleFormat
    incident_id: str
    created_at: str
    bundle_digest: str = Field(pattern=_HEX64)
    previous_digest: str | None = Field(default=None, pattern=_HEX64)
    algorithm: Literal["hmac-sha256"] = "hmac-sha256"
    key_id: str
    signature: str = Field(pattern=_HEX64)


class BundleInfo(BaseModel):
    """What :func:`build_bundle` made: small enough for XCom and the chain index."""

    model_config = ConfigDict(extra="forbid")

    path: str
    incident_id: str
    created_at: str
    bundle_digest: str
    previous_digest: str | None
    snapshot_sha256: str
    signature: str
    files: int
    omitted: list[Omitted] = Field(default_factory=list)


def canonical_for(bundle_format: object) -> Callable[[Any], bytes]:
    """The canonical JSON of a bundle format (:data:`CANONICAL_FORMS`); RFC 8785 for any other."""
    return (
        CANONICAL_FORMS.get(bundle_format, canonical_json)
        if isinstance(bundle_format, str)
        else canonical_json
    )


def bundle_digest(manifest: Mapping[str, Any], previous_digest: str | None) -> str:
    """``sha256(canonical(manifest) + previous_digest)``; the first bundle of a chain uses ``""``.
    The canonical form is the manifest's format's (RFC 8785 from v2 on)."""
    canonical = canonical_for(manifest.get("format"))
    return sha256_hex(canonical(manifest) + (previous_digest or "").encode("ascii"))


def sign(key: AuditKey, digest: str) -> str:
    return key.sign(digest.encode("ascii"))


# --- reading and masking the incident's artifacts -------------------------------------------------


def _masked_file(masker: PiiMasker, rel: str, raw: bytes) -> tuple[bytes, Any] | None:
    """The masked bytes of one artifact (and its masked JSON value for .json files), or None when
    the file is not UTF-8 text (then it cannot be masked and is left out)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if rel.endswith(".json"):
        try:
            data = json.loads(text)
        except ValueError:
            pass  # not JSON after all: masked as text, line by line
        else:
            masked = masker.value(data)
            out = json.dumps(masked, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
            return out.encode("utf-8", "backslashreplace"), masked
    lines = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        end = line[len(body) :]
        if rel.endswith(".jsonl") and body.strip():
            try:
                record = json.loads(body)
            except ValueError:
                lines.append(masker.text(body) + end)
            else:
                lines.append(json.dumps(masker.value(record), sort_keys=True, ensure_ascii=False) + end)
        else:
            lines.append(masker.text(body) + end)
    return "".join(lines).encode("utf-8", "backslashreplace"), None


def _walk(incident_dir: Path) -> list[tuple[str, Path]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(incident_dir, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            out.append((path.relative_to(incident_dir).as_posix(), path))
        # os.walk does not descend into a symlinked folder (followlinks=False): report it as left out
        for name in dirnames:
            if (Path(dirpath) / name).is_symlink():
                out.append(
                    ((Path(dirpath) / name).relative_to(incident_dir).as_posix(), Path(dirpath) / name)
                )
    return sorted(out)


# --- the decision snapshot ------------------------------------------------------------------------

_HUMAN = re.compile(
    r"^human gate (?P<gate>\S+): (?P<choice>.*?) (?:answered by (?P<who>.+)|by the timeout default)$"
)
_DECISION_KEYS = (
    "outcome",
    "status",
    "rule",
    "rule_description",
    "summary",
    "reasons",
    "gate_breach",
    "acts_without_human",
    "promote_to",
    "needs_human",
    "human_gate",
    "max_risk",
    "risks",
    "thresholds",
    "inputs",
)
_ACTION_KEYS = (
    "check",
    "status",
    "summary",
    "action",
    "method",
    "outcome",
    "changed",
    "dry_run",
    "started_at",
    "finished_at",
    "audit_id",
    "recovered",
    "escalate",
)


def approval(decided_by: str) -> dict[str, Any]:
    """Who chose an action, from the ``decided_by`` the response records (dags/incident_response.py
    writes ``decision`` or ``human gate L3: 'Roll back the canary' answered by alice``)."""
    m = _HUMAN.match(decided_by.strip())
    if m is None:
        return {
            "by": "decision" if decided_by.strip() == "decision" else "unknown",
            "human": None,
            "text": decided_by,
        }
    who = m.group("who")
    return {
        "by": "human" if who else "timeout_default",
        "human": who,
        "gate": m.group("gate"),
        "choice": m.group("choice").strip("'\""),
        "text": decided_by,
    }


def decision_snapshot(incident_id: str, masked: Mapping[str, Any]) -> dict[str, Any]:
    """The snapshot from the masked JSON artifacts (bundle-relative evidence path -> value). Values
    JCS cannot hold (integers beyond 2^53, NaN, lone surrogates) are written as strings
    (:func:`~diagnostics.verified_delivery.audit.canonical.jcs_safe`); the evidence keeps them."""

    def get(rel: str) -> dict[str, Any] | None:
        value = masked.get(f"{EVIDENCE}/{rel}")
        return value if isinstance(value, dict) else None

    decision = get("decision/decision.json")
    integrity = get("golden_window/model_integrity.json")
    models = None
    if integrity is not None:
        keys = ("version", "module", "name", "expected_sha256", "reported_sha256", "loaded", "verdict")
        models = {
            "status": integrity.get("status"),
            "summary": integrity.get("summary"),
            "models": [
                {k: m.get(k) for k in keys} for m in integrity.get("models") or [] if isinstance(m, dict)
            ],
        }
    actions = []
    approvals = []
    prefix = f"{EVIDENCE}/response/"
    for rel in sorted(k for k in masked if k.startswith(prefix) and k.endswith(".json")):
        result = masked[rel]
        if not isinstance(result, dict):
            continue
        entry = {k: result[k] for k in _ACTION_KEYS if k in result}
        details = result.get("details") if isinstance(result.get("details"), dict) else {}
        decided_by = details.get("decided_by") if details else None
        if isinstance(decided_by, str):
            entry["decided_by"] = decided_by
            approvals.append(
                {"source": rel, "action": result.get("action") or result.get("check"), **approval(decided_by)}
            )
        actions.append({"source": rel, **entry})
    humans = sorted({a["human"] for a in approvals if a.get("human")})
    snapshot: dict[str, Any] = {
        "format": SNAPSHOT_FORMAT,
        "incident_id": incident_id,
        "incident": get("incident.json"),
        "decision": None if decision is None else {k: decision.get(k) for k in _DECISION_KEYS},
        "models": models,
        "actions": actions,
        "approvals": approvals,
        "approved_by": humans,
    }
    safe: dict[str, Any] = jcs_safe(snapshot)
    return safe


# --- building -------------------------------------------------------------------------------------


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class _Contents:
    """The bundle's files, masked in memory (bundle path -> bytes), before anything is written."""

    def __init__(self, incident_dir: Path, masker: PiiMasker) -> None:
        self.files: dict[str, bytes] = {}
        self.masked_json: dict[str, Any] = {}
        self.omitted: list[Omitted] = []
        for rel, path in _walk(incident_dir):
            self._add(masker, rel, path)

    def _add(self, masker: PiiMasker, rel: str, path: Path) -> None:
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:  # os.walk's surrogate escapes of name bytes that are not UTF-8
            shown = masker.text(os.fsencode(rel).decode("utf-8", "backslashreplace"))  # "\xff" as text
            if path.is_symlink():
                self.omitted.append(Omitted(path=shown, reason="non_utf8_name"))
            else:
                sha, size = file_sha256(path)
                self.omitted.append(Omitted(path=shown, reason="non_utf8_name", size=size, sha256=sha))
            return
        if path.is_symlink():
            self.omitted.append(Omitted(path=masker.text(rel), reason="symlink"))
            return
        sha, size = file_sha256(path)
        if any(part.startswith(".") for part in rel.split("/")):
            self.omitted.append(Omitted(path=masker.text(rel), reason="hidden", size=size, sha256=sha))
            return
        done = _masked_file(masker, rel, path.read_bytes())
        if done is None:
            self.omitted.append(Omitted(path=masker.text(rel), reason="binary", size=size, sha256=sha))
            return
        name = f"{EVIDENCE}/{masker.text(rel)}"
        while name in self.files:
            name += "~"  # two paths that mask alike
        self.files[name], value = done
        if value is not None:
            self.masked_json[name] = value

    def add_snapshot(self, incident_id: str) -> str:
        """Add the decision snapshot and its ``sha256sum`` file; return its SHA-256."""
        snapshot = canonical_json(decision_snapshot(incident_id, self.masked_json))
        snapshot_sha = sha256_hex(snapshot)
        self.files[SNAPSHOT] = snapshot
        self.files[SNAPSHOT_SHA] = f"{snapshot_sha}  {SNAPSHOT}\n".encode("ascii")
        return snapshot_sha


def _check_inputs(incident_dir: Path, bundle_dir: Path, previous_digest: str | None) -> None:
    if not incident_dir.is_dir():
        raise AuditError(f"no incident artifacts at {incident_dir}")
    if bundle_dir.exists():
        raise AuditError(f"{bundle_dir} already exists: a bundle is never overwritten, pick a new folder")
    if previous_digest is not None and not re.fullmatch(_HEX64, previous_digest):
        raise AuditError(
            f"previous_digest must be 64 lower-case hex characters, got {previous_digest[:80]!r}"
        )


def _manifest(
    contents: _Contents,
    policy: PiiPolicy,
    incident_id: str,
    stamp: str,
    previous_digest: str | None,
    snapshot_sha: str,
) -> dict[str, Any]:
    """The manifest as the JSON value that is digested and written."""
    return Manifest(
        format=FORMAT,
        incident_id=incident_id,
        created_at=stamp,
        previous_digest=previous_digest,
        snapshot_sha256=snapshot_sha,
        pii_policy=PolicyRecord(
            version=policy.version,
            kinds={k.value: a.value for k, a in policy.kinds.items()},
            salt=policy.hash.salt,
            hash_length=policy.hash.length,
        ),
        files={
            rel: FileEntry(sha256=sha256_hex(data), size=len(data))
            for rel, data in sorted(contents.files.items())
        },
        omitted=contents.omitted,
    ).model_dump(mode="json")


def _write_bundle(bundle_dir: Path, files: Mapping[str, bytes], manifest: dict[str, Any], seal: Seal) -> None:
    """Written whole into a temporary sibling, then renamed into place: all or nothing, never over."""
    bundle_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{bundle_dir.name}.", dir=bundle_dir.parent))
    try:
        for rel, data in files.items():
            _write(tmp / rel, data)
        _write(tmp / MANIFEST, canonical_json(manifest))
        _write(tmp / SEAL, canonical_json(seal.model_dump(mode="json")))
        if bundle_dir.exists():
            raise AuditError(f"{bundle_dir} appeared while the bundle was built; not overwritten")
        os.rename(tmp, bundle_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_bundle(
    incident_dir: Path,
    bundle_dir: Path,
    key: AuditKey,
    previous_digest: str | None,
    *,
    policy: PiiPolicy | None = None,
    incident_id: str | None = None,
    created_at: datetime | None = None,
) -> BundleInfo:
    """Build the audit bundle of the incident whose artifacts are in ``incident_dir``.

    ``previous_digest``: the bundle digest of the chain's last bundle (None: the first bundle).
    ``policy``: the PII policy (default: ``runbooks/pii.yaml``). Raises :class:`AuditError` when the
    incident folder is missing or ``bundle_dir`` exists; :class:`~diagnostics.runbooks.RunbookError`
    for a bad pii.yaml.
    """
    _check_inputs(incident_dir, bundle_dir, previous_digest)
    policy = policy or load_pii_policy()
    incident_id = incident_id or incident_dir.name
    stamp = (created_at or datetime.now(UTC)).astimezone(UTC).isoformat().replace("+00:00", "Z")
    # 1. Everything masked in memory first.
    contents = _Contents(incident_dir, PiiMasker(policy, key))
    snapshot_sha = contents.add_snapshot(incident_id)
    manifest = _manifest(contents, policy, incident_id, stamp, previous_digest, snapshot_sha)
    digest = bundle_digest(manifest, previous_digest)
    seal = Seal(
        format=FORMAT,
        incident_id=incident_id,
        created_at=stamp,
        bundle_digest=digest,
        previous_digest=previous_digest,
        key_id=key.key_id,
        signature=sign(key, digest),
    )
    # 2. Then written.
    _write_bundle(bundle_dir, contents.files, manifest, seal)
    return BundleInfo(
        path=str(bundle_dir),
        incident_id=incident_id,
        created_at=stamp,
        bundle_digest=digest,
        previous_digest=previous_digest,
        snapshot_sha256=snapshot_sha,
        signature=seal.signature,
        files=len(contents.files),
        omitted=contents.omitted,
    )
