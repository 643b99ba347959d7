"""``triage24 audit ...``: build an incident's audit bundle by hand, verify a bundle or the chain.

    triage24 audit build INCIDENT_ID [--root DIR] [--json]    bundle and chain it (exit 2: cannot)
    triage24 audit verify BUNDLE [--json]                     one bundle (exit 1: any problem)
    triage24 audit verify --chain [ROOT] [--json]             every bundle and link of the chain

``--reject-legacy``: a v1 bundle (sealed before RFC 8785 canonical JSON) is a problem instead of
being verified by its own canonical form.

The key is read from ``TRIAGE24_AUDIT_KEY`` (never printed). ``--root`` / ``ROOT`` default to the
artifact root (``TRIAGE24_ARTIFACT_ROOT``, else ``<TRIAGE24_HOME>/artifacts``). Output is plain
text, one problem per line (``kind: path: what``), then one status line; ``--json`` prints the
typed result instead. Exit codes: 0 intact, 1 any problem, 2 no key or nothing to work on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from diagnostics.config import Settings
from diagnostics.runbooks import RunbookError
from diagnostics.verified_delivery.audit.bundle import AuditError
from diagnostics.verified_delivery.audit.chain import seal_incident
from diagnostics.verified_delivery.audit.keys import AuditKey, AuditKeyError, audit_key_from_env
from diagnostics.verified_delivery.audit.verify import verify_bundle, verify_chain


def _key() -> AuditKey | None:
    try:
        return audit_key_from_env()
    except AuditKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def cmd_build(args: argparse.Namespace) -> int:
    key = _key()
    if key is None:
        return 2
    root = Path(args.root) if args.root else Settings().artifacts
    try:
        info = seal_incident(args.incident_id, key, root=root)
    except (AuditError, RunbookError, OSError) as exc:
        print(f"error: cannot build the bundle of {args.incident_id}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return 0
    print(f"bundle {info.path}")
    print(f"bundle digest {info.bundle_digest}")
    print(f"previous digest {info.previous_digest or 'none (first bundle of the chain)'}")
    print(f"decision snapshot sha256 {info.snapshot_sha256}")
    print(f"{info.files} files" + (f", {len(info.omitted)} left out:" if info.omitted else ""))
    for o in info.omitted:
        print(f"  left out ({o.reason}): {o.path}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    if not args.chain and not args.path:
        print("error: give a bundle folder, or --chain [ROOT] for the whole chain", file=sys.stderr)
        return 2
    key = _key()
    if key is None:
        return 2
    if args.chain:
        root = Path(args.path) if args.path else Settings().artifacts
        result: Any = verify_chain(root, key, accept_legacy=not args.reject_legacy)
    else:
        result = verify_bundle(Path(args.path), key, accept_legacy=not args.reject_legacy)
    if args.json:
        print(json.dumps(result.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        for problem in result.problems:
            print(problem)
        print(
            f"{result.status.value}: {result.summary}"
            if not result.problems
            else f"{result.status.value}: {len(result.problems)} problem(s)"
        )
    return 0 if result.status.value == "ok" else 1


def register(subparsers: Any) -> None:
    """Add ``audit`` to the ``triage24`` command line (``subparsers`` of diagnostics.cli)."""
    audit = subparsers.add_parser("audit", help="audit bundles: build one, verify one or the chain")
    sub = audit.add_subparsers(dest="audit_command", required=True)

    build = sub.add_parser("build", help="bundle an incident's artifacts and append it to the chain")
    build.add_argument("incident_id")
    build.add_argument("--root", help="artifact root (default: the configured one)")
    build.add_argument("--json", action="store_true", help="the bundle's record as JSON")
    build.set_defaults(func=cmd_build)

    verify = sub.add_parser("verify", help="verify a bundle folder, or --chain for every bundle and link")
    verify.add_argument("path", nargs="?", help="the bundle folder; with --chain: the artifact root")
    verify.add_argument("--chain", action="store_true", help="verify the chain under the artifact root")
    verify.add_argument("--json", action="store_true", help="the typed result as JSON")
    verify.add_argument(
        "--reject-legacy",
        action="store_true",
        help="a v1 bundle (canonical JSON before RFC 8785) is a problem, not verified by its own form",
    )
    verify.set_defaults(func=cmd_verify)
