"""The local stack: secrets, rendered configs, clear start-up errors, and a real up/status/down."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from harness.stack import ComponentStatus, Stack, StackError
from harness.stack.components import airflow_env, metrics_token_file, render_configs, write_airflow_files
from harness.stack.manager import stack_processes
from harness.stack.secrets import SECRET_NAMES, ensure_secrets
from tests.conftest import REPO, stack_settings


def test_secrets_are_created_once_private_and_strong(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    first = ensure_secrets(path)
    assert set(first) == SECRET_NAMES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Airflow wants a JWT secret of at least 64 bytes.
    assert len(first["AIRFLOW__API_AUTH__JWT_SECRET"].encode()) >= 64
    assert ensure_secrets(path) == first, "secrets must never change once written"
    # A file missing an entry gets it added; the others stay.
    path.write_text(f"TRIAGE24_ADMIN_PASSWORD={first['TRIAGE24_ADMIN_PASSWORD']}\n")
    again = ensure_secrets(path)
    assert again["TRIAGE24_ADMIN_PASSWORD"] == first["TRIAGE24_ADMIN_PASSWORD"]
    assert set(again) == SECRET_NAMES


def test_configs_are_rendered_with_the_configured_ports(tmp_path: Path) -> None:
    s = stack_settings(tmp_path)
    out = render_configs(s)
    prom = out["prometheus"].read_text()
    assert f"127.0.0.1:{s.alertmanager_port}" in prom
    assert f"127.0.0.1:{s.prometheus_port}" in prom
    assert str(REPO / "deploy" / "prometheus" / "rules") in prom
    assert "${" not in prom and "${" not in out["alertmanager"].read_text()


def test_prometheus_scrapes_triage24_s_metrics_with_a_token_kept_out_of_the_config(tmp_path: Path) -> None:
    s = stack_settings(tmp_path)
    secrets = ensure_secrets(s.secrets_file)
    write_airflow_files(s, secrets)
    rendered = render_configs(s)["prometheus"]
    config = yaml.safe_load(rendered.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "triage24"]
    assert job["metrics_path"] == "/triage24/intake/metrics"
    assert job["static_configs"] == [{"targets": [f"127.0.0.1:{s.airflow_port}"]}]
    token_file = metrics_token_file(s)
    assert job["authorization"] == {"type": "Bearer", "credentials_file": str(token_file)}
    assert token_file.read_text() == secrets["TRIAGE24_METRICS_TOKEN"]
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert secrets["TRIAGE24_METRICS_TOKEN"] not in rendered.read_text()
    # the api-server accepts exactly this token on /metrics; it is not the webhook's
    env = airflow_env(s, secrets)
    assert env["TRIAGE24_METRICS_TOKEN"] == secrets["TRIAGE24_METRICS_TOKEN"] != env["TRIAGE24_WEBHOOK_TOKEN"]
    # the rules Prometheus loads include Triage24's own
    rules_glob = Path(config["rule_files"][0])
    assert (rules_glob.parent / "triage24.yml").is_file() and rules_glob.name == "*.yml"
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool missing (apt-get install prometheus): the rendered config is not checked by it")
    done = subprocess.run([promtool, "check", "config", str(rendered)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 7 rules found" in done.stdout


def test_a_taken_port_names_the_component_the_owner_and_the_setting(tmp_path: Path) -> None:
    s = stack_settings(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", s.alertmanager_port))
        sock.listen()
        stack = Stack(s, with_testbed=False)
        with pytest.raises(StackError) as info:
            stack.up()
    msg = str(info.value)
    assert f"alertmanager: port 127.0.0.1:{s.alertmanager_port} is already in use by pid" in msg
    assert "TRIAGE24_ALERTMANAGER_PORT" in msg
    assert str(tmp_path / "logs" / "alertmanager.log") in msg
    assert stack.supervisor_pid() is None, "nothing may start when a port is taken"


@pytest.mark.integration
def test_a_component_that_fails_to_start_is_named_with_its_log_and_nothing_is_left(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dags", "plugins", "runbooks"):
        (repo / name).symlink_to(REPO / name)
    shutil.copytree(REPO / "deploy", repo / "deploy")
    (repo / "deploy" / "prometheus" / "prometheus.yml").write_text(
        "global: {scrape_interval: not-a-duration}\n"
    )
    stack = Stack(stack_settings(tmp_path / "home", repo_root=repo, start_timeout_s=120), with_testbed=False)
    with pytest.raises(StackError) as info:
        stack.up()
    msg = str(info.value)
    assert msg.startswith("prometheus exited with code")
    assert str(tmp_path / "home" / "logs" / "prometheus.log") in msg
    assert "not-a-duration" in msg, "the error should show the log lines that explain it"
    assert stack_processes(stack) == []


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(stack_settings(tmp_path_factory.mktemp("stack-home")), with_testbed=False)
    try:
        stack.up(timeout_s=240)
        yield stack
    finally:
        stack.down()


@pytest.mark.integration
def test_up_brings_every_component_up_healthy(running_stack: Stack) -> None:
    statuses = running_stack.status()
    assert [s.name for s in statuses] == [
        "prometheus",
        "alertmanager",
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    ]
    assert [s.name for s in statuses if not (s.healthy and s.running)] == [], statuses
    s = running_stack.settings
    assert httpx.get(f"http://127.0.0.1:{s.prometheus_port}/-/ready").status_code == 200
    # Prometheus scrapes Alertmanager with the rendered config: the ports line up.
    targets = httpx.get(f"http://127.0.0.1:{s.prometheus_port}/api/v1/targets").json()["data"][
        "activeTargets"
    ]
    scraped = {(t["labels"]["job"], t["labels"].get("version", "")): t["scrapeUrl"] for t in targets}
    assert scraped == {
        ("prometheus", ""): f"http://127.0.0.1:{s.prometheus_port}/metrics",
        ("alertmanager", ""): f"http://127.0.0.1:{s.alertmanager_port}/metrics",
        ("testbed", "stable"): f"http://127.0.0.1:{s.testbed_stable_port}/metrics",
        ("testbed", "canary"): f"http://127.0.0.1:{s.testbed_canary_port}/metrics",
        ("testbed-gateway", ""): f"http://127.0.0.1:{s.testbed_gateway_port}/metrics",
        ("triage24", ""): f"http://127.0.0.1:{s.airflow_port}/triage24/intake/metrics",
    }


@pytest.mark.integration
def test_admin_logs_in_with_the_secret_file_password_and_nobody_else_does(running_stack: Stack) -> None:
    url = running_stack.settings.airflow_url
    good = httpx.post(
        f"{url}/auth/token",
        json={"username": "admin", "password": running_stack.secrets["TRIAGE24_ADMIN_PASSWORD"]},
    )
    assert good.status_code == 201 and good.json()["access_token"]
    assert httpx.post(f"{url}/auth/token", json={"username": "admin", "password": "admin"}).status_code == 401
    assert httpx.get(f"{url}/api/v2/dags").status_code == 401


@pytest.mark.integration
def test_up_again_is_idempotent(running_stack: Stack) -> None:
    before = running_stack.supervisor_pid()
    messages: list[str] = []
    running_stack.up(progress=messages.append)
    assert messages == ["stack is already running"]
    assert running_stack.supervisor_pid() == before


@pytest.mark.integration
def test_status_json_from_the_cli(
    running_stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    s = running_stack.settings
    for key, value in {
        "HOME": s.home,
        "AIRFLOW_PORT": s.airflow_port,
        "PROMETHEUS_PORT": s.prometheus_port,
        "ALERTMANAGER_PORT": s.alertmanager_port,
    }.items():
        monkeypatch.setenv(f"TRIAGE24_{key}", str(value))
    assert main(["stack", "status", "--no-testbed", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {c["name"]: c["healthy"] for c in report} == {c.name: True for c in running_stack.status()}


# A killed component must be back (restarted, healthy, heartbeating) within this bound: a whole
# `stack down && stack up` takes ~28 s on 2 cores, one component alone should take less.
HEAL_BOUND_S = 120.0
HEARTBEAT = {
    "airflow-scheduler": ("scheduler", "latest_scheduler_heartbeat"),
    "airflow-triggerer": ("triggerer", "latest_triggerer_heartbeat"),
    "airflow-dag-processor": ("dag_processor", "latest_dag_processor_heartbeat"),
}


def _beats_since(stack: Stack, name: str, since: float) -> bool:
    """The Airflow component ``name`` has reported a heartbeat after ``since`` (the monitor keeps
    calling a killed scheduler healthy until its last heartbeat grows old)."""
    if name not in HEARTBEAT:
        return True
    section, key = HEARTBEAT[name]
    try:
        report = httpx.get(f"{stack.settings.airflow_url}/api/v2/monitor/health", timeout=10).json()
        beat = report[section][key]
    except (httpx.HTTPError, ValueError, KeyError):
        return False
    return beat is not None and datetime.fromisoformat(beat).timestamp() > since


@pytest.mark.integration
def test_every_component_killed_once_is_restarted_and_the_stack_heals(running_stack: Stack) -> None:
    """Issue 21 §3: the supervisor restarts a component killed with SIGKILL, and only that one —
    killing the api-server leaves Alertmanager (and the alerts it holds in memory) alone."""
    stack = running_stack
    names = [s.name for s in stack.status()]
    healed_after: dict[str, float] = {}
    for name in names:
        before: dict[str, ComponentStatus] = {s.name: s for s in stack.status()}
        victim = before[name]
        assert victim.healthy and victim.pid, before
        killed_at = time.time()
        os.kill(victim.pid, signal.SIGKILL)
        deadline = time.monotonic() + HEAL_BOUND_S
        while True:
            now: dict[str, ComponentStatus] = {s.name: s for s in stack.status()}
            back = now[name]
            restarted = back.healthy and back.state == "running" and back.pid != victim.pid
            if restarted and _beats_since(stack, name, killed_at):
                break
            assert time.monotonic() < deadline, f"{name} not healed {HEAL_BOUND_S:g} s after SIGKILL: {back}"
            time.sleep(1.0)
        healed_after[name] = time.time() - killed_at
        assert (back.restarts, back.last_exit) == (victim.restarts + 1, "signal SIGKILL"), back
        if name == "airflow-api-server":
            am_before, am_now = before["alertmanager"], now["alertmanager"]
            # Alertmanager (killed itself earlier in the loop, or not) is untouched by this kill
            assert (am_now.pid, am_now.restarts) == (am_before.pid, am_before.restarts)
    final = stack.status()
    assert [s.name for s in final if not (s.healthy and s.running)] == [], final
    # each component was killed once and restarted once: nothing else was restarted along the way
    assert {s.name: s.restarts for s in final} == {n: 1 for n in names}, healed_after
    assert max(healed_after.values()) < HEAL_BOUND_S
    messages: list[str] = []
    stack.up(progress=messages.append)
    assert messages == ["stack is already running"]


@pytest.mark.integration
def test_down_stops_exactly_what_up_started(running_stack: Stack) -> None:
    # The module's last test (it stops the shared stack). A process outside the stack must survive.
    bystander = psutil.Popen(["sleep", "300"])
    try:
        procs = stack_processes(running_stack)
        names = " ".join(" ".join(p.cmdline()) for p in procs)
        for part in ("prometheus", "alertmanager", "api_server", "scheduler", "dag-processor", "triggerer"):
            assert part in names
        # (a short grace: a worker finishing a task may hold SIGTERM for its whole 40 s grace; what
        # is tested is that everything of the stack stops and nothing else does)
        running_stack.down(grace_s=5)
        assert [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
        assert not list(running_stack.settings.run_dir.glob("*.pid"))
        assert running_stack.supervisor_pid() is None
        assert bystander.is_running()
    finally:
        bystander.kill()
