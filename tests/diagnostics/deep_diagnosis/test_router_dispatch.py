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


def test_a_healthy_router_passes_on_enough_probes_and_a_misrouting_canary_fails_in_one_look() -> None:
    result = run_check(rd.CHECK, ctx(FakeRouter(0.0), FakeRouter(0.3, seed=1)))
    stable = result.versions["stable"]
    assert stable.status is Status.OK
    # 0 of 40 bounds the share at 9.7 % (at 95 % over 3 looks): a second look; 0 of 80 at 4.99 % < 5 %
    assert (stable.figures["sent"], stable.figures["answered"], stable.figures["misrouted"]) == (80, 80, 0)
    assert stable.figures["looks"] == [40, 80]
    assert stable.figures["routes"] == {"text": {"llm": 40}, "image+text": {"embedding": 40}}
    bound = stable.figures["bound"]
    assert (bound["n"], bound["failures"], bound["looks"], bound["verdict"]) == (80, 0, 3, "under")
    assert bound["upper"] == pytest.approx(1 - (0.05 / 3) ** (1 / 80)) and bound["upper"] < 0.05
    assert stable.summary == "0 of 80 router probes misrouted (0.0%; upper bound 4.99% < 5% at 95%, 3 looks)"
    canary = result.versions["canary"]
    assert canary.status is Status.FAILED and result.canary_status() is Status.FAILED
    n = canary.figures["misrouted"]
    assert canary.figures["sent"] == 40 and canary.figures["looks"] == [40]  # the first look decides
    assert canary.figures["bound"]["lower"] > 0.05 and canary.figures["misrouted_share"] == pytest.approx(
        n / 40
    )
    (f,) = result.findings
    assert (f.problem, f.component, f.version, f.severity.value) == (
        "router_misroute",
        "multimodal_router",
        "canary",
        "high",
    )
    assert f"{n} of 40 router probes misrouted" in f.evidence and "(expected llm)" in f.evidence
    assert "lower bound" in f.evidence and "> 5% at 95%, 3 looks" in f.evidence


def test_zero_misroutes_in_24_probes_is_no_ok() -> None:
    # the case: 0 of 24 still allows 11.7 % misrouted (95 %), over the 5 % tolerance
    th = rd.Thresholds(probes=24, max_probes=96)
    few = rd.Measurement(sent=24, answered=24, misrouted=0, routes={"text": {"llm": 12}})
    out = rd.judge(ctx(FakeRouter(0), FakeRouter(0)), "canary", few, None, th)
    assert out.status is Status.INSUFFICIENT_EVIDENCE and not out.findings
    assert out.figures["bound"]["upper"] == pytest.approx(1 - (0.05 / 4) ** (1 / 24))
    assert out.summary == (
        "0 of 24 router probes misrouted (0.0%; bounds 0.00% - 16.69% at 95%, 4 looks: too few to tell the "
        "share from 5%)"
    )
    one_look = rd.judge(
        ctx(FakeRouter(0), FakeRouter(0)), "canary", few, None, rd.Thresholds(probes=59, max_probes=59)
    )
    assert one_look.status is Status.INSUFFICIENT_EVIDENCE  # 59 probes would be needed: 24 answered are not


def test_a_stray_route_needs_more_probes_and_two_in_24_is_no_verdict() -> None:
    th = rd.Thresholds()
    c = ctx(FakeRouter(0), FakeRouter(0))
    m = rd.Measurement(sent=120, answered=120, misrouted=1, routes={"text": {"llm": 59, "embedding": 1}})
    out = rd.judge(c, "canary", m, None, th)
    assert out.status is Status.OK and not out.findings
    assert out.summary == (
        "1 of 120 router probes misrouted (0.8%; upper bound 4.93% < 5% at 95%, 3 looks): "
        "text -> embedding x1 (expected llm)"
    )
    # 1 of 80 is not yet an ok (bound 7.3 %), and 2 of 24 (8 %) was "failed" on the share alone
    assert (
        rd.judge(c, "canary", m.model_copy(update={"answered": 80}), None, th).status
        is Status.INSUFFICIENT_EVIDENCE
    )
    two = m.model_copy(update={"sent": 24, "answered": 24, "misrouted": 2})
    assert rd.judge(c, "canary", two, None, th).status is Status.INSUFFICIENT_EVIDENCE


def test_a_router_at_the_tolerance_probes_up_to_the_cap_and_stays_undecided() -> None:
    class EveryTwentieth(FakeRouter):
        def router(self, payload: dict[str, Any]) -> Answer:
            self.payloads.append(payload)
            wrong = len(self.payloads) % 20 == 0  # exactly 5 %
            route = plan(payload)
            return Answer({"route": (["llm"] if route[0] != "llm" else ["embedding"]) if wrong else route})

    out = run_check(rd.CHECK, ctx(FakeRouter(0), EveryTwentieth(0))).versions["canary"]
    assert out.status is Status.INSUFFICIENT_EVIDENCE
    assert (out.figures["sent"], out.figures["misrouted"], out.figures["looks"]) == (120, 6, [40, 80, 120])


def test_a_probe_budget_that_can_never_read_ok_is_a_runbook_error() -> None:
    with pytest.raises(
        ValueError,
        match=r"max_probes 24 cannot show a misrouted share under max_misrouted_share "
        r"0\.05 at confidence 0\.95: 0 misroutes need 59 probes over 1 looks of 24",
    ):
        rd.Thresholds(probes=24, max_probes=24)
    assert rd.Thresholds(probes=59, max_probes=59).looks == 1


def test_unanswered_probes_are_insufficient_evidence_never_a_pass() -> None:
    result = run_check(rd.CHECK, ctx(FakeRouter(0.0), FakeRouter(0.0, fail="http")))
    canary = result.versions["canary"]
    assert canary.status is Status.INSUFFICIENT_EVIDENCE
    # nothing answered: every look until the cap, then no verdict
    assert canary.summary.startswith("no router probe answered with a route (120 sent): text: HTTP 500")
    down = run_check(rd.CHECK, ctx(FakeRouter(0.0), FakeRouter(0.0, fail="unreachable")))
    assert down.versions["canary"].status is Status.INSUFFICIENT_EVIDENCE
    assert "could not be measured" in down.versions["canary"].summary


def test_audio_probes_are_opt_in_and_judged_on_their_own_routes() -> None:
    th = rd.Thresholds().model_copy(update={"probes": 2, "max_probes": 2, "audio_probes": 2})
    c = ctx(FakeRouter(0.0), FakeRouter(0.0))
    m = rd.measure(c, "stable", th)
    assert m.routes == {
        "text": {"llm": 1},
        "image+text": {"embedding": 1},
        "audio": {"audio_processor": 1},
        "audio+text": {"audio_processor>llm": 1},
    }
    assert m.misrouted == 0 and all("language" in p for p in c.routers["stable"].payloads[2:])  # type: ignore[index]
    assert rd.measure(c, "stable", rd.Thresholds()).sent == 80  # default: no Whisper on the CPU


def test_the_routes_are_runbook_data() -> None:
    with pytest.raises(ValueError, match="max_misrouted_share"):
        rd.Thresholds.model_validate({"max_misrouted_share": 1.5})
    th = rd.Thresholds.model_validate({"routes": {"text": ["embedding"]}})
    m = rd.measure(
        ctx(FakeRouter(0.0), FakeRouter(0.0)), "stable", th.model_copy(update={"probes": 4, "max_probes": 4})
    )
    assert m.misrouted == 2  # the two text probes took llm, which this runbook forbids
