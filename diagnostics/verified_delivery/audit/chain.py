"""The chain of audit bundles: ``<artifact root>/audit/chain.jsonl``, append-only, one line per bundle.

Each line records the bundle's incident, its folder (relative to ``<artifact root>/audit``), its
digest and the digest of its predecessor, so the next bundle finds what to chain to and a verifier
can walk the chain (:func:`diagnostics.verified_delivery.audit.verify.verify_chain`). Bundles live in
``<artifact root>/audit/bundles/<incident id>/<UTC timestamp>/``.

Two incidents may finish at the same time: :func:`seal_incident` holds an exclusive lock
(``chain.lock``) from reading the last line to appending the new one, so two bundles never claim the
same predecessor. A line is appended with a single write and fsync'ed; a line cut short by a crash
stops further appends with an error naming the file, rather than silently chaining past it.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from diagnostics.incident.model import SAFE_ID
from diagnostics.locks import file_lock
from diagnostics.runbooks.pii import PiiPolicy
from diagnostics.verified_delivery.audit.bundle import AuditError, BundleInfo, build_bundle
from diagnostics.verified_delivery.audit.keys import AuditKey

AUDIT_DIR = "audit"
CHAIN_FILE = "chain.jsonl"
LOCK_FILE = "chain.lock"
BUNDLES_DIR = "bundles"


class ChainEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int = Field(ge=1, description="1 for the first bundle, then +1 per line")
    incident_id: str
    bundle: str = Field(description="the bundle folder, relative to <artifact root>/audit")
    bundle_digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    previous_digest: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    created_at: str


def audit_dir(root: Path) -> Path:
    """``<artifact root>/audit``; a path that already is an audit folder (has a chain) is taken as is."""
    if not (root / AUDIT_DIR / CHAIN_FILE).exists() and (root / CHAIN_FILE).exists():
        return root
    return root / AUDIT_DIR


def parse_chain(path: Path) -> tuple[list[ChainEntry], list[tuple[int, str]]]:
    """The index's entries, and ``(line number, what is wrong)`` for every line that is not one."""
    entries: list[ChainEntry] = []
    bad: list[tuple[int, str]] = []
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return entries, bad
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        bad.append((len(lines), "the last line is cut short (no newline): a write was interrupted"))
        lines.pop()
    for number, line in enumerate(lines, 1):
        try:
            entries.append(ChainEntry.model_validate(json.loads(line)))
        except (ValueError, ValidationError) as exc:
            reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else "not JSON"
            bad.append((number, f"not a chain entry ({reason})"))
    return entries, bad


def _append(path: Path, entry: ChainEntry) -> None:
    line = json.dumps(entry.model_dump(mode="json"), sort_keys=True, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def last_entry(root: Path) -> ChainEntry | None:
    """The chain's newest bundle (None: no bundle yet); AuditError when the index is damaged."""
    path = audit_dir(root) / CHAIN_FILE
    entries, bad = parse_chain(path)
    if bad:
        where = ", ".join(f"line {n}: {why}" for n, why in bad)
        raise AuditError(
            f"{path}: {where}; run `triage24 audit verify --chain` and repair the index (it is "
            "append-only: a damaged line means a crash or tampering) before sealing more bundles"
        )
    return entries[-1] if entries else None


def seal_incident(
    incident_id: str,
    key: AuditKey,
    *,
    root: Path | None = None,
    policy: PiiPolicy | None = None,
    now: datetime | None = None,
) -> BundleInfo:
    """Bundle the incident's artifacts (``<root>/<incident_id>/``), chain it to the newest bundle and
    append it to the index. The DAG's and the CLI's entry point; ``root`` defaults to the artifact
    root of :class:`~diagnostics.config.Settings`."""
    if root is None:
        from diagnostics.config import Settings

        root = Settings().artifacts
    if not SAFE_ID.match(incident_id) or incident_id in (".", ".."):
        raise AuditError(f"incident id {incident_id!r} cannot be a folder name (letters, digits, _.~:+-)")
    if incident_id == AUDIT_DIR:
        raise AuditError(f"incident id {AUDIT_DIR!r} is reserved for the audit folder of the artifact root")
    directory = audit_dir(root)
    when = (now or datetime.now(UTC)).astimezone(UTC)
    with file_lock(directory / LOCK_FILE):
        previous = last_entry(root)
        rel = f"{BUNDLES_DIR}/{incident_id}/{when:%Y%m%dT%H%M%S%fZ}"
        info = build_bundle(
            root / incident_id,
            directory / rel,
            key,
            previous.bundle_digest if previous else None,
            policy=policy,
            incident_id=incident_id,
            created_at=when,
        )
        _append(
            directory / CHAIN_FILE,
            ChainEntry(
                seq=previous.seq + 1 if previous else 1,
                incident_id=incident_id,
                bundle=rel,
                bundle_digest=info.bundle_digest,
                previous_digest=info.previous_digest,
                created_at=info.created_at,
            ),
        )
    return info
