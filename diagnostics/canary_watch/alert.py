"""The canary watch's rejection as an alert: what the trigger reports, what the intake receives, and
what the decision reads back.

A rejection opens the incident through the intake's own path (journal, correlation, grading, dedup):
:func:`alert_payload` is an Alertmanager v4 body with one firing ``CanaryWatchRejected`` alert whose
labels say where (target, ``version: canary``, channel, ``problem``, ``gate: canary_watch``,
``severity: critical``: graded L3 by ``runbooks/grading.yaml``'s ``canary_gate_breach`` rule) and
whose annotations carry the evidence: the test, the counts of both versions, the e-value, its bound
(``1/α``) and the level. The alert starts at the rejection, so a repeated delivery (a retried task)
is the same occurrence, a duplicate.

The decision (:func:`read_rejection`, rule ``canary_watch_rejection``) parses the annotations back and
validates them: a malformed one is ignored with a reason, never a crash. It acts only on a rejection
that is evidence against the canary: an e-value at or over its bound (the bound above 1), at least one
canary event, and the canary's event rate above stable's. The watch only rejects a canary that is
worse than stable by construction (a one-sided test of the canary's share of the events); the last
check keeps "a finding both versions share is not evidence" true of whatever posted the alert.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from diagnostics.canary_watch.sequential import WatchResult
from diagnostics.runbooks.canary_watch import TestName
from diagnostics.runbooks.schemas import Channel, Identifier

ALERTNAME = "CanaryWatchRejected"
GATE = "canary_watch"
RECEIVER = "triage24-canary-watch"
# the priority matrix's problem of each test (error_rate: no runbook of its own)
PROBLEMS: dict[str, str] = {
    "errors": "error_rate",
    "errors_5xx": "http_5xx_burst",
    "sla_slow": "latency_sla_breach",
}
RUNBOOKS: dict[str, str] = {
    "errors_5xx": "runbooks/http_5xx_burst.md",
    "sla_slow": "runbooks/latency_sla_breach.md",
}
NUMBERS = ("e_value", "threshold", "alpha", "looks", "paused_looks")
COUNTS = ("canary_events", "canary_requests", "stable_events", "stable_requests")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WatchCounts(_Frozen):
    """Both versions' events and requests over the tested looks."""

    canary_events: float = Field(ge=0, allow_inf_nan=False)
    canary_requests: float = Field(ge=0, allow_inf_nan=False)
    stable_events: float = Field(ge=0, allow_inf_nan=False)
    stable_requests: float = Field(ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _events_within_requests(self) -> WatchCounts:
        for version in ("canary", "stable"):
            if getattr(self, f"{version}_events") > getattr(self, f"{version}_requests"):
                raise ValueError(f"{version}_events above {version}_requests")
        return self

    def rate(self, version: str) -> float | None:
        requests = getattr(self, f"{version}_requests")
        return getattr(self, f"{version}_events") / requests if requests > 0 else None


class Rejection(_Frozen):
    """One test's rejection of the canary, with its evidence."""

    target: Identifier
    release: str = Field(default="", max_length=200)
    channel: Channel
    test: TestName
    evidence: str = Field(max_length=500, description="the watch's one line for people")
    e_value: float = Field(gt=0, allow_inf_nan=False)
    threshold: float = Field(gt=0, allow_inf_nan=False, description="1/alpha: the e-value that rejects")
    alpha: float = Field(gt=0, lt=1)
    counts: WatchCounts
    looks: int = Field(ge=0)
    paused_looks: int = Field(ge=0)
    rejected_at: AwareDatetime

    @classmethod
    def from_result(cls, result: WatchResult, target: str, release: str, at: datetime) -> Rejection:
        return cls(
            target=target,
            release=release,
            channel=Channel(result.channel),
            test=result.test,
            evidence=result.evidence[:500],
            e_value=result.e_value,
            threshold=result.threshold,
            alpha=result.alpha,
            counts=WatchCounts(**{k: getattr(result, k) for k in COUNTS}),
            looks=result.looks,
            paused_looks=result.paused_looks,
            rejected_at=at.astimezone(UTC),
        )

    def event(self) -> dict[str, Any]:
        """The trigger's event (JSON)."""
        return {"status": "rejected", **self.model_dump(mode="json")}

    def labels(self) -> dict[str, str]:
        return {
            "alertname": ALERTNAME,
            "target": self.target,
            "version": "canary",
            "channel": self.channel.value,
            "severity": "critical",
            "problem": PROBLEMS[self.test],
            "gate": GATE,
        }

    def annotations(self) -> dict[str, str]:
        numbers = {k: repr(float(getattr(self, k))) for k in ("e_value", "threshold", "alpha")}
        counts = {k: repr(float(getattr(self.counts, k))) for k in COUNTS}
        out = {
            "summary": f"canary watch rejected the canary of {self.target} on {self.channel.value} "
            f"({self.test}): {self.evidence}",
            "description": "An anytime-valid sequential test (mixture e-process) of the canary's share of "
            "the events against stable's reached its bound: a healthy canary gets there with "
            f"probability at most alpha={self.alpha:.3g} over every look.",
            "evidence": self.evidence,
            "test": self.test,
            **numbers,
            **counts,
            "looks": str(self.looks),
            "paused_looks": str(self.paused_looks),
            "rejected_at": self.rejected_at.isoformat(),
            "source": "triage24_canary_watch",
        }
        if self.release:
            out["release"] = self.release
        if self.test in RUNBOOKS:
            out["runbook"] = RUNBOOKS[self.test]
        return out

    def not_evidence(self) -> str | None:
        """Why this rejection is no evidence against the canary (None: it is)."""
        if self.threshold <= 1:
            return f"threshold {self.threshold:g} is no bound (an e-value bound is 1/alpha > 1)"
        if self.e_value < self.threshold:
            return f"e-value {self.e_value:.3g} under its bound {self.threshold:g}: not a rejection"
        if self.counts.canary_events < 1:
            return "no canary event counted: nothing shows the canary worse"
        canary, stable = self.counts.rate("canary"), self.counts.rate("stable")
        if canary is not None and stable is not None and canary <= stable:
            return (
                f"the canary's rate {canary:.3%} is not above stable's {stable:.3%}: "
                "a finding both versions share is not evidence against the canary"
            )
        return None

    def reason(self) -> str:
        """The decision's reason line: test, channel, counts, e-value against its bound."""
        c = self.counts
        rates = [self.counts.rate(v) for v in ("canary", "stable")]
        shown = " vs ".join("n/a" if r is None else f"{r:.2%}" for r in rates)
        return (
            f"canary watch rejection (fast path): {self.channel.value} {self.test}: canary "
            f"{c.canary_events:,.0f}/{c.canary_requests:,.0f} vs stable {c.stable_events:,.0f}/"
            f"{c.stable_requests:,.0f} ({shown}), e={_num(self.e_value)} ≥ {_num(self.threshold)} = 1/alpha "
            f"(alpha {self.alpha:.3g} per test), {self.looks} looks"
            + (f", release {self.release}" if self.release else "")
        )


def _num(x: float) -> str:
    return f"{x:.3g}" if x >= 1e6 else f"{x:,.0f}"


def _iso_z(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alert_payload(rejection: Rejection, external_url: str = "") -> dict[str, Any]:
    """The Alertmanager v4 body the intake takes (one firing alert, starting at the rejection)."""
    labels = rejection.labels()
    group = {"alertname": ALERTNAME, "target": rejection.target}
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{ALERTNAME}", target="{rejection.target}"}}',
        "status": "firing",
        "receiver": RECEIVER,
        "groupLabels": group,
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": external_url,
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": rejection.annotations(),
                "startsAt": _iso_z(rejection.rejected_at),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": external_url,
            }
        ],
    }


