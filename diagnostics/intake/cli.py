"""``triage24 intake ...``: inspect the intake journal, replay pending incidents, check payloads, rules.

    triage24 intake status [--json]          journal counts, pending and open incidents with every alert
                                             group and alert they hold (exit 1: pending)
    triage24 intake list [--outcome O] [--limit N] [--json]
    triage24 intake show DELIVERY_ID         the raw body of a journaled delivery
    triage24 intake reconcile [--json]       create pending runs over Airflow's REST API (exit 1: pending)
    triage24 intake check PAYLOAD.json       validate and grade a payload offline (exit 1: refused)
    triage24 intake rules [--write|--check]  Prometheus rules from runbooks/thresholds.yaml

The journal is ``<TRIAGE24_HOME>/intake/journal.sqlite3`` (``TRIAGE24_INTAKE_JOURNAL_DIR``).
``reconcile`` logs in to Airflow as ``admin`` with the password in ``<TRIAGE24_HOME>/secrets.env``.

Everything a sender wrote (group keys, labels, run ids made of label values, details) is printed as
text, never as Rich markup: ``job=~"blackbox-[a-z]+"`` or a ``[/]`` in a label must show as sent.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from diagnostics.config import Settings
from diagnostics.intake.config import IntakeSettings

if TYPE_CHECKING:
    from diagnostics.intake.grading import Grader
    from diagnostics.intake.payload import WebhookPayload
    from diagnostics.intake.records import IncidentAlerts

console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def plain(value: object) -> Text:
    """A table cell or title that is shown as written (Rich would parse ``[...]`` as markup)."""
    return Text(str(value))


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
    from diagnostics.intake.members import incident_alerts

    settings = IntakeSettings()
    journal = _journal(settings)
    if journal is None:
        return 0
    counts = journal.counts()
    pending = journal.incidents(state="pending")
    open_ = journal.incidents(state="open")
    held = incident_alerts(journal, [i.run_id for i in [*pending, *open_]])
    if args.json:

        def entry(inc: Any) -> dict[str, Any]:
            return {**inc.as_dict(), **(held[inc.run_id].as_dict() if inc.run_id in held else {})}

        report = {
            "journal": str(journal.path),
            **counts,
            "pending": [entry(i) for i in pending],
            "open": [entry(i) for i in open_],
        }
        print(json.dumps(report, indent=2))
        return 1 if pending else 0
    console.print(f"journal {journal.path}", markup=False)
    for name in ("deliveries", "incidents", "reevaluations"):
        text = ", ".join(f"{k} {v}" for k, v in sorted(counts[name].items())) or "none"
        console.print(f"{name}: {text}", markup=False)
    table = Table(title="pending and open incidents")
    for col in ("run id", "state", "run", "grade", "escalated", "groups", "alerts", "updates", "created",
                "last error"):  # fmt: skip
        table.add_column(col, overflow="fold")  # ids and fingerprints are copied: never cut
    for inc in [*pending, *open_]:
        h = held.get(inc.run_id)
        joined = len(h.groups) - 1 if h else 0
        row = (
            inc.run_id,
            inc.state,
            inc.run_state or "-",
            f"{inc.grade} {inc.rule}",
            "yes" if inc.escalated else "no",
            f"1 + {joined} joined" if joined else "1",
            f"{h.firing} firing of {len(h.alerts)}" if h else "-",
            inc.updates,
            _ts(inc.created_at),
            inc.last_error[:80],
        )
        table.add_row(*map(plain, row))
    console.print(table)
    for inc in [*pending, *open_]:
        if inc.run_id in held:
            console.print(_alerts_table(held[inc.run_id]))
    if pending:
        err.print(f"[red]{len(pending)} incident(s) pending:[/red] run `triage24 intake reconcile`")
    return 1 if pending else 0


def _alerts_table(held: IncidentAlerts) -> Table:
    """Every alert an incident holds, by the group it came in (the opener, or joined by a rule)."""
    how = {g.group_key: f"joined ({g.rule}: {g.key}) {_ts(g.joined_at)}" for g in held.groups[1:]}
    names = {
        g.group_key: ", ".join(f"{k}={v}" for k, v in sorted(g.labels.items())) or g.group_key
        for g in held.groups
    }
    table = Table(title=plain(f"alerts of {held.run_id}"))
    for col in ("group", "how", "alertname", "fingerprint", "status", "episodes", "starts"):
        table.add_column(col, overflow="fold", min_width=16 if col == "fingerprint" else None)
    for a in held.alerts:
        row = (
            names.get(a.group_key, a.group_key),
            how.get(a.group_key, "opened"),
            a.labels.get("alertname", ""),
            a.fingerprint,
            a.status,
            a.episodes,
            a.starts_at,
        )
        table.add_row(*map(plain, row))
    return table


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
        table.add_column(col, overflow="fold")  # ids and fingerprints are copied: never cut
    for d in rows:
        table.add_row(
            *map(
                plain,
                (
                    d.id,
                    _ts(d.received_at),
                    d.status,
                    d.alerts,
                    f"{d.grade or ''} {d.rule or ''}".strip(),
                    d.outcome,
                    d.run_id or "-",
                    d.detail[:80],
                ),
            )
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
            err.print(Text.assemble("  ", ("pending", "red"), f" {run_id}: {why}"))
    return 1 if report.still_pending else 0


def cmd_check(args: argparse.Namespace) -> int:
    """What the intake would answer and do for a payload file: the same parse, grade and run id."""
    from diagnostics.intake.grading import Grader, load_grading
    from diagnostics.intake.payload import PayloadError, parse
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
    for line in _check_report(payload, raw, grader):
        console.print(line)
    if (found := _open_with_key(payload, raw, grader, settings)) is not None:
        console.print(found)
    return 0


def _open_with_key(
    payload: WebhookPayload, raw: bytes, grader: Grader, settings: IntakeSettings
) -> Text | None:
    """Which open incident of the journal (when there is one) the payload's correlation key finds now."""
    import time

    from diagnostics.intake.decide import incoming

    key = incoming(payload, raw, 0.0, grader).correlation
    path = settings.journal_path()
    if key is None or not path.exists():
        return None
    journal = _journal(settings)
    other = journal.correlated_incident(key.key) if journal else None
    if other is None:
        return plain(f"journal {path}: no open incident with this key")
    ago = time.time() - other.last_delivery_at
    joins = "joins it now" if ago <= key.window_s else f"too long ago to join (> {key.window_s:g} s)"
    return plain(
        f"journal {path}: open incident {other.run_id} has this key, last delivery {ago:.0f} s ago: "
        f"another group {joins} (this group's own open incident, if any, comes first)"
    )


