"""``triage24``: the library's command line (``python -m diagnostics``) plus the harness's commands —
the local stack (``stack up|down|status|login``), the main job (``demo``), local model files
(``models prepare``) and the scenario suite (``scenario``).

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

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from diagnostics.cli import STATUS_STYLE, _progress, console, err
from diagnostics.cli import build_parser as library_parser
from diagnostics.cli import main as library_main
from diagnostics.config import Settings
from harness.stack.manager import ComponentStatus

SELFCHECK_DAG = "triage24_selfcheck"


def _status_table(statuses: Sequence[ComponentStatus]) -> Table:
    table = Table(title="Triage24 local stack")
    for col in ("component", "pid", "health", "state", "restarts", "detail", "log"):
        table.add_column(col)
    for s in statuses:
        health = Text("healthy", "green") if s.healthy else Text("unhealthy", "red")
        state = Text(s.state or "-", "red" if s.state == "failed" else "")
        # details quote processes and exceptions: text, never markup
        table.add_row(
            Text(s.name),
            str(s.pid or "-"),
            health,
            state,
            str(s.restarts),
            Text(s.detail),
            Text(str(s.log_file)),
        )
    return table


def cmd_stack(args: argparse.Namespace) -> int:
    from harness.stack import Stack, StackError
    from harness.stack.manager import as_dicts

    stack = Stack(with_testbed=not args.no_testbed)
    start = time.monotonic()
    if args.action == "up":
        try:
            statuses = stack.up(progress=_progress(start), timeout_s=args.timeout)
        except (StackError, FileNotFoundError) as exc:
            err.print(f"[red]stack up failed:[/red] {escape(str(exc))}")
            return 2
        console.print(_status_table(statuses))
        _print_login(stack.settings)
        return 0 if all(s.healthy for s in statuses) else 1
    if args.action == "down":
        stack.down(progress=_progress(start))
        console.print("stack stopped")
        return 0
    if args.action == "status":
        statuses = stack.status()
        if args.json:
            print(json.dumps(as_dicts(statuses), indent=2))
        else:
            console.print(_status_table(statuses))
        return 0 if statuses and all(s.healthy for s in statuses) else 1
    if args.action == "login":
        # The one place a secret is printed, and only on explicit request.
        password = stack.secrets["TRIAGE24_ADMIN_PASSWORD"]
        console.print(f"UI: {stack.settings.airflow_url}\nuser: admin\npassword: {password}")
        return 0
    raise AssertionError(args.action)


def _print_login(settings: Settings) -> None:
    console.print(
        f"\nAirflow UI: [bold]{settings.airflow_url}[/bold]  user: [bold]admin[/bold]  "
        f"password: in {settings.secrets_file} (TRIAGE24_ADMIN_PASSWORD), "
        "or run [bold]triage24 stack login[/bold]"
    )


def cmd_models(args: argparse.Namespace) -> int:
    from testbed.models import prepare

    paths = prepare(progress=lambda m: console.print(f"  {m}", markup=False))
    for name, path in paths.items():
        console.print(f"[green]ready[/green] {escape(f'{name}: {path}')}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: bring the stack up, prove it works end to end, say where to look."""
    from diagnostics.intake.airflow_api import AirflowApi, AirflowApiError
    from harness.stack import Stack, StackError

    start = time.monotonic()
    say = _progress(start)
    stack = Stack(with_testbed=not args.no_testbed)
    try:
        statuses = stack.up(progress=say, timeout_s=args.timeout)
    except (StackError, FileNotFoundError) as exc:
        err.print(f"[red]stack up failed:[/red] {escape(str(exc))}")
        return 2
    console.print(_status_table(statuses))
    if not all(s.healthy for s in statuses):
        err.print("[red]some components are unhealthy; see their logs above[/red]")
        return 1
    run_id = f"demo__{datetime.now(UTC):%Y%m%dT%H%M%S}"
    try:
        with AirflowApi(stack.settings.airflow_url, "admin", stack.secrets["TRIAGE24_ADMIN_PASSWORD"]) as api:
            say(f"waiting for the dag-processor to parse {SELFCHECK_DAG}")
            api.wait_for_dag(SELFCHECK_DAG)
            api.trigger(SELFCHECK_DAG, run_id=run_id)
            say(f"triggered {SELFCHECK_DAG} run {run_id}")
            run = api.wait_run(
                SELFCHECK_DAG, run_id, timeout_s=300, on_change=lambda s: say(f"run state: {s}")
            )
            tis = api.task_instances(SELFCHECK_DAG, run_id)
    except AirflowApiError as exc:
        err.print(f"[red]demo failed:[/red] {escape(str(exc))}")
        return 1
    table = Table(title=Text(f"{SELFCHECK_DAG} / {run_id}: {run['state']}"))
    table.add_column("task")
    table.add_column("state")
    for ti in sorted(tis, key=lambda t: str(t["task_id"])):
        table.add_row(Text(str(ti["task_id"])), Text(str(ti["state"])))
    console.print(table)
    ok = run["state"] == "success"
    incident_url = None
    if not args.no_testbed:
        _show_testbed(stack.settings, say)
        if args.fault != "none":
            incident_url = _demo_incident(stack, args.fault, say)
            ok = ok and incident_url is not None
    _print_login(stack.settings)
    ui = stack.settings.airflow_url
    console.print(f"Self-check run in the UI: {ui}/dags/{SELFCHECK_DAG}/runs/{run_id}")
    if incident_url:
        console.print(f"Incident run in the UI: {incident_url}")
    console.print("Stop everything with [bold]triage24 stack down[/bold]")
    return 0 if ok else 1


