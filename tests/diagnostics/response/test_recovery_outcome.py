"""Not recovered is an outcome: stored with what stays bad, set against phase 1's figures, and paged.

The service is one loopback server answering like the real ones: the stable version's health
endpoint, the gateway's admin API (weight 0 after the rollback) and Prometheus' instant-query API with
real-shaped vectors. Phase 1's figures are the real ``metrics_sla`` of an incident that rolled back
(tests/diagnostics/fixtures/report_rollback): stable audio p99 5935 ms at 13.07 requests in 120 s
(0.109 req/s), the canary's audio 13.11 (0.109 req/s), against the audio p99 gate of 6000 ms. After
the rollback stable carries the canary's audio too and its p99 goes over the gate, as seen live.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from diagnostics.golden_window.phase import open_incident
from diagnostics.incident.model import Incident
from diagnostics.response.phase import verify_and_store
from diagnostics.response.verify import RecoveryProbe, gateway_probe
from diagnostics.runbooks import load_runbooks
from diagnostics.sources.prometheus import reader_for
from tests.conftest import REPO
from tests.diagnostics.response.rollback.conftest import READY_HEALTH, TOKEN_ENV, make_target
from tests.support.http import Canned, CannedServer, Recorded, canned_server

BOOKS = load_runbooks(environ={})
PHASE1 = Path(__file__).parents[1] / "fixtures" / "report_rollback" / "golden_window" / "metrics_sla.json"
RUN_ID = "manual__2026-12-01T11:07:30.487891+00:00"
WINDOW_S = 60.0  # decision.yaml verification.window_s: the probe's Prometheus window


@dataclass
class Traffic:
    """Stable's figures over the probe's window: (requests, errors, 5xx, p99 seconds) per channel."""

    channels: dict[str, tuple[float, float, float, float]] = field(
        default_factory=lambda: {
            "text": (184.5, 0, 0, 0.0666),
            "image": (4.0, 0, 0, 0.192),
            "audio": (13.1, 0, 0, 7.956),  # 0.218 req/s: its own 0.109 and the canary's 0.109
            "router": (3.5, 0, 0, 0.0249),
        }
    )

    def vector(self, query: str) -> list[dict[str, Any]]:
        column = (
            3
            if query.startswith("histogram_quantile(0.99,")
            else 2
            if 'code=~"5.."' in query
            else 1
            if "testbed_request_errors_total" in query
            else 0
            if re.match(r"^sum by \(version, channel\) \(increase\(testbed_requests_total\{", query)
            else None
        )
        if column is None:
            return []
        return [
            {
                "metric": {"channel": channel, "version": "stable"},
                "value": [1796123290.487, f"{row[column]:g}"],
            }
            for channel, row in self.channels.items()
        ]


@dataclass
class Service:
    server: CannedServer
    traffic: Traffic

    @property
    def hooks(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.server.requests if r.path == "/hook"]

    @property
    def queries(self) -> list[str]:
        return [
            parse_qs(urlsplit(r.path).query)["query"][0] for r in self.server.requests if "/api/v1/" in r.path
        ]


@pytest.fixture
def service() -> Iterator[Service]:
    traffic = Traffic()

    def prometheus(req: Recorded) -> Canned:
        query = parse_qs(urlsplit(req.path).query)["query"][0]
        return Canned(
            200, {"status": "success", "data": {"resultType": "vector", "result": traffic.vector(query)}}
        )

    routes = {
        ("GET", "/v1/health"): Canned(200, json.loads(READY_HEALTH.read_text())),
        ("GET", "/admin/routing"): Canned(200, {"canary_weight": 0, "strategy": "percentage"}),
        ("GET", "/api/v1/query"): prometheus,
        ("POST", "/hook"): Canned(200, "ok"),
    }
    with canned_server(routes) as server:  # type: ignore[arg-type]
        yield Service(server, traffic)


@pytest.fixture(scope="module")
def short_runbooks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repo's runbooks with a 30 s verification (7 samples, not 61): the same rules, less polling."""
    books = tmp_path_factory.mktemp("runbooks") / "runbooks"
    shutil.copytree(REPO / "runbooks", books)
    decision = yaml.safe_load((books / "decision.yaml").read_text())
    decision["verification"]["timeout_s"] = 30
    (books / "decision.yaml").write_text(yaml.safe_dump(decision))
    return books