def _check_report(payload: WebhookPayload, raw: bytes, grader: Grader) -> list[Table | Text]:
    """The lines ``intake check`` prints for an accepted payload (every external string as text)."""
    from diagnostics.intake.decide import incoming, partial_group

    d = incoming(payload, raw, 0.0, grader)  # what the service computes, run id included
    table = Table(title=plain(f"group {payload.group_key} ({payload.status})"))
    # Fingerprints and rule ids are copied and searched for: whole, on one line; the rest folds.
    widths = {"fingerprint": 16, "rule": max(len(r) for r in grader.rule_ids)}
    for col in ("fingerprint", "status", "alertname", "severity", "grade", "rule"):
        table.add_column(col, overflow="fold", min_width=widths.get(col))
    for a in payload.alerts:
        graded = grader.grade_alert(a.labels)
        fingerprint = f"{a.fingerprint} (computed)" if a.fingerprint_computed else a.fingerprint
        level = grader.severity_of(a.labels) or "-"
        row = (fingerprint, a.status, a.labels.get("alertname", ""), level, graded.grade.value, graded.rule)
        table.add_row(*map(plain, row))
    out: list[Table | Text] = [table]
    if payload.origin != "alertmanager":
        out.append(plain(f"sent by {payload.sender}; read through its adapter as an Alertmanager v4 group"))
    if n := payload.computed_fingerprints:
        out.append(
            plain(f"{n} alert(s) without a fingerprint: computed from the labels as Alertmanager does")
        )
    if payload.truncated_alerts:
        out.append(
            plain(f"truncatedAlerts {payload.truncated_alerts}: {partial_group(d.truncated, bool(d.firing))}")
        )
    policy = grader.policy(d.graded.grade)
    basis = "" if d.firing else " (of its resolved alerts: no alert fires)"
    out.append(plain(f"group grade {d.graded.grade.value} ({d.graded.rule}): {policy.title}{basis}"))
    if d.run_id is None:
        out.append(
            plain(
                "starts an incident: no - no firing alert: annotates the group's incident, never starts one"
            )
        )
    else:
        starts = "yes" if policy.starts_incident else "no (recorded until it escalates)"
        out.append(plain(f"starts an incident: {starts}; escalation: {policy.escalation.model_dump()}"))
        out.append(plain(f"run id: {d.run_id}"))
        if (key := d.correlation) is not None:
            out.append(
                plain(
                    f"correlation: rule {key.rule}, key {key.text}: joins another group's open incident "
                    f"with this key delivered to within {key.window_s:g} s instead of opening one"
                )
            )
        else:
            out.append(plain("correlation: no rule applies: the group's incidents are its own"))
    return out


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
    listing.add_argument("--outcome", choices=["created", "pending", "update", "joined", "duplicate",
                                               "resolved", "recorded", "replayed"])  # fmt: skip
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
