"""Verify an audit bundle, or the whole chain of them, and say exactly what is wrong.

:func:`verify_bundle` recomputes every digest of a bundle
(:mod:`diagnostics.verified_delivery.audit.bundle`) and
reports, each as its own :class:`AuditProblem`:

- ``modified``: a file whose SHA-256 or size differs from the manifest, or a canonical file
  (manifest, seal) whose bytes are not its canonical form (an edit that kept the JSON meaning);
- ``missing`` / ``added``: a file the manifest lists that is not there / a file it does not list;
- ``malformed``: a manifest, seal or chain line that is not what its schema says;
- ``bad_snapshot``: the decision snapshot's SHA-256 differs from the manifest's or its ``.sha256``
  file, or the snapshot is not canonical JSON;
- ``bad_digest``: the bundle digest recomputed from the manifest and the previous digest differs
  from the seal's;
- ``bad_signature``: the seal's signature is not the HMAC of its digest under the key given (or was
  made with another key: the key ids differ);
- ``chain_break`` (:func:`verify_chain`): a bundle whose previous digest is not its predecessor's
  digest, an index line out of sequence, or an index that disagrees with the bundle's seal;
- ``legacy_format``: a v1 bundle (digests over Python's ``json.dumps`` form, not RFC 8785) when the
  caller asked to reject those (``accept_legacy=False``, ``triage24 audit verify --reject-legacy``).
  By default a v1 bundle is verified by its own canonical form, and the result says ``format`` v1.

The result is a :class:`~diagnostics.incident.results.CheckResult` with status ``ok`` or ``failed`` (nothing
in between: a bundle is intact or it is not), so it can be stored and shown like any check.
"""

from __future__ import annotations

import hmac
import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from diagnostics.incident.results import CheckResult, Status
from diagnostics.verified_delivery.audit.bundle import (
    CANONICAL_FORMS,
    FORMAT,
    FORMAT_V1,
    MANIFEST,
    SEAL,
    SNAPSHOT,
    SNAPSHOT_SHA,
    UNLISTED,
    Manifest,
    Seal,
    bundle_digest,
    canonical_for,
    sign,
)
from diagnostics.verified_delivery.audit.canonical import file_sha256, sha256_hex
from diagnostics.verified_delivery.audit.chain import BUNDLES_DIR, CHAIN_FILE, audit_dir, parse_chain
from diagnostics.verified_delivery.audit.keys import AuditKey

M = TypeVar("M", bound=BaseModel)


class ProblemKind(StrEnum):
    MODIFIED = "modified"
    MISSING = "missing"
    ADDED = "added"
    MALFORMED = "malformed"
    BAD_SNAPSHOT = "bad_snapshot"
    BAD_DIGEST = "bad_digest"
    BAD_SIGNATURE = "bad_signature"
    CHAIN_BREAK = "chain_break"
    LEGACY_FORMAT = "legacy_format"


class AuditProblem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ProblemKind
    path: str = Field(description="the file (bundle-relative) or bundle the problem is about")
    message: str

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.path}: {self.message}"


class BundleVerification(CheckResult):
    check: str = "audit_bundle"
    bundle: str
    incident_id: str | None = None
    bundle_digest: str | None = Field(default=None, description="the seal's digest, when readable")
    previous_digest: str | None = Field(default=None, description="the seal's previous digest")
    format: str | None = Field(default=None, description="the manifest's (else the seal's) bundle format")
    files_checked: int = 0
    problems: list[AuditProblem] = Field(default_factory=list)


class ChainVerification(CheckResult):
    check: str = "audit_chain"
    index: str
    bundles: list[BundleVerification] = Field(default_factory=list)
    problems: list[AuditProblem] = Field(
        default_factory=list, description="every problem: the chain's and each bundle's (path prefixed)"
    )


def _short(digest: str | None) -> str:
    return f"{digest[:12]}…" if digest else "none (first bundle)"


def _files(root: Path) -> set[str]:
    """Every file under ``root`` (symlinks included, followed nowhere), as relative POSIX paths."""
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for name in filenames + [d for d in dirnames if (base / d).is_symlink()]:
            out.add((base / name).relative_to(root).as_posix())
    return out


