"""``triage24 scenario run | validate``: the scenario suite from the command line.

Exit codes: 0 every scenario passed (or every file is valid), 1 a scenario failed or met an error,
2 bad usage, an invalid scenario file, or a stack that cannot be used; 130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

# A log file or a pipe gets a wide table (rich would fold it to 80 columns).
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, highlight=False, soft_wrap=True)

SUMMARY_DEFAULT = "benchmarks/results/scenarios.json"
STYLE = {"pass": "green", "fail": "red", "error": "magenta"}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value[:4]) + (" …" if len(value) > 4 else "")
    return str(value)


def results_table(summary: dict[str, Any]) -> Table:
    table = Table(title="Triage24 scenarios")
    for col in ("scenario", "status", "decision", "rollback", "evidence s", "rollback s", "total s"):
        table.add_column(col, no_wrap=col == "scenario")
    for r in summary["results"]:
        t = r["timings"]
        # names and decisions come from scenario files and the runs: text, never Rich markup
        table.add_row(
            Text(str(r["scenario"])),
            Text(r["status"], STYLE[r["status"]]),
            Text(_fmt(r["decision"])),
            "yes" if r["rollback"] else "no",
            _fmt(t.get("first_evidence_s")),
            _fmt(t.get("rollback_applied_s")),
            _fmt(t.get("total_s")),
        )
    return table


def failures(summary: dict[str, Any]) -> list[str]:
    """One line per failed expectation or runner error: expected vs observed."""
    out = []
    for r in summary["results"]:
        out += [f"{r['scenario']}: error: {e}" for e in r["errors"]]
        out += [
            f"{r['scenario']}: {f['expectation']}: expected {_fmt(f['expected'])}, got {_fmt(f['observed'])}"
            + (f" ({f['detail']})" if f.get("detail") else "")
            for f in r["failed"]
        ]
    return out


def figures_table(summary: dict[str, Any]) -> Table:
    table = Table(title="suite figures")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in (
        "accuracy",
        "expectation_accuracy",
        "healthy_rollbacks",
        "detection_median_s",
        "first_evidence_median_s",
        "rollback_applied_median_s",
        "fault_to_rollback_median_s",
        "incident_total_median_s",
        "peak_rss_mib",
        "peak_pss_mib",
    ):
        value = summary.get(key)
        # a share as a percentage: one decimal of 0.96 would read "1.0", every scenario passed
        shown = f"{value:.1%}" if key.endswith("accuracy") and isinstance(value, float) else _fmt(value)
        table.add_row(key, Text(shown))
    return table


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.scenario.schema import ScenarioError, load_suite

    try:
        suite = load_suite([Path(p) for p in args.paths])
    except ScenarioError as exc:
        err.print(f"[red]{len(exc.problems)} problem(s):[/red]")
        for problem in exc.problems:
            err.print(f"  {problem}", markup=False)
        return 2
    for path, sc in suite:
        line = (
            f"{path}: {sc.id} ({len(sc.faults)} fault(s), {len(sc.outages)} outage(s), "
            f"trigger {sc.trigger.kind}, tags {', '.join(sc.tags) or '-'})"
        )
        console.print(f"[green]ok[/green] {escape(line)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from diagnostics.config import Settings
    from harness.scenario.results import default_out_dir
    from harness.scenario.runner import run_suite
    from harness.scenario.schema import ScenarioError, load_suite
    from harness.scenario.suite_stack import RunnerError

    try:
        suite = load_suite([Path(p) for p in args.paths], tags=args.tag or None)
    except ScenarioError as exc:
        err.print(f"[red]{len(exc.problems)} problem(s) in the scenario files; nothing was run:[/red]")
        for problem in exc.problems:
            err.print(f"  {problem}", markup=False)
        return 2
    if not suite:
        err.print(f"[red]no scenario matches the tags {escape(str(args.tag))}[/red]")
        return 2
    settings = Settings(home=Path(args.home)) if args.home else Settings()
    out_dir = Path(args.out) if args.out else default_out_dir(settings)
    summary_path = None if args.no_summary else Path(args.summary)
    start = time.monotonic()

    def say(msg: str) -> None:
        console.print(f"[dim]{time.monotonic() - start:7.1f}s[/dim] {escape(msg)}", markup=True)

    say(
        f"{len(suite)} scenario(s); results in {out_dir}"
        + (f", summary {summary_path}" if summary_path else "")
    )

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C: faults cleared, outages undone

    signal.signal(signal.SIGTERM, stop)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background by a shell
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = run_suite(
            suite,
            settings,
            out_dir=out_dir,
            summary_path=summary_path,
            timeout_cap_s=args.timeout,
            command=_command(args),
            say=say,
            keep_stack=args.keep_stack,
            reset_evidence=args.reset_evidence,
            canary_watch=args.canary_watch,
        )
    except RunnerError as exc:
        err.print(f"[red]cannot run the scenarios:[/red] {escape(str(exc))}")
        return 2
    console.print(results_table(result.summary))
    for line in failures(result.summary):
        console.print(f"  [red]✗[/red] {escape(line)}")
    console.print(figures_table(result.summary))
    if summary_path:
        console.print(f"summary: {summary_path}; per scenario: {out_dir}/<name>.json", markup=False)
    if result.interrupted:
        err.print("interrupted: the results above cover the scenarios that ran")
        return 130
    return 0 if result.summary["passed"] == len(result.outcomes) else 1


def cmd_rescore(args: argparse.Namespace) -> int:
    from harness.scenario.results import rescore
    from harness.scenario.schema import ScenarioError

    out_dir = Path(args.out)
    if not out_dir.is_dir():
        err.print(
            f"[red]{escape(str(out_dir))} is not a directory of scenario results[/red] (the --out of a run)"
        )
        return 2
    summary_path = None if args.no_summary else Path(args.summary)
    try:
        summary = rescore(out_dir, summary_path, say=lambda m: console.print(escape(m)))
    except ScenarioError as exc:
        err.print(f"[red]{len(exc.problems)} problem(s) in the scenario files:[/red]")
        for problem in exc.problems:
            err.print(f"  {problem}", markup=False)
        return 2
    if not summary["results"]:
        err.print(f"[red]no scenario results (<name>.json) in {escape(str(out_dir))}[/red]")
        return 2
    console.print(results_table(summary))
    for line in failures(summary):
        console.print(f"  [red]✗[/red] {escape(line)}")
    console.print(figures_table(summary))
    return 0 if summary["passed"] == summary["scenarios"] else 1


def cmd_merge(args: argparse.Namespace) -> int:
    from harness.scenario.merge import MergeError, merge_parts
    from harness.scenario.results import write_json
    from harness.scenario.schema import ScenarioError

    command = " ".join(["triage24 scenario merge", *args.parts, *(f"--suite {p}" for p in args.suite or [])])
    try:
        summary = merge_parts(
            [Path(p) for p in args.parts],
            command=command,
            suite=[Path(p) for p in args.suite] if args.suite else None,
        )
    except (MergeError, ScenarioError) as exc:
        err.print(f"[red]the parts cannot be merged ({len(exc.problems)} problem(s)):[/red]")
        for problem in exc.problems:
            err.print(f"  {problem}", markup=False)
        return 2
    write_json(Path(args.summary), summary)
    console.print(results_table(summary))
    for line in failures(summary):
        console.print(f"  [red]✗[/red] {escape(line)}")
    console.print(figures_table(summary))
    if summary.get("not_run"):
        console.print(f"not run: {escape(', '.join(summary['not_run']))}")
    console.print(f"summary: {escape(args.summary)} (commit {escape(summary['commits'][0])})")
    return 0 if summary["passed"] == summary["scenarios"] else 1


def _command(args: argparse.Namespace) -> str:
    parts = ["triage24 scenario run", *args.paths]
    for flag in ("out", "summary", "timeout", "home"):
        value = getattr(args, flag)
        if value is not None and not (flag == "summary" and value == SUMMARY_DEFAULT):
            parts.append(f"--{flag} {value}")
    parts += [f"--tag {t}" for t in args.tag or []]
    if args.keep_stack:
        parts.append("--keep-stack")
    if args.canary_watch:
        parts.append("--canary-watch")
    if args.reset_evidence is not None:
        parts.append("--reset-evidence" if args.reset_evidence else "--no-reset-evidence")
    return " ".join(parts)


def register(sub: Any) -> None:
    """Add ``scenario`` to the ``triage24`` command line (``sub``: its subparsers)."""
    scenario = sub.add_parser("scenario", help="run the scenario suite (faults, outages, expectations)")
    actions = scenario.add_subparsers(dest="scenario_action", required=True)

    run = actions.add_parser(
        "run",
        help="run scenario files on the local stack and score them",
        description="Bring the local stack up if needed, run each scenario (faults, traffic, outages), wait "
        "for the incident run, score every expectation; see benchmarks/README.md.",
    )
    run.add_argument("paths", nargs="+", help="scenario files or directories of them (benchmarks/scenarios/)")
    run.add_argument("--out", help="per-scenario JSON results (default <TRIAGE24_HOME>/scenarios/<time>/)")
    run.add_argument(
        "--summary",
        default=SUMMARY_DEFAULT,
        help="the suite's summary JSON (default benchmarks/results/scenarios.json)",
    )
    run.add_argument("--no-summary", action="store_true", help="write no summary file")
    run.add_argument(
        "--timeout", type=float, default=None, help="seconds per scenario at most (caps timeout_s)"
    )
    run.add_argument("--tag", action="append", help="only scenarios with this tag (repeatable)")
    run.add_argument("--home", help="the stack's state directory (default TRIAGE24_HOME or .triage24/)")
    run.add_argument("--keep-stack", action="store_true", help="leave a stack the runner started running")
    run.add_argument(
        "--canary-watch",
        action="store_true",
        help="watch the canary (triage24_canary_watch) from each scenario's warm-up on, as a release would",
    )
    reset = run.add_mutually_exclusive_group()
    reset.add_argument(
        "--reset-evidence",
        dest="reset_evidence",
        action="store_const",
        const=True,
        default=None,
        help="restart Prometheus on an empty TSDB and truncate testbed logs before each scenario even on a "
        "stack the runner did not start (destroys that stack's metric history)",
    )
    reset.add_argument(
        "--no-reset-evidence", dest="reset_evidence", action="store_const", const=False, help="never reset"
    )
    run.set_defaults(func=cmd_run)

    again = actions.add_parser(
        "rescore",
        help="score a run's stored observations again against the scenario files as they are now",
    )
    again.add_argument("out", help="the --out directory of a `scenario run`")
    again.add_argument(
        "--summary", default=SUMMARY_DEFAULT, help=f"the summary to rewrite (default {SUMMARY_DEFAULT})"
    )
    again.add_argument("--no-summary", action="store_true", help="write no summary file")
    again.set_defaults(func=cmd_rescore)

    merge = actions.add_parser(
        "merge",
        help="join the parts of a suite run into one summary (same commit, same files, same machine)",
        description="Join the --out directories of several `scenario run`s into one summary. Refuses parts "
        "from different commits or machines, from a checkout with local changes, a scenario whose file "
        "changed since it ran, and a scenario present in two parts.",
    )
    merge.add_argument("parts", nargs="+", help="the --out directory of each part, in order")
    merge.add_argument(
        "--summary", default=SUMMARY_DEFAULT, help=f"the summary to write (default {SUMMARY_DEFAULT})"
    )
    merge.add_argument(
        "--suite",
        action="append",
        help="scenario files or directories the parts should cover (lists not_run)",
    )
    merge.set_defaults(func=cmd_merge)

    validate = actions.add_parser("validate", help="check scenario files without running them")
    validate.add_argument("paths", nargs="+")
    validate.set_defaults(func=cmd_validate)


__all__ = [
    "cmd_merge",
    "cmd_rescore",
    "cmd_run",
    "cmd_validate",
    "failures",
    "figures_table",
    "register",
    "results_table",
]
