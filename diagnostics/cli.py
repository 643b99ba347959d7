"""``python -m diagnostics``: the library's command line (checks, runbooks, intake, phase 2, regression,
audit, report). ``triage24`` is this plus the harness's commands (``harness/cli.py``: stack, demo,
models, scenario).

Exit codes: 0 success, 1 the thing checked is unhealthy/invalid, 2 bad usage or a component that
cannot start.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from diagnostics.config import Settings

console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _progress(start: float) -> Callable[[str], None]:
    def say(msg: str) -> None:
        console.print(f"[dim]{time.monotonic() - start:6.1f}s[/dim] {escape(msg)}")  # msg is text

    return say


def cmd_runbooks(args: argparse.Namespace) -> int:
    from pathlib import Path

    from diagnostics.runbooks import FILES, RunbookError, load_runbooks

    directory = Path(args.dir) if args.dir else Settings().runbooks_dir
    try:
        books = load_runbooks(directory)
    except RunbookError as exc:
        err.print(f"[red]{len(exc.problems)} problem(s) in {directory}:[/red]")
        for problem in exc.problems:
            err.print(f"  {problem}", markup=False)
        return 1
    console.print(
        f"[green]ok[/green] {', '.join(FILES)} in {directory}: {len(books.sop.phases)} phases, "
        f"{len(books.priority_matrix.problems)} problem types, {len(books.targets.targets)} target(s), "
        f"{len(books.decision.precedence)} decision rules"
    )
    return 0


STATUS_STYLE = {"ok": "green", "degraded": "yellow", "failed": "red", "insufficient_evidence": "magenta"}


def cmd_check(args: argparse.Namespace) -> int:
    """Run phase-1 or phase-2 checks now, outside Airflow (same code as the DAG's tasks)."""
    from diagnostics.golden_window.phase import PHASE, PHASE_CHECKS, EvidenceSources, open_incident, run_check
    from diagnostics.incident.model import IncidentError
    from diagnostics.incident.summary import summarize
    from diagnostics.runbooks import RunbookError, load_runbooks

    if args.name not in PHASE_CHECKS and args.name != "phase1":
        from diagnostics.deep_diagnosis.cli import run_phase2
        from diagnostics.deep_diagnosis.phase import phase_checks

        try:
            deep = phase_checks()
            if args.name != "phase2" and args.name not in deep:
                valid = ["phase1", *PHASE_CHECKS, "phase2", *deep]
                err.print(f"[red]unknown check {escape(repr(args.name))}[/red]; valid: {', '.join(valid)}")
                return 2
            return run_phase2(args, deep if args.name == "phase2" else [args.name])
        except (IncidentError, RunbookError, ValueError, KeyError) as exc:
            err.print(f"[red]cannot run:[/red] {escape(str(exc))}")
            return 2

    conf: dict[str, Any] = {"window_minutes": args.window_minutes}
    if args.target:
        conf["target"] = args.target
    run_id = f"cli__{datetime.now(UTC):%Y%m%dT%H%M%S}"
    try:
        books = load_runbooks()
        incident = open_incident(run_id, conf)
    except (IncidentError, RunbookError, ValueError) as exc:
        err.print(f"[red]cannot start:[/red] {escape(str(exc))}")
        return 2
    names = list(PHASE_CHECKS) if args.name == "phase1" else [args.name]
    sources = EvidenceSources.from_settings()
    results = []
    for name in names:
        if not args.json:
            err.print(f"[dim]running {escape(f'{name} on {incident.target}')}…[/dim]")
        results.append(run_check(name, incident, sources, books))
    summary = summarize(PHASE, results)
    if args.json:
        out = {"incident": incident.summary(), "summary": summary.brief(findings=50)}
        print(json.dumps({**out, "results": [r.model_dump(mode="json") for r in results]}, indent=2))
    else:
        # Summaries and evidence quote services, logs and labels: shown as text, never as markup.
        title = f"{incident.target}: phase-1 checks over the last {incident.window_s / 60:g} min"
        table = Table(title=Text(title))
        for col in ("check", "status", "summary"):
            table.add_column(col)
        for r in results:
            status = Text(r.status.value, style=STATUS_STYLE[r.status.value])
            table.add_row(Text(r.check), status, Text(r.summary))
        console.print(table)
        for f in summary.findings[:20]:
            where = "/".join(x for x in (f.version, f.channel) if x)
            where = f" ({where})" if where else ""
            console.print(
                f"[bold]{escape(str(f.severity))}[/bold] "
                + escape(f"{f.problem} on {f.component}{where}: {f.evidence}")
            )
            if f.action:
                console.print(f"    [dim]action:[/dim] {escape(f.action)}")
    return 0 if summary.status == "ok" else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m diagnostics", description=__doc__.splitlines()[0] if __doc__ else None
    )
    sub = parser.add_subparsers(dest="command", required=True)

    runbooks = sub.add_parser("runbooks", help="validate the runbooks")
    runbooks.add_argument("action", choices=["validate"])
    runbooks.add_argument("--dir", help="runbooks directory (default: the repo's runbooks/)")
    runbooks.set_defaults(func=cmd_runbooks)

    check = sub.add_parser(
        "check", help="run phase-1 or phase-2 checks against a target now (no Airflow needed)"
    )
    check.add_argument(
        "name",
        help="phase1, health_snapshot, model_integrity, metrics_sla, log_classification; phase2 or a phase-2 "
        "check of runbooks/sop.yaml (clip_consistency, embedding_alignment, asr_check, temporal_alignment, "
        "alignment_quality, drift)",
    )
    check.add_argument("--target", help="a target of runbooks/targets.yaml (default: the first)")
    check.add_argument("--window-minutes", type=float, default=15.0, help="how far back to look (1-120)")
    check.add_argument("--json", action="store_true", help="full results as JSON on stdout")
    check.add_argument(
        "--version", default="both", choices=["both", "stable", "canary"], help="phase 2: which versions"
    )
    check.add_argument("--incident-b64", help="phase 2 in a pod: the DAG's incident (base64 JSON)")
    check.add_argument(
        "--xcom", help="phase 2 in a pod: write the full result here (/airflow/xcom/return.json)"
    )
    check.set_defaults(func=cmd_check)

    from diagnostics.intake.cli import register as register_intake

    register_intake(sub)
    from diagnostics.deep_diagnosis.cli import register as register_deep

    register_deep(sub)
    from diagnostics.verified_delivery.regression.cli import register as register_regression

    register_regression(sub)
    from diagnostics.verified_delivery.audit.cli import register as register_audit

    register_audit(sub)
    from diagnostics.verified_delivery.report.cli import register as register_report

    register_report(sub)
    return parser


def main(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Parse and run one command (``parser``: the harness passes its larger one)."""
    args = (parser or build_parser()).parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
