"""router_dispatch: the route each golden router request takes vs the route its inputs call for."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest

from diagnostics.deep_diagnosis import router_dispatch as rd
from diagnostics.deep_diagnosis.base import DeepContext
from diagnostics.deep_diagnosis.runner import run_check
from diagnostics.deep_diagnosis.service import ServiceError
from diagnostics.incident.results import Status
from diagnostics.runbooks import load_runbooks


def plan(payload: dict[str, Any]) -> list[str]:
    # The testbed's router plan (testbed/serving/multimodal.py), written out again: the check must
    # agree with it.
    if "audio_b64" in payload:
        return ["audio_processor", "llm"] if "text" in payload else ["audio_processor"]
    return ["embedding"] if "image_b64" in payload else ["llm"]


@dataclass
class Answer:
    body: dict[str, Any]


class FakeRouter:
    """A router that misroutes a share of requests the way the testbed's router_degraded fault does."""

    def __init__(self, misroute: float, seed: int = 0, fail: str | None = None) -> None:
        self.misroute, self.rng, self.fail = misroute, random.Random(seed), fail
        self.payloads: list[dict[str, Any]] = []

    def __enter__(self) -> FakeRouter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def router(self, payload: dict[str, Any]) -> Answer:
        self.payloads.append(payload)
        if self.fail == "unreachable":
            raise ServiceError("unreachable", "connection refused")
        if self.fail == "http":
            raise ServiceError("http", "HTTP 500", 500)
        route = plan(payload)
        if self.rng.random() < self.misroute:
            route = ["embedding"] if route[0] == "llm" else ["llm"]
        return Answer({"route": route, "results": {}})


@dataclass
class FakeContext(DeepContext):
    routers: dict[str, FakeRouter] | None = None

    def client(self, version: str) -> Any:
        assert self.routers is not None
        return self.routers[version]


def ctx(stable: FakeRouter, canary: FakeRouter) -> FakeContext:
    books = load_runbooks()
    return FakeContext(
        books=books, target=books.targets.get("testbed"), routers={"stable": stable, "canary": canary}
    )


def test_a_healthy_router_passes_and_a_misrouting_canary_fails_with_the_routes_it_took() -> None:
    result = run_check(rd.CHECK, ctx(FakeRouter(0.0), FakeRouter(0.3, seed=1)))
    assert result.versions["stable"].status is Status.OK
    stable = result.versions["stable"].figures
    assert (stable["sent"], stable["answered"], stable["misrouted"]) == (24, 24, 0)
    assert stable["routes"] == {"text": {"llm": 12}, "image+text": {"embedding": 12}}
    canary = result.versions["canary"]
    assert canary.status is Status.FAILED and result.canary_status() is Status.FAILED
    n = canary.figures["misrouted"]
    assert 3 <= n <= 14 and canary.figures["misrouted_share"] == pytest.approx(n / 24)
    (f,) = result.findings
    assert (f.problem, f.component, f.version, f.severity.value) == (
        "router_misroute",
        "multimodal_router",
        "canary",
        "high",
    )
    assert f"{n} of 24 router probes misrouted" in f.evidence and "(expected llm)" in f.evidence


def test_one_stray_route_in_24_is_within_the_bound_and_said() -> None:
    th = rd.Thresholds()
    m = rd.Measurement(sent=24, answered=24, misrouted=1, routes={"text": {"llm": 11, "embedding": 1}})
    out = rd.judge(ctx(FakeRouter(0), FakeRouter(0)), "canary", m, None, th)
    assert out.status is Status.OK and not out.findings
    assert (
        out.summary == "1 of 24 router probes misrouted (4%), within 5%: text -> embedding x1 (expected llm)"
    )
    two = m.model_copy(update={"misrouted": 2, "routes": {"text": {"llm": 10, "embedding": 2}}})
    assert rd.judge(ctx(FakeRouter(0), FakeRouter(0)), "canary", two, None, th).status is Status.FAILED


def test_unanswered_probes_are_insufficient_evidence_never_a_pass() -> None:
    result = run_check(rd.CHECK, ctx(FakeRouter(0.0), FakeRouter(0.0, fail="http")))
    canary = result.versions["canary"]
    assert canary.status is Status.INSUFFICIENT_EVIDENCE
    assert canary.summary.startswith("no router probe answered with a route (24 sent): text: HTTP 500")
    down = run_check(rd.CHECK, ctx(FakeRouter(0.0), FakeRouter(0.0, fail="unreachable")))
    assert down.versions["canary"].status is Status.INSUFFICIENT_EVIDENCE
    assert "could not be measured" in down.versions["canary"].summary


def test_audio_probes_are_opt_in_and_judged_on_their_own_routes() -> None:
    th = rd.Thresholds(probes=2, audio_probes=2)
    c = ctx(FakeRouter(0.0), FakeRouter(0.0))
    m = rd.measure(c, "stable", th)
    assert m.routes == {
        "text": {"llm": 1},
        "image+text": {"embedding": 1},
        "audio": {"audio_processor": 1},
        "audio+text": {"audio_processor>llm": 1},
    }
    assert m.misrouted == 0 and all("language" in p for p in c.routers["stable"].payloads[2:])  # type: ignore[index]
    assert rd.measure(c, "stable", rd.Thresholds()).sent == 24  # default: no Whisper on the CPU


def test_the_routes_are_runbook_data() -> None:
    with pytest.raises(ValueError, match="max_misrouted_share"):
        rd.Thresholds.model_validate({"max_misrouted_share": 1.5})
    th = rd.Thresholds.model_validate({"routes": {"text": ["embedding"]}})
    m = rd.measure(ctx(FakeRouter(0.0), FakeRouter(0.0)), "stable", th.model_copy(update={"probes": 4}))
    assert m.misrouted == 2  # the two text probes took llm, which this runbook forbids