class _Problems:
    def __init__(self) -> None:
        self.items: list[AuditProblem] = []

    def add(self, kind: ProblemKind, path: str, message: str) -> None:
        self.items.append(AuditProblem(kind=kind, path=path, message=message))


def _read_canonical(
    path: Path, rel: str, model: type[M], problems: _Problems
) -> tuple[dict[str, Any] | None, M | None]:
    """A canonical JSON file: its parsed value and model, each None when unusable (and reported)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        problems.add(ProblemKind.MISSING, rel, "not in the bundle")
        return None, None
    except OSError as exc:
        problems.add(ProblemKind.MALFORMED, rel, f"cannot be read: {exc.strerror}")
        return None, None
    try:
        data = json.loads(raw)
    except ValueError as exc:  # includes UnicodeDecodeError
        problems.add(ProblemKind.MALFORMED, rel, f"not JSON: {exc}")
        return None, None
    if not isinstance(data, dict):
        problems.add(ProblemKind.MALFORMED, rel, f"expected a JSON object, got {type(data).__name__}")
        return None, None
    fmt = data.get("format")
    if not isinstance(fmt, str) or fmt not in CANONICAL_FORMS:
        known = ", ".join(CANONICAL_FORMS)
        problems.add(ProblemKind.MALFORMED, rel, f"format {fmt!r} is not one this verifier knows ({known})")
        return data, None
    try:
        canonical = canonical_for(fmt)(data)
    except ValueError as exc:  # JSON that its format's canonical form cannot hold (JCS: lone surrogates)
        problems.add(ProblemKind.MALFORMED, rel, f"no canonical form: {exc}")
        return data, None
    if canonical != raw:
        problems.add(ProblemKind.MODIFIED, rel, "not in canonical form: the file was edited after sealing")
    try:
        return data, model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        problems.add(ProblemKind.MALFORMED, rel, f"{where}: {err['msg']}")
        return data, None


def _check_snapshot(path: Path, manifest: Manifest, problems: _Problems) -> None:
    canonical_json = canonical_for(manifest.format)
    if SNAPSHOT not in manifest.files:
        problems.add(ProblemKind.BAD_SNAPSHOT, SNAPSHOT, "the manifest does not list the decision snapshot")
    try:
        raw = (path / SNAPSHOT).read_bytes()
    except OSError:
        return  # reported as missing by the file check
    sha = sha256_hex(raw)
    if sha != manifest.snapshot_sha256:
        problems.add(
            ProblemKind.BAD_SNAPSHOT,
            SNAPSHOT,
            f"sha256 {_short(sha)} but the manifest's snapshot_sha256 is {_short(manifest.snapshot_sha256)}",
        )
    try:
        canonical = canonical_json(json.loads(raw))
    except ValueError:
        problems.add(ProblemKind.BAD_SNAPSHOT, SNAPSHOT, "not JSON")
    else:
        if canonical != raw:
            problems.add(ProblemKind.BAD_SNAPSHOT, SNAPSHOT, "not in canonical form")
    try:
        recorded = (path / SNAPSHOT_SHA).read_bytes()
    except OSError:
        return
    if recorded != f"{manifest.snapshot_sha256}  {SNAPSHOT}\n".encode("ascii"):
        problems.add(
            ProblemKind.BAD_SNAPSHOT,
            SNAPSHOT_SHA,
            "does not hold the manifest's snapshot_sha256 in sha256sum form",
        )


def verify_bundle(path: Path, key: AuditKey, *, accept_legacy: bool = True) -> BundleVerification:
    """Every file, the snapshot, the digest and the signature of one bundle. A v1 bundle (before
    RFC 8785) is verified by its own canonical form, or is a ``legacy_format`` problem when
    ``accept_legacy`` is False."""
    problems = _Problems()
    if not path.is_dir():
        problems.add(ProblemKind.MISSING, str(path), "no bundle folder here")
        return _bundle_result(path, problems, None, None, 0)
    manifest_data, manifest = _read_canonical(path / MANIFEST, MANIFEST, Manifest, problems)
    _, seal = _read_canonical(path / SEAL, SEAL, Seal, problems)
    fmt = manifest.format if manifest else (seal.format if seal else None)
    if fmt == FORMAT_V1 and not accept_legacy:
        problems.add(
            ProblemKind.LEGACY_FORMAT,
            MANIFEST if manifest else SEAL,
            f"{FORMAT_V1}: its digests are over Python's json.dumps form, which other languages cannot "
            f"reproduce (not RFC 8785); rejected as asked (new bundles are {FORMAT})",
        )

    present = _files(path)
    checked = 0
    if manifest is not None:
        for rel, entry in sorted(manifest.files.items()):
            if rel not in present:
                problems.add(ProblemKind.MISSING, rel, "listed in the manifest, not in the bundle")
                continue
            target = path / rel
            if target.is_symlink():
                problems.add(ProblemKind.MODIFIED, rel, "replaced by a symbolic link")
                continue
            sha, size = file_sha256(target)
            checked += 1
            if (sha, size) != (entry.sha256, entry.size):
                problems.add(
                    ProblemKind.MODIFIED,
                    rel,
                    f"sha256 {_short(sha)} ({size} bytes), the manifest says {_short(entry.sha256)} "
                    f"({entry.size} bytes)",
                )
        for rel in sorted(present - set(manifest.files) - UNLISTED):
            problems.add(ProblemKind.ADDED, rel, "not in the manifest")
        _check_snapshot(path, manifest, problems)

    if seal is not None:
        _check_seal(seal, manifest, manifest_data, key, problems)
    return _bundle_result(path, problems, manifest, seal, checked)


def _check_seal(
    seal: Seal,
    manifest: Manifest | None,
    manifest_data: dict[str, Any] | None,
    key: AuditKey,
    problems: _Problems,
) -> None:
    """The signature vouches for the seal's digest, the digest for the manifest: so a good signature
    and a digest that differs mean the manifest was changed, and a manifest that matches its signed
    digest but disagrees with the seal means the seal was changed."""
    signed = False
    if seal.key_id != key.key_id:
        problems.add(
            ProblemKind.BAD_SIGNATURE,
            SEAL,
            f"signed with key id {seal.key_id}, the key given has id {key.key_id} "
            "(the wrong key, or the seal was changed)",
        )
    elif not hmac.compare_digest(sign(key, seal.bundle_digest), seal.signature):
        problems.add(
            ProblemKind.BAD_SIGNATURE,
            SEAL,
            "the signature is not the HMAC of the bundle digest under this key: the seal was changed",
        )
    else:
        signed = True
    if manifest is None or manifest_data is None:
        return
    digest = bundle_digest(manifest_data, manifest.previous_digest)
    if digest != seal.bundle_digest:
        changed = MANIFEST if signed else SEAL
        problems.add(
            ProblemKind.BAD_DIGEST,
            changed,
            f"the manifest and its previous digest give {_short(digest)}, the "
            + ("signed" if signed else "seal's")
            + f" digest is {_short(seal.bundle_digest)}: {changed} was changed",
        )
        return
    for name in ("format", "incident_id", "created_at", "previous_digest"):
        ours, theirs = getattr(seal, name), getattr(manifest, name)
        if ours != theirs:
            problems.add(ProblemKind.MODIFIED, SEAL, f"{name} {ours!r}, the manifest's is {theirs!r}")


def _bundle_result(
    path: Path, problems: _Problems, manifest: Manifest | None, seal: Seal | None, checked: int
) -> BundleVerification:
    items = problems.items
    fmt = manifest.format if manifest else (seal.format if seal else None)
    if items:
        summary = f"{path}: {len(items)} problem(s); first: {items[0]}"
    else:
        legacy = (
            f" (format {FORMAT_V1}: sealed over the pre-RFC 8785 canonical JSON, verified by it)"
            if fmt == FORMAT_V1
            else ""
        )
        digest = _short(seal.bundle_digest if seal else None)
        summary = f"{path}: intact{legacy}, {checked} files, digest {digest}"
    return BundleVerification(
        status=Status.FAILED if items else Status.OK,
        summary=summary,
        bundle=str(path),
        incident_id=manifest.incident_id if manifest else (seal.incident_id if seal else None),
        bundle_digest=seal.bundle_digest if seal else None,
        previous_digest=manifest.previous_digest if manifest else (seal.previous_digest if seal else None),
        format=fmt,
        files_checked=checked,
        problems=items,
    )


def _bundles_on_disk(directory: Path) -> set[str]:
    """Bundle folders (holding a seal) under ``<audit>/bundles``, relative to the audit folder."""
    base = directory / BUNDLES_DIR
    if not base.is_dir():
        return set()
    out = set()
    for seal in base.glob(f"*/*/{SEAL}"):
        if not any(part.startswith(".") for part in seal.relative_to(base).parts):  # a build in progress
            out.add(seal.parent.relative_to(directory).as_posix())
    return out


def verify_chain(root: Path, key: AuditKey, *, accept_legacy: bool = True) -> ChainVerification:
    """Every bundle of the chain index under ``root`` (the artifact root, or its audit folder), every
    link between them, and every bundle on disk that the index does not know (``accept_legacy``: as
    :func:`verify_bundle`; a chain may hold v1 bundles before v2 ones)."""
    directory = audit_dir(root)
    index = directory / CHAIN_FILE
    problems = _Problems()
    entries, bad = parse_chain(index)
    on_disk = _bundles_on_disk(directory)
    if not index.exists():
        if on_disk:
            problems.add(
                ProblemKind.MISSING, CHAIN_FILE, f"no chain index, but {len(on_disk)} bundle(s) exist"
            )
        else:
            return ChainVerification(
                status=Status.OK, summary=f"{directory}: no bundles yet", index=str(index), bundles=[]
            )
    for number, why in bad:
        problems.add(ProblemKind.MALFORMED, f"{CHAIN_FILE}:{number}", why)

    results: list[BundleVerification] = []
    predecessor: str | None = None
    seen: set[str] = set()
    resolved_dir = directory.resolve()
    for number, entry in enumerate(entries, 1):
        where = f"{CHAIN_FILE}:{entry.bundle}"
        if entry.seq != number:
            problems.add(
                ProblemKind.CHAIN_BREAK,
                where,
                f"seq {entry.seq} at position {number}: a line was removed, duplicated or moved",
            )
        if entry.bundle in seen:
            problems.add(ProblemKind.CHAIN_BREAK, where, "the same bundle appears twice in the index")
        seen.add(entry.bundle)
        bundle_path = directory / entry.bundle
        if not bundle_path.resolve().is_relative_to(resolved_dir):
            problems.add(ProblemKind.MALFORMED, where, "the bundle path leaves the audit folder")
            continue
        result = verify_bundle(bundle_path, key, accept_legacy=accept_legacy)
        results.append(result)
        problems.items.extend(
            AuditProblem(kind=p.kind, path=f"{entry.bundle}/{p.path}", message=p.message)
            if p.path != str(bundle_path)
            else AuditProblem(kind=p.kind, path=entry.bundle, message=p.message)
            for p in result.problems
        )
        if result.bundle_digest is not None:
            if result.bundle_digest != entry.bundle_digest:
                problems.add(
                    ProblemKind.CHAIN_BREAK,
                    entry.bundle,
                    f"its seal says digest {_short(result.bundle_digest)}, the index says "
                    f"{_short(entry.bundle_digest)}: the bundle was replaced or the index edited",
                )
            if result.previous_digest != entry.previous_digest:
                problems.add(
                    ProblemKind.CHAIN_BREAK,
                    entry.bundle,
                    f"its seal chains to {_short(result.previous_digest)}, the index to "
                    f"{_short(entry.previous_digest)}",
                )
        previous = result.previous_digest if result.bundle_digest is not None else entry.previous_digest
        if previous != predecessor:
            problems.add(
                ProblemKind.CHAIN_BREAK,
                entry.bundle,
                f"previous digest {_short(previous)} is not its predecessor's digest {_short(predecessor)}",
            )
        predecessor = result.bundle_digest or entry.bundle_digest
    for rel in sorted(on_disk - seen):
        problems.add(ProblemKind.ADDED, rel, "a bundle that is not in the chain index")

    items = problems.items
    summary = (
        f"{directory}: {len(items)} problem(s) in a chain of {len(entries)} bundle(s); first: {items[0]}"
        if items
        else f"{directory}: chain of {len(entries)} bundle(s) intact, head {_short(predecessor)}"
    )
    return ChainVerification(
        status=Status.FAILED if items else Status.OK,
        summary=summary,
        index=str(index),
        bundles=results,
        problems=items,
    )
