"""A whole watch of one target: every (channel, test) of the runbook, fed one look at a time, with a
compact state that survives a triggerer restart.

:class:`WatchSpec` is the watch's definition as JSON (the target's queries, the tests and their
parameters), fixed when the watch starts: a state belongs to the parameters it was started with.
:class:`WatchSession` runs the tests on each look (:meth:`WatchSession.observe`), says where they
stand (:meth:`WatchSession.status_line`, :meth:`WatchSession.summary`) and encodes its state
(:meth:`WatchSession.encode`).

**The state, compactly.** Per test: the cumulative log likelihood ratios on the grid as base64 of
little-endian float64 (exact; about 3.7 kB for the runbook's 461 grid points, nothing while the test
has seen no event), the baseline look's four counters, the four totals, the look counts, ``log E`` and
whether it rejected. About 60 kB for the runbook's 12 tests once all have seen events.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from diagnostics.canary_watch.look import LookSpec
from diagnostics.canary_watch.registry import REGISTRY
from diagnostics.canary_watch.sequential import (
    MAX_LOG_E,
    Counters,
    CountTestParams,
    CountWatch,
    Look,
    WatchResult,
    WatchState,
    WatchStatus,
)
from diagnostics.runbooks.canary_watch import CanaryWatchRunbook
from diagnostics.runbooks.schemas import Target


class TestSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: str
    test: str
    label: str

    @property
    def key(self) -> str:
        return f"{self.channel}/{self.test}"


class WatchSpec(BaseModel):
    """The definition of one watch, as JSON a trigger carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    release: str = Field(default="", max_length=200)
    look: LookSpec
    params: CountTestParams
    tests: list[TestSpec] = Field(min_length=1)
    look_every_s: float = Field(ge=1, le=3600)

    @classmethod
    def from_runbook(cls, book: CanaryWatchRunbook, target: Target, release: str = "") -> WatchSpec:
        """Every (channel, test) of ``runbooks/canary_watch.yaml`` for ``target``, each at
        ``alpha / (channels × tests)``."""
        channels = book.channels_for(target.name)
        return cls(
            target=target.name,
            release=release,
            look=LookSpec.for_target(target, book),
            params=CountTestParams.from_runbook(book),
            tests=[
                TestSpec(channel=c.value, test=t, label=REGISTRY[t].label_for(cfg))
                for c, cfg in channels.items()
                for t in book.tests
            ],
            look_every_s=book.look_every_s,
        )

    def watches(self) -> dict[str, CountWatch]:
        return {t.key: CountWatch(t.test, t.channel, t.label, self.params) for t in self.tests}


# --- the compact state -------------------------------------------------------------------------------


def encode_state(state: WatchState) -> dict[str, Any]:
    lr = np.asarray(state.log_lr, dtype="<f8")
    base = state.baseline
    return {
        "lr": base64.b64encode(lr.tobytes()).decode("ascii") if lr.any() else "",
        "base": None
        if base is None or base.canary is None or base.stable is None
        else [base.canary.requests, base.canary.events, base.stable.requests, base.stable.events],
        "tot": [state.canary_requests, state.canary_events, state.stable_requests, state.stable_events],
        "n": [state.looks, state.paused_looks],
        "log_e": state.log_e,
        "rejected": state.rejected,
    }


class StateError(ValueError):
    """A stored watch state that does not fit its watch; the message names the test and the field."""


def decode_state(data: Mapping[str, Any], points: int, key: str) -> WatchState:
    """The state :func:`encode_state` wrote, for a test whose prior has ``points`` grid points."""
    try:
        raw = base64.b64decode(data["lr"], validate=True) if data["lr"] else b""
        lr = np.frombuffer(raw, dtype="<f8") if raw else np.zeros(points)
        if lr.size != points or not np.isfinite(lr).all():
            raise StateError(f"{key}.lr: {lr.size} finite values expected {points}: a state of another prior")
        base = data["base"]
        c_req, c_ev, s_req, s_ev = (float(x) for x in data["tot"])
        looks, paused = (int(x) for x in data["n"])
        return WatchState(
            log_lr=tuple(lr.tolist()),
            baseline=None
            if base is None
            else Look(
                canary=Counters(requests=float(base[0]), events=float(base[1])),
                stable=Counters(requests=float(base[2]), events=float(base[3])),
            ),
            canary_requests=c_req,
            canary_events=c_ev,
            stable_requests=s_req,
            stable_events=s_ev,
            looks=looks,
            paused_looks=paused,
            log_e=float(data["log_e"]),
            rejected=bool(data["rejected"]),
        )
    except StateError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise StateError(f"{key}: not a canary watch state ({type(exc).__name__}: {exc})"[:300]) from None


