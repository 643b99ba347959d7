"""Benchmark: alert POST -> rollback applied at the gateway, on the real local stack.

The whole local stack (Airflow 3.3 with the plugin, Prometheus, Alertmanager, the testbed with real
models and traffic) runs in a temporary home on free ports. ``--runs`` times (default 10): the
canary's image model is broken (the testbed's ``model_not_loaded`` fault), the gateway sends it 10 %
of the traffic, and one Alertmanager-shaped delivery for a new alert group is POSTed to the intake.
The clock runs from the POST until

- ``rollback applied``: ``<artifacts>/<run id>/response/rollback.json`` records the gateway's canary
  weight set to 0 (checked against the gateway itself), and
- ``recovery verified``: ``response/recovery_verification.json`` says recovered.

Between runs the fault is cleared and the weight set back to 10 (by this script, outside Triage24).
The rate limit of the testbed target (3 changes an hour in runbooks/targets.yaml) would refuse the
4th rollback: the benchmark runs on a copy of runbooks/ whose limit is 100, and says so.

    .venv/bin/python benchmarks/rollback.py [--runs 10]

Writes benchmarks/results/rollback.json and sets ``rollback_applied_median_s`` in
benchmarks/results/decision.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from phase1 import WEBHOOK, delivery, free_port, machine, median_range

from diagnostics.config import Settings
from diagnostics.intake.airflow_api import AirflowApi
from harness.stack import Stack

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def _json_when(path: Path, timeout_s: float, t0: float, what: str) -> tuple[float, dict[str, Any]]:
    while True:
        if path.is_file():
            return time.perf_counter() - t0, json.loads(path.read_text())
        if time.perf_counter() - t0 > timeout_s:
            raise RuntimeError(f"{what} not stored at {path} after {timeout_s:.0f} s")
        time.sleep(0.05)


class Testbed:
    def __init__(self, s: Settings, token: str) -> None:
        self.s, self.auth = s, {"Authorization": f"Bearer {token}"}

    def faults(self, method: str, body: dict[str, Any] | None = None) -> None:
        url = f"http://{self.s.host}:{self.s.testbed_canary_port}/admin/faults"
        httpx.request(method, url, json=body, headers=self.auth, timeout=10).raise_for_status()

    def weight(self, set_to: float | None = None) -> float:
        url = f"{self.s.testbed_gateway_url}/admin/routing"
        if set_to is not None:
            httpx.put(url, json={"canary_weight": set_to}, headers=self.auth, timeout=10).raise_for_status()
        return float(httpx.get(url, headers=self.auth, timeout=10).json()["canary_weight"])


def silence_real_alerts(s: Settings) -> None:
    """Silence the stack's own testbed alerts in Alertmanager for the benchmark's duration.

    The fault stays in place for ~20 s per run, and Prometheus' own ModelNotLoaded rule (for: 30 s,
    pending across the short healthy gaps between runs) would otherwise open a second, real incident
    that rolls the canary back before the benchmark's delivery arrives: the runs would measure it.
    """
    now = datetime.now(UTC)
    body = {
        "matchers": [{"name": "target", "value": "testbed", "isRegex": False, "isEqual": True}],
        "startsAt": now.isoformat().replace("+00:00", "Z"),
        "endsAt": (now + timedelta(hours=2)).isoformat().replace("+00:00", "Z"),
        "createdBy": "benchmarks/rollback.py",
        "comment": "the benchmark posts its own webhook deliveries",
    }
    url = f"http://{s.host}:{s.alertmanager_port}/api/v2/silences"
    httpx.post(url, json=body, timeout=10).raise_for_status()


def one_rollback(s: Settings, token: str, tb: Testbed, group: str, timeout_s: float) -> dict[str, Any]:
    tb.faults("DELETE")
    tb.weight(10)
    tb.faults("POST", {"fault": "model_not_loaded", "channel": "image"})
    time.sleep(1.0)  # the fault is in place before the alert arrives, as it would be in production
    try:
        t0 = time.perf_counter()
        resp = httpx.post(
            f"{s.airflow_url}{WEBHOOK}", json=delivery(group), headers={"Authorization": f"Bearer {token}"}
        )
        if resp.status_code != 201:
            raise RuntimeError(f"intake answered {resp.status_code}: {resp.text[:300]}")
        run_id = resp.json()["run_id"]
        base = s.artifacts / run_id / "response"
        applied_s, action = _json_when(base / "rollback.json", timeout_s, t0, "rollback")
        weight_after = tb.weight()
        verified_s, recovery = _json_when(base / "recovery_verification.json", timeout_s, t0, "recovery")
        decision = json.loads((s.artifacts / run_id / "decision" / "decision.json").read_text())
    finally:
        tb.faults("DELETE")
    if action.get("outcome") != "applied" or weight_after != 0:
        raise RuntimeError(f"{run_id}: rollback {action.get('outcome')}, weight {weight_after}: {action}")
    return {
        "run_id": run_id,
        "rule": decision["rule"],
        "rollback_applied_s": round(applied_s, 3),
        "recovery_verified_s": round(verified_s, 3),
        "time_to_recover_s": recovery.get("time_to_recover_s"),
        "recovered": recovery.get("recovered"),
        "weight": [action["before"].get("canary_weight"), action["after"].get("canary_weight")],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="rollbacks measured (after one warm-up)")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds allowed per incident")
    args = parser.parse_args()
    if not 1 <= args.runs <= 50:
        parser.error("--runs must be between 1 and 50")

    root = Path(tempfile.mkdtemp(prefix="triage24-bench-rollback-"))
    books = root / "runbooks"
    shutil.copytree(REPO / "runbooks", books)
    targets = books / "targets.yaml"
    text = targets.read_text()
    marker = "      admin_token_env: TRIAGE24_TESTBED_ADMIN_TOKEN\n"
    if marker not in text:
        raise SystemExit(f"{targets}: the testbed's gateway rollback config is not where expected")
    targets.write_text(text.replace(marker, marker + "      max_changes: 100\n"))
    os.environ["TRIAGE24_RUNBOOKS_DIR"] = str(books)  # this process and the stack's Airflow tasks
    ports = {f"{n}_port": free_port() for n in ("airflow", "prometheus", "alertmanager")}
    tb_ports = {f"testbed_{n}_port": free_port() for n in ("stable", "canary", "gateway")}
    s = Settings(home=root / "home", runbooks_dir=books, **ports, **tb_ports)
    stack = Stack(s, with_testbed=True)
    samples: list[dict[str, Any]] = []
    try:
        print("starting the local stack with the testbed (real models)…", flush=True)
        stack.up(timeout_s=400)
        token = stack.secrets["TRIAGE24_WEBHOOK_TOKEN"]
        tb = Testbed(s, stack.secrets["TRIAGE24_TESTBED_ADMIN_TOKEN"])
        with AirflowApi(s.airflow_url, "admin", stack.secrets["TRIAGE24_ADMIN_PASSWORD"]) as api:
            api.wait_for_dag("incident_response", timeout_s=180)
        silence_real_alerts(s)
        warm = one_rollback(s, token, tb, "warmup", args.timeout)
        print(f"warm-up: {json.dumps(warm)}", flush=True)
        for i in range(args.runs):
            time.sleep(5)  # the previous run's last task finishes
            samples.append(one_rollback(s, token, tb, f"rb{i}-{uuid.uuid4().hex[:6]}", args.timeout))
            print(f"run {i + 1}/{args.runs}: {json.dumps(samples[-1])}", flush=True)
    finally:
        stack.down()

    applied = [x["rollback_applied_s"] for x in samples]
    verified = [x["recovery_verified_s"] for x in samples]
    result = {
        "benchmark": "rollback",
        "command": f"benchmarks/rollback.py --runs {args.runs}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **median_range("rollback_applied", applied),
        **median_range("recovery_verified", verified),
        "goal": {"rollback_applied_median_s": 30.0},
        "note": "runbooks copy with the testbed's rate limit raised from 3 to 100 changes an hour",
        "runs": samples,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rollback.json").write_text(json.dumps(result, indent=2) + "\n")
    decision_json = RESULTS / "decision.json"
    if decision_json.is_file():
        data = json.loads(decision_json.read_text())
        data["rollback_applied_median_s"] = result["rollback_applied_median_s"]
        decision_json.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
