"""A whole watch of one target: the runbook's 12 tests run on each look, their state survives an
encode/decode exactly (a restarted watch goes on with the same e-values), and a state of another
prior or another watch is refused by name."""

from __future__ import annotations

import json

import pytest

from diagnostics.canary_watch import Counters, Look, WatchStatus
from diagnostics.canary_watch.session import StateError, WatchSession, WatchSpec, decode_state, encode_state
from diagnostics.runbooks import load_runbooks
from diagnostics.runbooks.canary_watch import load_canary_watch
from tests.conftest import REPO

SPEC = WatchSpec.from_runbook(
    load_canary_watch(REPO / "runbooks" / "canary_watch.yaml"), load_runbooks().targets.get("testbed"), "r7"
)


def _look(k: int, canary_rate: float) -> dict[tuple[str, str], Look]:
    """Cumulative counters after ``k`` looks: text only, canary 20 requests and stable 380 a look."""
    c_req, s_req = 20.0 * k, 380.0 * k
    look = Look(
        canary=Counters(requests=c_req, events=round(c_req * canary_rate)),
        stable=Counters(requests=s_req, events=round(s_req * 0.01)),
    )
    return {("text", test): look for test in ("errors", "errors_5xx", "sla_slow")}


def test_the_runbook_gives_twelve_tests_at_alpha_over_twelve() -> None:
    assert [t.key for t in SPEC.tests][:3] == ["text/errors", "text/errors_5xx", "text/sla_slow"]
    assert len(SPEC.tests) == 12 and SPEC.look_every_s == 5
    assert SPEC.params.threshold == pytest.approx(2400.0)
    assert WatchSpec.model_validate_json(SPEC.model_dump_json()) == SPEC  # a trigger carries it as JSON


def test_a_state_round_trips_exactly_and_a_resumed_session_goes_on_identically() -> None:
    straight = WatchSession(SPEC)
    for k in range(12):
        straight.observe(_look(k, 0.03))
    first = WatchSession(SPEC)
    for k in range(6):
        first.observe(_look(k, 0.03))
    encoded = json.loads(json.dumps(first.encode()))  # through JSON, as a trigger event
    resumed = WatchSession(SPEC, encoded)
    for k in range(6, 12):
        resumed.observe(_look(k, 0.03))
    assert resumed.states == straight.states  # every log LR, baseline and total, bit for bit
    top = straight.top()["errors"]
    assert (top.channel, top.looks) == ("text", 11) and top.e_value > 1
    untouched = first.encode()["audio/errors"]
    assert untouched["lr"] == "" and untouched["base"] is None  # no event, no look: nothing stored


def test_a_state_of_another_prior_or_another_watch_is_refused_by_name() -> None:
    session = WatchSession(SPEC)
    for k in range(3):
        session.observe(_look(k, 0.05))
    state = encode_state(session.states["text/errors"])
    assert len(state["lr"]) == 4 * -(-461 * 8 // 3) == 4920  # base64 of 461 float64
    with pytest.raises(StateError, match=r"text/errors.lr: 461 finite values expected 100"):
        decode_state(state, 100, "text/errors")
    with pytest.raises(StateError, match="text/errors: not a canary watch state"):
        decode_state({"lr": ""}, 461, "text/errors")
    with pytest.raises(StateError, match="tests this watch does not run: text/latency"):
        WatchSession(SPEC, {"text/latency": state})


def test_the_log_line_names_each_tests_highest_e_value_against_its_bound() -> None:
    session = WatchSession(SPEC)
    assert session.status_line() == "canary watch testbed release r7: look 0, 0/0 tests paused; no look yet"
    for k in range(4):
        session.observe(_look(k, 0.10))
    line = session.status_line()
    assert line.startswith("canary watch testbed release r7: look 4, 9/12 tests paused; errors e=")
    top = session.top()["errors"]
    assert f"errors e={top.e_value:.3g} (text) < 2,400" in line and line.count("<") == 3
    assert session.rejection() is None and top.status is WatchStatus.CONTINUE