def read_rejection(labels: Mapping[str, str], annotations: Mapping[str, str]) -> Rejection | str:
    """The rejection a ``CanaryWatchRejected`` alert carries, or why it cannot be read (malformed
    annotations, another version named): the caller ignores it with that reason."""
    if labels.get("version") != "canary":
        return f"names version {labels.get('version')!r}: the watch only ever accuses the canary"
    data: dict[str, Any] = {
        "target": labels.get("target"),
        "channel": labels.get("channel"),
        "release": annotations.get("release", ""),
        "test": annotations.get("test"),
        "evidence": annotations.get("evidence", ""),
        "rejected_at": annotations.get("rejected_at"),
        "counts": {k: annotations.get(k) for k in COUNTS},
        **{k: annotations.get(k) for k in NUMBERS},
    }
    for key in ("e_value", "threshold", "alpha", *(f"counts.{k}" for k in COUNTS)):
        section, _, name = key.rpartition(".")
        holder = data[section] if section else data
        value = holder[name]
        try:
            number = float(value)
        except (TypeError, ValueError):
            return f"annotation {name}: expected a number, got {value!r}"[:200]
        if not math.isfinite(number):
            return f"annotation {name}: {value!r} is not a finite number"
        holder[name] = number
    try:
        return Rejection.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"] if p != "counts")
        if first["type"] == "value_error":  # our own validators say what is wrong
            return (
                f"annotation {field}: {first['ctx']['error']}"
                if field
                else f"annotations: {first['ctx']['error']}"
            )
        return f"annotation {field}: {first['msg']} (got {str(first.get('input'))[:60]!r})"
