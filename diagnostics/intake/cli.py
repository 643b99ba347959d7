"""``triage24 intake ...``: inspect the intake journal, replay pending incidents, check payloads, rules.

    triage24 intake status [--json]          journal counts, pending and open incidents (exit 1: pending)
    triage24 intake list [--outcome O] [--limit N] [--json]
    triage24 intake show DELIVERY_ID         the raw body of a journaled delivery
    triage24 intake reconcile [--json]       create pending runs over Airflow's REST API (exit 1: pending)
    triage24 intake check PAYLOAD.json       validate and grade a payload offline (exit 1: refused)
    triage24 intake rules [--write|--check]  Prometheus rules from runbooks/thresholds.yaml

The journal is ``<TRIAGE24_HOME>/intake/journal.sqlite3`` (``TRIAGE24_INTAKE_JOURNAL_DIR``).
``reconcile`` logs in to Airflow as ``admin`` with the password in ``<TRIAGE24_HOME>/secrets.env``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from diagnostics.config import Settings
from diagnostics.intake.config import IntakeSettings

console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _ts(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S") if epoch else "-"


def _journal(settings: IntakeSettings) -> Any:
    from diagnostics.intake.journal import Journal

    path = settings.journal_path()
    if not path.exists():
        err.print(f"no intake journal at {path} yet (no delivery was accepted)")
        return None
    return Journal(path)


def cmd_status(args: argparse.Namespace) -> int:
    settings = IntakeSettings()
    journal = _journal(settings)
    if journal is None:
        return 0
    counts = journal.counts()
    pending = journal.incidents(state="pending")
    open_ = journal.incidents(state="open")
    if args.json:
        print(
            json.dumps(
                {
                    "journal": str(journal.path),
                    **counts,
                    "pending": [i.as_dict() for i in pending],
                    "open": [i.as_dict() for i in open_],
                },
                indent=2,
            )
        )
        return 1 if pending else 0
    console.print(f"journal {journal.path}")
    console.print(
        "deliveries: " + (", ".join(f"{k} {v}" for k, v in sorted(counts["deliveries"].items())) or "none")
    )
    console.print(
        "incidents: " + (", ".join(f"{k} {v}" for k, v in sorted(counts["incidents"].items())) or "none")
    )
    table = Table(title="pending and open incidents")
    for col in ("run id", "state", "grade", "escalated", "updates", "created", "last error"):
        table.add_column(col)
    for inc in [*pending, *open_]:
        table.add_row(
            inc.run_id,
            inc.state,
            f"{inc.grade} {inc.rule}",
            "yes" if inc.escalated else "no",
            str(inc.updates),
            _ts(inc.created_at),
            inc.last_error[:80],
        )
    console.print(table)
    if pending:
        err.print(f"[red]{len(pending)} incident(s) pending:[/red] run `triage24 intake reconcile`")
    return 1 if pending else 0


def cmd_list(args: argparse.Namespace) -> int:
    journal = _journal(IntakeSettings())
    if journal is None:
        return 0
    rows = journal.deliveries(outcome=args.outcome, limit=args.limit)
    if args.json:
        print(json.dumps([d.as_dict() for d in rows], indent=2))
        return 0
    table = Table(title=f"last {len(rows)} deliveries")
    for col in ("id", "received", "status", "alerts", "grade", "outcome", "run id", "detail"):
        table.add_column(col)
    for d in rows:
        table.add_row(
            str(d.id),
            _ts(d.received_at),
            d.status,
            str(d.alerts),
            f"{d.grade or ''} {d.rule or ''}".strip(),
            d.outcome,
            d.run_id or "-",
            d.detail[:80],
        )
    console.print(table)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    journal = _journal(IntakeSettings())
    body = journal.body(args.delivery_id) if journal else None
    if body is None:
        err.print(f"no delivery {args.delivery_id} in the journal")
        return 1
    try:
        print(json.dumps(json.loads(body), indent=2, ensure_ascii=False))
    except ValueError:
        sys.stdout.write(body.decode("utf-8", "replace") + "\n")
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    from diagnostics.intake.backend import RestRunBackend
    from diagnostics.intake.service import build_service

    base = Settings()
    settings = IntakeSettings()
    if not settings.journal_path(base).exists():
        err.print(f"no intake journal at {settings.journal_path(base)}: nothing to reconcile")
        return 0
    password = base.secret("TRIAGE24_ADMIN_PASSWORD")
    if not password:
        err.print(
            f"no Airflow password: set TRIAGE24_ADMIN_PASSWORD, or start the local stack "
            f"(triage24 stack up) which writes it to {base.secrets_file}"
        )
        return 2
    backend = RestRunBackend(base.airflow_url, "admin", password)
    try:
        report = build_service(backend, settings, base).reconcile()
    finally:
        backend.close()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        console.print(
            f"replayed {len(report.replayed)}, still pending {len(report.still_pending)}, "
            f"closed {len(report.closed)}, notes written {report.notes_written}, pruned {report.pruned}"
        )
        for run_id, why in report.still_pending.items():
            err.print(f"  [red]pending[/red] {run_id}: {why}", markup=True)
    return 1 if report.still_pending else 0


def cmd_check(args: argparse.Namespace) -> int:
    from diagnostics.intake.grading import Grader, load_grading
    from diagnostics.intake.payload import PayloadError, parse
    from diagnostics.intake.runid import incident_run_id
    from diagnostics.runbooks import RunbookError

    settings = IntakeSettings()
    try:
        grader = Grader(load_grading(settings.grading_path()))
    except RunbookError as exc:
        err.print(str(exc), markup=False)
        return 2
    raw = Path(args.payload).read_bytes()
    try:
        payload = parse(raw, "application/json", settings.max_body_bytes)
    except PayloadError as exc:
        err.print(f"[red]refused with HTTP {exc.status}[/red]")
        for p in exc.problems:
            err.print(f"  {p.field}: {p.message} - fix: {p.fix}", markup=False)
        return 1
    table = Table(title=f"group {payload.group_key} ({payload.status})")
    for col in ("fingerprint", "status", "alertname", "grade", "rule"):
        table.add_column(col)
    for a in payload.alerts:
        graded = grader.grade_alert(a.labels)
        table.add_row(a.fingerprint, a.status, a.labels.get("alertname", ""), graded.grade.value, graded.rule)
    console.print(table)
    group = grader.grade_group(a.labels for a in (payload.firing or payload.alerts))
    policy = grader.policy(group.grade)
    console.print(f"group grade {group.grade.value} ({group.rule}): {policy.title}")
    console.print(
        f"starts an incident: {'yes' if policy.starts_incident else 'no (recorded until it escalates)'}; "
        f"escalation: {policy.escalation.model_dump()}"
    )
    if payload.firing:
        name = "-".join(v for _, v in sorted(payload.group_labels.items()))
        console.print(
            f"run id: {incident_run_id(payload.group_key, [a.occurrence for a in payload.firing], name)}"
        )
    else:
        console.print("no firing alert: annotates the group's incident, never starts one")
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    from diagnostics.intake.alert_rules import RULES_FILE, render
    from diagnostics.runbooks import RunbookError, load_runbooks

    base = Settings()
    try:
        text = render(load_runbooks(base.runbooks_dir))
    except RunbookError as exc:
        err.print(str(exc), markup=False)
        return 2
    path = base.repo_root / RULES_FILE
    if args.write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        console.print(f"wrote {path}")
        return 0
    if args.check:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            err.print(f"{path} is out of date with the runbooks: run `triage24 intake rules --write`")
            return 1
        console.print(f"{path} matches the runbooks")
        return 0
    sys.stdout.write(text)
    return 0


def register(subparsers: Any) -> None:
    """Add ``intake`` to the ``triage24`` command line (``subparsers`` of diagnostics.cli)."""
    intake = subparsers.add_parser("intake", help="the Alertmanager intake: journal, replay, checks")
    sub = intake.add_subparsers(dest="intake_command", required=True)

    status = sub.add_parser("status", help="journal counts, pending and open incidents")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    listing = sub.add_parser("list", help="recent deliveries")
    listing.add_argument("--outcome", choices=["created", "pending", "update", "duplicate", "resolved",
                                               "recorded", "replayed"])  # fmt: skip
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)

    show = sub.add_parser("show", help="the raw body of a delivery")
    show.add_argument("delivery_id", type=int)
    show.set_defaults(func=cmd_show)

    reconcile = sub.add_parser("reconcile", help="create pending incident runs (Airflow REST API)")
    reconcile.add_argument("--json", action="store_true")
    reconcile.set_defaults(func=cmd_reconcile)

    check = sub.add_parser("check", help="validate and grade an Alertmanager payload file offline")
    check.add_argument("payload")
    check.set_defaults(func=cmd_check)

    rules = sub.add_parser("rules", help="Prometheus alert rules from the runbooks")
    mode = rules.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"write {'deploy/prometheus/rules/testbed.yml'}")
    mode.add_argument("--check", action="store_true", help="exit 1 when the committed rules are out of date")
    rules.set_defaults(func=cmd_rules)
