"""The canary watch's trigger, driven on a fake clock against a fake Prometheus (httpx MockTransport)
that serves each look's cumulative counters: a 10x canary is rejected within seconds, a healthy one
(A/A) runs to its deadline, a Prometheus outage pauses the tests (no rejection on missing data), and a
checkpoint's serialized kwargs resume the watch where it was. The token never enters the kwargs."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from diagnostics.canary_watch.session import WatchSpec
from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.canary_watch import load_canary_watch
from tests.conftest import REPO

triggers = importlib.import_module("triage24_triggers")  # plugins/ is on sys.path, as in Airflow

T0 = 1_790_000_000.0
SPEC = WatchSpec.from_runbook(
    load_canary_watch(REPO / "runbooks" / "canary_watch.yaml"), load_runbooks().targets.get("testbed"), "v2"
)
TOKEN = "prom-s3cret-token"
# per look, on text: (canary requests, canary errors, stable requests, stable errors); errors are 500s
TenX = (20, 2, 380, 4)  # 10 % against 1.05 %
AA = (20, 0.2, 380, 3.8)  # both 1 % (counters take fractions here: the rates are exactly equal)


@dataclass
class FakePrometheus:
    """Each version's cumulative text counters after ``k`` looks (look k is at T0 + 5 k s)."""

    per_look: tuple[float, float, float, float]
    down: Callable[[int], bool] = lambda k: False
    requests: list[httpx.Request] = field(default_factory=list)

    def totals(self, k: int) -> dict[str, tuple[float, float]]:
        c_req, c_err, s_req, s_err = self.per_look
        return {"canary": (c_req * k, c_err * k), "stable": (s_req * k, s_err * k)}

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        k = int((float(request.url.params["time"]) - T0) / 5 + 1e-6)
        if self.down(k):
            raise httpx.ConnectError("connection refused", request=request)
        kind = next(k for k, q in SPEC.look.queries.items() if q == request.url.params["query"])
        result = []
        for version, (req, err) in self.totals(k).items():
            for channel in ("text", "image", "audio", "router"):
                n, e = (req, err) if channel == "text" else (0.0, 0.0)
                metric = {"version": version, "channel": channel}
                if kind == "latency":  # nobody slow: every request in the SLA bucket
                    for le in ("0.2", "6.0", "+Inf"):
                        result.append({"metric": {**metric, "le": le}, "value": [T0, repr(n)]})
                else:
                    result.append({"metric": metric, "value": [T0, repr(n if kind == "requests" else e)]})
        return httpx.Response(
            200, json={"status": "success", "data": {"resultType": "vector", "result": result}}
        )


class FakeClock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


def kwargs(minutes: float = 120, **over: Any) -> dict[str, Any]:
    deadline = datetime.fromtimestamp(T0 + minutes * 60, UTC).isoformat()
    return {
        "spec": SPEC.model_dump(mode="json"),
        "deadline": deadline,
        "prometheus_url": "http://prometheus.test:9090",
        "prometheus_conn_id": "",  # no Connection: the token comes from the environment
        "token_env": "TEST_CANARY_WATCH_TOKEN",
        "checkpoint_s": 0,
        **over,
    }


def run(trigger: Any, prom: FakePrometheus, clock: FakeClock) -> dict[str, Any]:
    trigger.transport, trigger.clock, trigger.sleep = httpx.MockTransport(prom.handler), clock, clock.sleep

    async def first() -> dict[str, Any]:
        events = [e.payload async for e in trigger.run()]
        assert len(events) == 1
        return events[0]  # type: ignore[no-any-return]

    return asyncio.run(first())


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_CANARY_WATCH_TOKEN", TOKEN)