@pytest.fixture
def short(short_runbooks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE24_RUNBOOKS_DIR", str(short_runbooks))


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service: Service) -> Path:
    monkeypatch.setenv("TRIAGE24_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("TRIAGE24_NOTIFY_WEBHOOK_URL", f"{service.server.url}/hook")
    phase1 = tmp_path / "artifacts" / RUN_ID / "golden_window"
    phase1.mkdir(parents=True)
    shutil.copy(PHASE1, phase1 / "metrics_sla.json")
    return tmp_path / "artifacts"


class FakeClock:
    """Time that moves only when verification sleeps: 300 s of polling in no time."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def incident() -> Incident:
    return open_incident(
        RUN_ID, {"target": "testbed"}, now=datetime(2026, 12, 1, 11, 7, 30, tzinfo=UTC), books=BOOKS
    )


def probe(service: Service) -> Any:
    target = make_target(
        {"method": "gateway_weight", "admin_token_env": TOKEN_ENV, "timeout_s": 2},
        gateway_url=service.server.url,
        stable_url=service.server.url,
    )
    return gateway_probe(
        target,
        BOOKS.thresholds,
        reader_for(service.server.url, timeout_s=2),
        2.0,
        environ={TOKEN_ENV: "admin-token"},
        window_s=WINDOW_S,
    )


def verify(service: Service) -> Any:
    clock = FakeClock()
    return verify_and_store(incident(), probe=probe(service), clock=clock, sleep=clock.sleep)


def stored(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / RUN_ID / "response" / "recovery_verification.json").read_text())
    return data


def test_stable_over_the_gate_only_since_it_took_the_canarys_share_is_capacity(
    service: Service, root: Path
) -> None:
    result = verify(service)  # returns: not recovered is no exception

    assert (result.recovered, result.escalate, result.verdict) == (False, True, "capacity")
    assert result.status.value == "failed"
    # 300 s every 5 s: 61 samples, none good; the audio p99 was the one part bad in all of them
    assert (result.samples_total, result.samples_recovered) == (61, 0)
    assert result.not_ok_counts == {"stable_p99_audio": 61}
    [bad] = result.still_bad
    assert (bad.part, bad.version, bad.channel, bad.gate, bad.cause) == (
        "stable_p99_audio",
        "stable",
        "audio",
        "p99_latency_ms",
        "capacity",
    )
    assert bad.value_now == pytest.approx(7956)
    assert bad.limit == 6000
    assert bad.value_before == pytest.approx(5935)  # phase 1: within the gate before the rollback
    assert bad.rate_rps_now == pytest.approx(13.1 / 60)
    assert bad.rate_rps_before == pytest.approx(13.073357 / 120)
    assert bad.canary_rate_rps_before == pytest.approx(13.111119 / 120)
    assert bad.not_ok_samples == 61
    assert bad.evidence == (
        "stable audio p99_latency_ms 7956 ms > gate 6000 ms; within it before the rollback (5935 ms at "
        "0.11 req/s), now 0.22 req/s after taking the canary's 0.11 req/s: a capacity problem"
    )
    assert "not recovered within 300 s (61 samples, 0 good" in result.summary
    assert result.summary.endswith("Verdict capacity: " + bad.evidence)
    # stored as it was returned, every verdict with its evidence
    assert stored(root)["verdict"] == "capacity" and stored(root)["still_bad"][0][
        "value_before"
    ] == pytest.approx(5935)
    # paged at once with the part that stays bad; "recovered" never sent
    [page] = service.hooks
    assert page["text"].startswith(":sos: [ungraded] escalated: a human is needed now: testbed")
    assert "a capacity problem" in page["text"]
    fields = " ".join(f["text"] for f in page["blocks"][2]["fields"])
    assert "*verdict*\ncapacity" in fields and "*stable_p99_audio (capacity)*" in fields
    # the probe read stable's traffic over the 60 s window, p99 per channel
    assert any("[60s]" in q and q.startswith("histogram_quantile(0.99,") for q in service.queries)


@pytest.mark.usefixtures("short")
def test_a_breach_without_more_traffic_is_not_capacity(service: Service, root: Path) -> None:
    service.traffic.channels["audio"] = (6.5, 0, 0, 7.956)  # its own 0.109 req/s: it took no share
    result = verify(service)
    [bad] = result.still_bad
    assert (result.verdict, bad.cause) == ("not_recovered", "new_breach")
    assert bad.rate_rps_now == pytest.approx(6.5 / 60)
    assert "without the canary's share (0.11 req/s): a new breach since the rollback" in bad.evidence
    assert len(service.hooks) == 1


@pytest.mark.usefixtures("short")
def test_stable_already_over_the_gate_before_the_rollback(service: Service, root: Path) -> None:
    path = root / RUN_ID / "golden_window" / "metrics_sla.json"
    data = json.loads(path.read_text())
    for row in data["channels"]:
        if (row["version"], row["channel"]) == ("stable", "audio"):
            row["current"]["latency_ms"]["p99"] = 6400.0
    path.write_text(json.dumps(data))
    result = verify(service)
    [bad] = result.still_bad
    assert (result.verdict, bad.cause, bad.value_before) == ("not_recovered", "already_bad", 6400.0)
    assert bad.evidence.endswith(
        "already over it before the rollback (6400 ms): not the canary's fault alone"
    )


@pytest.mark.usefixtures("short")
def test_errors_over_the_gate_are_set_against_phase_1_over_every_channel(
    service: Service, root: Path
) -> None:
    service.traffic.channels["text"] = (184.5, 20, 20, 0.0666)  # 20 of 205.1 requests: 9.75 %
    result = verify(service)
    causes = {b.part: (b.cause, b.value_before) for b in result.still_bad}
    # phase 1: stable answered no error over any channel, at 3.26 req/s; now 3.42 req/s, +0.16 of the
    # canary's 0.88 req/s: not its share, so the errors are a new breach, not capacity
    assert causes == {
        "stable_error_rate": ("new_breach", 0.0),
        "stable_5xx_rate": ("new_breach", 0.0),
        "stable_p99_audio": ("capacity", pytest.approx(5935)),
    }
    assert result.verdict == "not_recovered"  # one part is not capacity
    error = next(b for b in result.still_bad if b.part == "stable_error_rate")
    assert error.channel is None and error.evidence.startswith(
        "stable all channels error_rate 9.75% > gate 5.00%"
    )


@pytest.mark.usefixtures("short")
def test_without_phase_1_figures_the_cause_is_unknown_and_said_so(service: Service, root: Path) -> None:
    (root / RUN_ID / "golden_window" / "metrics_sla.json").unlink()
    result = verify(service)
    [bad] = result.still_bad
    assert (result.verdict, bad.cause, bad.value_before) == ("not_recovered", "unknown", None)
    assert bad.evidence.endswith("; no phase-1 metrics_sla stored to compare")
    assert result.details["phase1_metrics"] == "no phase-1 metrics_sla stored to compare"

    (root / RUN_ID / "golden_window" / "metrics_sla.json").write_text("{broken")
    result = verify(service)
    assert result.still_bad[0].cause == "unknown"
    assert str(result.details["phase1_metrics"]).startswith("phase-1 metrics_sla unreadable: ")
    assert len(service.hooks) == 1  # one page per incident, however often verification runs


@pytest.mark.usefixtures("short")
def test_a_recovered_service_is_reported_recovered_and_nobody_is_paged(service: Service, root: Path) -> None:
    service.traffic.channels["audio"] = (13.1, 0, 0, 5.2)
    result = verify(service)
    assert (result.recovered, result.verdict, result.still_bad) == (True, "recovered", [])
    assert (result.samples_total, result.samples_recovered) == (3, 3)
    [message] = service.hooks
    assert message["text"].startswith(":white_check_mark: [ungraded] service recovered: testbed")


@pytest.mark.usefixtures("short")
def test_an_unknown_part_is_named_but_never_called_capacity(service: Service, root: Path) -> None:
    service.traffic.channels["audio"] = (13.1, 0, 0, 5.2)  # only the gateway is in doubt

    def unknown() -> RecoveryProbe:
        parts = probe(service)().parts
        return RecoveryProbe(
            parts=[*parts[:1], parts[1].model_copy(update={"state": "unknown", "detail": "gateway down"})]
        )

    clock = FakeClock()
    result = verify_and_store(incident(), probe=unknown, clock=clock, sleep=clock.sleep)
    [bad] = result.still_bad
    assert (bad.part, bad.state, bad.cause) == ("canary_weight", "unknown", "unknown")
    assert result.verdict == "not_recovered" and bad.evidence == "canary_weight unknown (gateway down)"


def test_a_hold_that_escalates_pages_the_next_level_once_and_a_plain_hold_pages_nobody(
    service: Service, root: Path
) -> None:
    from diagnostics.response.phase import hold_and_store

    inc = incident()
    held = hold_and_store(inc, "answered by oncall-1", escalate=False)
    assert held.details == {"decided_by": "answered by oncall-1", "escalate": False}
    assert service.hooks == []
    held = hold_and_store(inc, "answered by oncall-1", escalate=True)
    assert held.status.value == "degraded" and held.summary.endswith("escalated to the next on-call level")
    [page] = service.hooks
    assert page["text"].startswith(":sos: [ungraded] escalated: a human is needed now: testbed")
    assert "answered by oncall-1" in page["text"]
    hold_and_store(inc, "answered by oncall-1", escalate=True)  # a retried task: one page per incident
    assert len(service.hooks) == 1