# --- the session -------------------------------------------------------------------------------------


def _e(result: WatchResult) -> str:
    return f"{result.e_value:.3g}" if result.e_value < 1e4 else f"{result.e_value:.2e}"


class WatchSession:
    """The tests of one watch and their states; ``observe`` advances all of them by one look."""

    def __init__(self, spec: WatchSpec, states: Mapping[str, Any] | None = None) -> None:
        self.spec = spec
        self.watches = spec.watches()
        self.keys = [(t.channel, t.test) for t in spec.tests]
        states = states or {}
        unknown = sorted(set(states) - set(self.watches))
        if unknown:
            raise StateError(f"state for tests this watch does not run: {', '.join(unknown)}")
        self.states = {
            key: decode_state(states[key], len(w.start().log_lr), key) if key in states else w.start()
            for key, w in self.watches.items()
        }
        self.results: dict[str, WatchResult] = {}
        self.looks = 0

    def observe(self, looks: Mapping[tuple[str, str], Look]) -> list[WatchResult]:
        """One look for every test (a test without a look in ``looks`` pauses)."""
        self.looks += 1
        out = []
        for t in self.spec.tests:
            look = looks.get((t.channel, t.test)) or Look(canary=None, stable=None, reason="not read")
            step = self.watches[t.key].observe(self.states[t.key], look)
            self.states[t.key], self.results[t.key] = step.state, step.result
            out.append(step.result)
        return out

    def rejection(self) -> WatchResult | None:
        """The first rejecting test of the last look (in the spec's order), if any."""
        return next((r for r in self.results.values() if r.status is WatchStatus.REJECT), None)

    def encode(self) -> dict[str, Any]:
        return {key: encode_state(s) for key, s in self.states.items()}

    def top(self) -> dict[str, WatchResult]:
        """Per test name, the channel whose e-value is highest now."""
        best: dict[str, WatchResult] = {}
        for r in self.results.values():
            if r.test not in best or r.log_e > best[r.test].log_e:
                best[r.test] = r
        return best

    def status_line(self) -> str:
        """One line for the log: per test, the highest e-value and its channel against the bound."""
        paused = sum(r.status is WatchStatus.PAUSED for r in self.results.values())
        tops = "; ".join(
            f"{name} e={_e(r)} ({r.channel}) < {r.threshold:,.0f}" for name, r in self.top().items()
        )
        target = self.spec.target + (f" release {self.spec.release}" if self.spec.release else "")
        return f"canary watch {target}: look {self.looks}, {paused}/{len(self.results)} tests paused; " + (
            tops or "no look yet"
        )

    def summary(self) -> dict[str, Any]:
        """What the watch found by its deadline (no rejection): per test its e-value and evidence."""
        return {
            "target": self.spec.target,
            "release": self.spec.release,
            "looks": self.looks,
            "alpha": self.spec.params.alpha,
            "threshold": self.spec.params.threshold,
            "max_e": {
                name: {"channel": r.channel, "e_value": r.e_value, "log_e": min(r.log_e, MAX_LOG_E)}
                for name, r in self.top().items()
            },
            "tests": [
                {
                    "channel": r.channel,
                    "test": r.test,
                    "status": r.status.value,
                    "e_value": r.e_value,
                    "looks": r.looks,
                    "paused_looks": r.paused_looks,
                    "evidence": r.evidence,
                }
                for r in self.results.values()
            ],
        }
