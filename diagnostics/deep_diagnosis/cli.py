"""CLI of phase 2: ``triage24 check <phase-2 check>|phase2`` and ``triage24 baseline record``.

The check pods of kubernetes mode run the same command with ``--incident-b64`` (the DAG's incident)
and ``--xcom /airflow/xcom/return.json`` (where the operator's sidecar picks the result up).
"""

from __future__ import annotations

import argparse
import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()
err = Console(stderr=True)
STYLE = {"ok": "green", "degraded": "yellow", "failed": "red", "insufficient_evidence": "magenta"}


def _progress_bar(quiet: bool) -> tuple[Progress | None, Any]:
    """A rich progress bar on stderr (one line per task: version and step), or log lines when quiet."""
    from diagnostics.deep_diagnosis.base import log_progress

    if quiet:
        return None, log_progress
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    )
    tasks: dict[str, Any] = {}

    def update(what: str, done: int, total: int) -> None:
        if what not in tasks:
            tasks[what] = bar.add_task(what, total=total)
        bar.update(tasks[what], completed=done, total=total)

    return bar, update


def _incident(args: argparse.Namespace) -> Any:
    from diagnostics.golden_window.phase import open_incident
    from diagnostics.incident.model import Incident

    if args.incident_b64:
        try:
            return Incident.model_validate_json(base64.b64decode(args.incident_b64, validate=True))
        except ValueError as exc:
            raise ValueError(
                f"--incident-b64: not a base64-encoded incident JSON ({str(exc)[:200]})"
            ) from None
    conf: dict[str, Any] = {"window_minutes": args.window_minutes}
    if args.target:
        conf["target"] = args.target
    return open_incident(f"cli__{datetime.now(UTC):%Y%m%dT%H%M%S}", conf)


def run_phase2(args: argparse.Namespace, names: list[str]) -> int:
    """Run phase-2 checks now (the DAG's code), show them, optionally write the XCom file."""
    from diagnostics.deep_diagnosis.base import DeepContext
    from diagnostics.deep_diagnosis.runner import run_check
    from diagnostics.golden_window.phase import EvidenceSources
    from diagnostics.runbooks import load_runbooks

    incident = _incident(args)
    books = load_runbooks()
    target = books.targets.get(incident.target)
    bar, progress = _progress_bar(args.json or bool(args.xcom))
    ctx = DeepContext(
        books=books,
        target=target,
        incident=incident,
        sources=EvidenceSources.from_settings(),
        progress=progress,
    )
    versions = ("stable", "canary") if args.version == "both" else (args.version,)
    results = []
    if bar is not None:
        bar.start()
    try:
        for name in names:
            if bar is None and not args.json:
                err.print(f"running {name} on {incident.target}")
            results.append(run_check(name, ctx, versions))
    finally:
        if bar is not None:
            bar.stop()
    if args.xcom:
        if len(results) != 1:
            raise ValueError("--xcom takes exactly one check")
        path = Path(args.xcom)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(results[0].model_dump_json(), encoding="utf-8")
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in results], indent=2))
    elif not args.xcom:
        table = Table(title=f"{incident.target}: phase-2 checks")
        for col in ("check", "version", "status", "summary"):
            table.add_column(col)
        for r in results:
            for v, o in r.versions.items():
                table.add_row(r.check, v, f"[{STYLE[o.status.value]}]{o.status.value}[/]", o.summary)
            if not r.versions:
                table.add_row(r.check, "-", f"[{STYLE[r.status.value]}]{r.status.value}[/]", r.summary)
        console.print(table)
        for r in results:
            for f in r.findings[:10]:
                console.print(
                    f"[bold]{f.severity}[/bold] {f.problem} on {f.component} ({f.version}): {f.evidence}"
                )
                if f.action:
                    console.print(f"    [dim]action:[/dim] {f.action}")
    return 0 if all(r.status.value == "ok" for r in results) else 1


def cmd_baseline(args: argparse.Namespace) -> int:
    """Record the healthy baselines of phase-2 checks from one version (review the diff, then commit)."""
    from diagnostics.deep_diagnosis.base import DeepContext
    from diagnostics.deep_diagnosis.phase import phase_checks
    from diagnostics.deep_diagnosis.runner import record_baselines
    from diagnostics.runbooks import load_runbooks

    books = load_runbooks()
    target = books.targets.get(args.target or books.targets.targets[0].name)
    names = args.checks or phase_checks(books)
    bar, progress = _progress_bar(False)
    ctx = DeepContext(books=books, target=target, progress=progress)
    assert bar is not None
    with bar:
        written = record_baselines(ctx, names, args.version)
    failed = False
    for name, out in written.items():
        if isinstance(out, Path):
            console.print(f"{name}: baseline of {target.name}/{args.version} written to {out}")
        else:
            failed = True
            err.print(f"[red]{name}: not recorded[/red] ({out}); the previous baseline stays")
    return 1 if failed else 0


def register(sub: Any) -> None:
    baseline = sub.add_parser("baseline", help="record phase-2 healthy baselines from a version")
    baseline.add_argument("action", choices=["record"])
    baseline.add_argument("--target", help="a target of runbooks/targets.yaml (default: the first)")
    baseline.add_argument(
        "--version", default="stable", choices=["stable", "canary"], help="a healthy version"
    )
    baseline.add_argument("--checks", nargs="+", help="only these checks (default: every phase-2 check)")
    baseline.set_defaults(func=cmd_baseline)