def test_a_ten_times_worse_canary_is_rejected_within_seconds_with_its_evidence() -> None:
    prom, clock = FakePrometheus(TenX), FakeClock()
    trigger = triggers.CanaryWatchTrigger(**kwargs())
    event = run(trigger, prom, clock)
    assert (event["status"], event["channel"], event["test"], event["target"]) == (
        "rejected",
        "text",
        "errors",
        "testbed",
    )
    looks = event["looks"]  # the first look only sets the baseline
    assert clock.t - T0 == 5 * looks and looks <= 12  # under a minute of 5 s looks
    assert event["counts"] == {
        "canary_events": 2.0 * looks,
        "canary_requests": 20.0 * looks,
        "stable_events": 4.0 * looks,
        "stable_requests": 380.0 * looks,
    }
    assert event["e_value"] >= event["threshold"] == pytest.approx(2400)
    assert event["rejected_at"] == datetime.fromtimestamp(clock.t, UTC).isoformat().replace("+00:00", "Z")
    # four queries a look, all with the token; the token itself is nowhere in what is serialized
    assert len(prom.requests) == 4 * (looks + 1)
    assert {r.headers["Authorization"] for r in prom.requests} == {f"Bearer {TOKEN}"}
    classpath, kw = trigger.serialize()
    assert TOKEN not in json.dumps(kw) and classpath == "triage24_triggers.CanaryWatchTrigger"
    assert (
        importlib.import_module(classpath.rpartition(".")[0]).CanaryWatchTrigger
        is triggers.CanaryWatchTrigger
    )


def test_a_healthy_canary_runs_to_the_deadline_and_logs_once_a_minute(
    capsys: pytest.CaptureFixture[str],
) -> None:
    prom, clock = FakePrometheus(AA), FakeClock()
    event = run(triggers.CanaryWatchTrigger(**kwargs(minutes=10)), prom, clock)
    assert event["status"] == "completed" and clock.t == T0 + 600
    assert event["looks"] == 120
    text = {t["test"]: t for t in event["tests"] if t["channel"] == "text"}
    # under the null the e-process shrinks: a canary exactly as good as stable argues for nothing
    assert 0 < text["errors"]["e_value"] < 1 and text["errors"]["looks"] == 119
    assert text["errors"]["evidence"].startswith("text: canary errors 24/2,380 vs stable 452/45,220, e=")
    assert all(m["e_value"] <= 1 for m in event["max_e"].values())
    # Airflow's structlog writes the trigger's log to stdout
    lines = [
        ln for ln in capsys.readouterr().out.splitlines() if "canary watch testbed release v2: look" in ln
    ]
    assert len(lines) == 11  # minutes 0..9 and the deadline: not one line per look (120)
    assert "look 1, 0/12 tests paused; errors e=1" in lines[0] and "(deadline)" in lines[-1]


def test_a_prometheus_outage_pauses_the_watch_and_never_rejects_on_missing_data() -> None:
    prom, clock = FakePrometheus(TenX, down=lambda k: 1 <= k <= 30), FakeClock()
    event = run(triggers.CanaryWatchTrigger(**kwargs()), prom, clock)
    assert event["status"] == "rejected"
    assert clock.t >= T0 + 5 * 32  # the first look after the outage only sets a fresh baseline
    assert event["paused_looks"] == 30
    # only the looks after the outage count, from the new baseline on
    assert event["counts"]["canary_requests"] == 20.0 * event["looks"]


def test_a_checkpoint_resumes_from_its_serialized_state_as_if_nothing_happened() -> None:
    straight = run(triggers.CanaryWatchTrigger(**kwargs()), FakePrometheus(TenX), FakeClock())
    prom, clock = FakePrometheus(TenX), FakeClock()
    checkpoint = run(triggers.CanaryWatchTrigger(**kwargs(checkpoint_s=10)), prom, clock)
    assert checkpoint["status"] == "checkpoint" and checkpoint["looks"] == 3 and clock.t == T0 + 10
    resume = json.loads(json.dumps(checkpoint["resume"]))  # as the event travels
    assert resume["state"]["text/errors"]["n"] == [2, 0] and TOKEN not in json.dumps(resume)
    resumed = triggers.CanaryWatchTrigger(**{**resume, "checkpoint_s": 0})
    event = run(resumed, prom, clock)
    assert event["status"] == "rejected" and event["rejected_at"] == straight["rejected_at"]
    assert (event["e_value"], event["counts"]) == (straight["e_value"], straight["counts"])
    assert event["looks"] == straight["looks"] + 1  # the resumed trigger re-read look 2 (no new data)
