"""The harness's tables and progress lines print what components, scenario files and runs say as text:
a ``[/]`` or a ``job=~"blackbox-[a-z]+"`` in them is shown as written, never parsed as Rich markup."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from diagnostics import cli as library_cli
from harness.cli import _status_table
from harness.scenario.cli import figures_table, results_table
from harness.stack.manager import ComponentStatus

MARKUP = '[/] [red]x[/red] job=~"blackbox-[a-z]+" [bold'


def rendered(thing: Any) -> str:
    console = Console(width=400, highlight=False, soft_wrap=True)
    with console.capture() as captured:
        console.print(thing)
    return captured.get()


def test_the_stack_table_shows_details_as_written() -> None:
    status = ComponentStatus(
        name="alertmanager",
        pid=42,
        running=True,
        healthy=False,
        detail=MARKUP,
        log_file="/tmp/[x]/am.log",
        url="",
    )
    text = rendered(_status_table([status]))
    assert MARKUP in text and "/tmp/[x]/am.log" in text and "unhealthy" in text


def test_the_scenario_tables_show_names_and_decisions_as_written() -> None:
    summary = {
        "results": [
            {
                "scenario": "[/]odd",
                "status": "fail",
                "decision": MARKUP,
                "rollback": False,
                "timings": {"first_evidence_s": 12.0, "rollback_applied_s": None, "total_s": 80.5},
            }
        ],
        "accuracy": "[/]",
    }
    text = rendered(results_table(summary))
    assert "[/]odd" in text and MARKUP in text and "80.5" in text
    assert "[/]" in rendered(figures_table(summary))


def test_progress_lines_are_text(capsys: Any) -> None:
    library_cli._progress(0.0)(MARKUP)
    assert MARKUP in capsys.readouterr().out
