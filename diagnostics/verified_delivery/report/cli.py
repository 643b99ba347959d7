"""``triage24 report INCIDENT_ID``: (re)build an incident's diff report from its stored artifacts.

    triage24 report INCIDENT_ID [--root DIR] [--json]

Writes ``<root>/<incident id>/report/report.html`` and ``report.md`` and prints both paths, then one
line of summary (``--json``: the typed result). ``--root`` defaults to the artifact root
(``TRIAGE24_ARTIFACT_ROOT``, else ``<TRIAGE24_HOME>/artifacts``). Missing or malformed artifacts do not
fail the command — the report names them — so a report can be rebuilt for any incident, finished or
not. Exit codes: 0 written, 2 no such incident (or an id that cannot be a folder name).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from diagnostics.config import Settings
from diagnostics.incident.model import SAFE_ID


def cmd_report(args: argparse.Namespace) -> int:
    from diagnostics.verified_delivery.report.build import ReportError, build_report

    if not SAFE_ID.match(args.incident_id) or args.incident_id in (".", ".."):
        print(f"error: {args.incident_id!r} is not an incident id (letters, digits, _.~:+-)", file=sys.stderr)
        return 2
    root = Path(args.root) if args.root else Settings().artifacts
    try:
        result = build_report(root / args.incident_id)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return 0
    print(f"html {result.html}")
    print(f"markdown {result.markdown}")
    for problem in result.problems:
        print(f"  artifact problem: {problem}")
    print(result.summary)
    return 0


def register(subparsers: Any) -> None:
    """Add ``report`` to the ``triage24`` command line (``subparsers`` of diagnostics.cli)."""
    report = subparsers.add_parser(
        "report", help="build an incident's diff report (HTML with plots + Markdown)"
    )
    report.add_argument("incident_id", help="the incident's run id (its folder under the artifact root)")
    report.add_argument("--root", help="artifact root (default: the configured one)")
    report.add_argument("--json", action="store_true", help="the report's record as JSON")
    report.set_defaults(func=cmd_report)
