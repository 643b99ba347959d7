"""``triage24 results render [--check]``: write ``benchmarks/RESULTS.md`` from
``benchmarks/results/*.json``, or check that the committed file is what they give.

Exit codes: 0 written, or up to date; 1 ``--check`` found a difference; 2 no results directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def cmd_results(args: argparse.Namespace) -> int:
    from harness.results_md.render import check, render

    results_dir, out = Path(args.results), Path(args.out)
    if not results_dir.is_dir():
        print(
            f"no results directory at {results_dir} (run from the repository root, or pass --results)",
            file=sys.stderr,
        )
        return 2
    if args.check:
        drift = check(out, results_dir)
        if drift is None:
            print(f"{out} is what {results_dir}/*.json give")
            return 0
        print(drift.summary(out), file=sys.stderr)
        return 1
    text = render(results_dir)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({len(text.splitlines())} lines) from {results_dir}/*.json")
    return 0


def register(sub: Any) -> None:
    """Add ``results`` to the ``triage24`` command line (``sub``: its subparsers)."""
    from harness.results_md.render import RESULTS_DIR, RESULTS_MD

    results = sub.add_parser("results", help="benchmarks/RESULTS.md from benchmarks/results/*.json")
    actions = results.add_subparsers(dest="results_action", required=True)
    render = actions.add_parser(
        "render",
        help="write benchmarks/RESULTS.md (or --check it) from the results JSON",
        description="Render every benchmarks/results/*.json into benchmarks/RESULTS.md (paths relative to "
        "the current directory: run it from the repository root). --check writes nothing and exits 1 "
        "with a diff summary when the file differs from what the JSON gives.",
    )
    render.add_argument(
        "--results", default=str(RESULTS_DIR), help=f"the results directory (default {RESULTS_DIR})"
    )
    render.add_argument("--out", default=str(RESULTS_MD), help=f"the Markdown file (default {RESULTS_MD})")
    render.add_argument(
        "--check", action="store_true", help="compare instead of writing; exit 1 on a difference"
    )
    render.set_defaults(func=cmd_results)


__all__ = ["cmd_results", "register"]