def _demo_incident(stack: Any, fault: str, say: Callable[[str], None]) -> str | None:
    """A real incident: fault -> Prometheus rule -> Alertmanager -> intake -> incident_response run."""
    from diagnostics.intake.airflow_api import AirflowApi, AirflowApiError
    from harness.demo import DemoError, run_incident

    settings = stack.settings
    try:
        with AirflowApi(settings.airflow_url, "admin", stack.secrets["TRIAGE24_ADMIN_PASSWORD"]) as api:
            inc = run_incident(settings, api, stack.secrets["TRIAGE24_TESTBED_ADMIN_TOKEN"], fault, say)
    except (DemoError, AirflowApiError) as exc:
        err.print(f"[red]demo incident failed:[/red] {escape(str(exc))}")
        return None
    s = inc.summary
    table = Table(title=Text(f"incident {inc.run_id}: {inc.state}; phase 1 {s['status']}: {s['summary']}"))
    for col in ("check", "status", "summary"):
        table.add_column(col)
    for name, r in inc.checks.items():
        status = str(r.get("status"))
        table.add_row(
            Text(name), Text(status, STATUS_STYLE.get(status, "white")), Text(str(r.get("summary")))
        )
    console.print(table)
    for f in s.get("findings", [])[:5]:
        where = "/".join(str(x) for x in (f.get("version"), f.get("channel")) if x)
        text = escape(f"{f['problem']} on {f['component']} ({where}): {f['evidence']}")
        console.print(f"[bold]{escape(str(f['severity']))}[/bold] {text}")
        if f.get("action"):
            console.print(f"    [dim]action:[/dim] {escape(str(f['action']))}")
    console.print(
        f"suspected component: [bold]{s.get('suspected_component')}[/bold] "
        f"({s.get('suspected_version') or 'no version'}); canary gate: {(s.get('gate') or {}).get('verdict')}"
    )
    d = inc.decision
    if d:
        console.print(
            f"[bold]decision: {d.get('outcome')}[/bold] (rule {d.get('rule')}"
            + (", hard gate breach" if d.get("gate_breach") else "")
            + (", no human needed" if d.get("acts_without_human") else "")
            + f"): {escape(str(d.get('summary')))}"
        )
    for name, r in inc.response.items():
        status = str(r.get("status"))
        console.print(
            f"{name}: [{STATUS_STYLE.get(status, 'white')}]{status}[/] {escape(str(r.get('summary')))}"
        )
    for title, phase in (
        ("phase 2 (deep diagnosis)", inc.deep),
        ("phase 3 (verified delivery)", inc.delivery),
    ):
        if phase:
            status = str(phase.get("status"))
            style = STATUS_STYLE.get(status, "white")
            console.print(f"{title}: [{style}]{status}[/] {escape(str(phase.get('summary')))}")
    if inc.report is not None:
        console.print(f"diff report: {inc.report}")
    console.print(
        f"fault -> incident run {inc.alert_to_run_s:.1f} s; the run (phases 1-3, decision, response) took "
        f"{inc.run_s:.1f} s; evidence in {inc.artifacts}"
    )
    if inc.state != "success":
        return None
    return f"{settings.airflow_url}/dags/incident_response/runs/{inc.run_id}"


