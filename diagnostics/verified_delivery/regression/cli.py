"""``triage24 regression run|record``: the golden regression suite from the command line."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()
err = Console(stderr=True)
STYLE = {"ok": "green", "degraded": "yellow", "failed": "red", "insufficient_evidence": "magenta"}


def cmd_regression(args: argparse.Namespace) -> int:
    from diagnostics.config import Settings
    from diagnostics.deep_diagnosis.base import DeepContext
    from diagnostics.deep_diagnosis.cli import _progress_bar
    from diagnostics.runbooks import RunbookError, load_runbooks
    from diagnostics.verified_delivery.regression.suite import record_baseline, run_suite

    try:
        books = load_runbooks()
        target = books.targets.get(args.target or books.targets.targets[0].name)
        golden = DeepContext(books=books, target=target).golden()
    except (RunbookError, KeyError, ValueError, FileNotFoundError) as exc:
        err.print(f"[red]cannot run:[/red] {exc}")
        return 2
    if args.action == "record":
        try:
            path = record_baseline(books, target, golden, args.version)
        except ValueError as exc:
            err.print(f"[red]not recorded:[/red] {exc}")
            return 1
        console.print(
            f"regression baseline of {target.name}/{args.version} written to {path}; review and commit it"
        )
        return 0
    bar, progress = _progress_bar(args.json)
    history = Settings().artifacts / "regression" / "history.jsonl"
    if bar is not None:
        bar.start()
    try:
        result = run_suite(
            books, target, golden, args.version, trigger="manual", history=history, progress=progress
        )
    finally:
        if bar is not None:
            bar.stop()
    if args.json:
        print(json.dumps(result.model_dump(mode="json"), indent=2))
    else:
        table = Table(title=f"{target.name}/{args.version}: {result.summary[:120]}")
        for col in ("case", "metric", "value", "baseline", "status"):
            table.add_column(col)
        for c in result.cases:
            if c.status.value != "ok" or args.all:
                style = STYLE[c.status.value]
                table.add_row(
                    c.case, c.metric, str(c.value), str(c.baseline), f"[{style}]{c.status.value}[/]"
                )
        console.print(table)
        console.print(", ".join(f"{k}: [{STYLE[v.value]}]{v.value}[/]" for k, v in result.channels.items()))
    return 0 if result.status.value == "ok" else 1


def register(sub: Any) -> None:
    p = sub.add_parser("regression", help="run the golden regression suite, or record its baseline")
    p.add_argument("action", choices=["run", "record"])
    p.add_argument("--target", help="a target of runbooks/targets.yaml (default: the first)")
    p.add_argument("--version", default="canary", choices=["stable", "canary"])
    p.add_argument("--json", action="store_true", help="the full result as JSON")
    p.add_argument("--all", action="store_true", help="show passing cases too")
    p.set_defaults(func=cmd_regression)