def _show_testbed(settings: Settings, say: Callable[[str], None]) -> None:
    """What the testbed is doing, read from the service itself and from Prometheus."""
    import httpx
    from prometheus_api_client import PrometheusConnect

    health = Table(title="testbed: health and model checksums (vs the pinned SHA-256)")
    for col in ("version", "status", "modules", "models"):
        health.add_column(col)
    for version, port in (("stable", settings.testbed_stable_port), ("canary", settings.testbed_canary_port)):
        body = httpx.get(f"http://{settings.host}:{port}/v1/health", timeout=5).json()
        modules = ", ".join(f"{m}={st}" for m, st in body["modules"].items())
        models = ", ".join(
            f"{m['name']} {'ok' if m.get('checksum_ok') else 'MISMATCH'}" for m in body["models"]
        )
        health.add_row(version, *(Text(str(x)) for x in (body["status"], modules, models)))
    console.print(health)

    prom = PrometheusConnect(url=f"http://{settings.host}:{settings.prometheus_port}", disable_ssl=True)
    query = "sum by (version, channel) (rate(testbed_requests_total[1m]))"
    say("waiting for Prometheus to scrape the testbed's traffic")
    deadline = time.monotonic() + 90
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = [r for r in prom.custom_query(query) if float(r["value"][1]) > 0]
        if {str(r["metric"]["version"]) for r in rows} >= {"stable", "canary"}:
            break
        time.sleep(3)
    traffic = Table(title=Text(f"Prometheus: {query}"))
    for col in ("version", "channel", "req/s"):
        traffic.add_column(col)
    for r in sorted(rows, key=lambda r: (str(r["metric"]["version"]), str(r["metric"]["channel"]))):
        traffic.add_row(
            Text(str(r["metric"]["version"])),
            Text(str(r["metric"]["channel"])),
            f"{float(r['value'][1]):.2f}",
        )
    console.print(traffic)


def build_parser() -> argparse.ArgumentParser:
    parser = library_parser()
    parser.prog = "triage24"
    parser.description = __doc__.splitlines()[0] if __doc__ else None
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    stack = sub.add_parser("stack", help="start, stop and inspect the local stack")
    stack.add_argument("action", choices=["up", "down", "status", "login"])
    stack.add_argument("--no-testbed", action="store_true", help="only Airflow, Prometheus and Alertmanager")
    stack.add_argument("--timeout", type=float, default=None, help="seconds to wait for health (default 180)")
    stack.add_argument("--json", action="store_true", help="status as JSON")
    stack.set_defaults(func=cmd_stack)

    models = sub.add_parser("models", help="prepare local model files (Whisper checkpoint)")
    models.add_argument("action", choices=["prepare"])
    models.set_defaults(func=cmd_models)

    demo = sub.add_parser("demo", help="the main job: start the stack and run the pipeline end to end")
    demo.add_argument("--no-testbed", action="store_true")
    demo.add_argument("--timeout", type=float, default=None)
    demo.add_argument(
        "--fault",
        choices=["model_not_loaded", "none"],
        default="model_not_loaded",
        help="the fault injected on the canary for the demo incident ('none': no incident)",
    )
    demo.set_defaults(func=cmd_demo)

    from harness.scenario.cli import register as register_scenario

    register_scenario(sub)

    from harness.results_md.cli import register as register_results

    register_results(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return library_main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
