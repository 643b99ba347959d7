"""The second signal behind a failing health endpoint: is the version (or the gateway) really down?

A health GET that keeps failing is a critical ``service_unreachable`` only when another witness
agrees; the checker's own network, a hung health handler or a slow node can fail a GET on their own.
The witnesses, read from Prometheus at the moment of the check:

- ``up`` of the endpoint's scrape targets (a version: the target's ``prometheus_selector`` plus its
  version label; the gateway: ``gateway_prometheus_selector``): every series 0 says *down*, any
  series 1 says *up* (Prometheus reached the process a scrape interval ago);
- for a version, the gateway's upstream-error counter to it (``metrics.gateway_upstream_errors_total``)
  over ``signal_window_s``: errors say *down*; none say nothing (the gateway may route it no traffic).

Confirmed = at least one witness says down and none says up. A witness that cannot be read
(Prometheus unreachable, no series, not configured) confirms nothing: unconfirmed is insufficient
evidence, never a rollback.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from diagnostics.runbooks.schemas import HealthConfirmation, Target
from diagnostics.sources.prometheus import PrometheusError, Reader, increase_total, scrape_up

Says = Literal["down", "up", "silent", "unavailable", "not_configured"]


class SignalReading(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signal: str = Field(description="prometheus_up or gateway_upstream_errors")
    says: Says
    query: str | None = None
    value: float | None = Field(default=None, description="up: the highest series value; errors: the total")
    series: int = Field(default=0, description="how many series answered")
    detail: str = Field(description="the reading in words, for the finding's evidence")


class Confirmation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    confirmed: bool
    signals: list[SignalReading] = Field(default_factory=list)
    reason: str


class Witness:
    """Reads the second signals; after Prometheus fails once it is not asked again in the same check
    (a hung Prometheus would otherwise cost its timeout per endpoint)."""

    def __init__(self, reader: Reader | None, target: Target, conf: HealthConfirmation, at: datetime) -> None:
        self.reader, self.target, self.conf, self.at = reader, target, conf, at
        self._down: str | None = None if reader is not None else "no Prometheus to ask"

    def _unavailable(self, signal: str) -> SignalReading:
        detail = f"Prometheus unavailable: {self._down}"
        return SignalReading(signal=signal, says="unavailable", detail=detail)

    def _ask_up(self, selector: dict[str, str]) -> SignalReading:
        if not selector:
            return SignalReading(
                signal="prometheus_up", says="not_configured", detail="no Prometheus selector for it"
            )
        if self._down is not None or self.reader is None:
            return self._unavailable("prometheus_up")
        try:
            query, values = scrape_up(self.reader, selector, self.at)
        except PrometheusError as exc:
            self._down = exc.reason
            return self._unavailable("prometheus_up")
        known = [v for v in values if v is not None]
        if not known:
            return SignalReading(
                signal="prometheus_up", says="silent", query=query, detail=f"{query}: no series"
            )
        top = max(known)
        says: Says = "up" if top >= 1 else "down"
        shown = ", ".join(f"{v:g}" for v in known)
        return SignalReading(
            signal="prometheus_up",
            says=says,
            query=query,
            value=top,
            series=len(known),
            detail=f"{query} = {shown}",
        )

    def _ask_gateway_errors(self, version: str) -> SignalReading:
        metric = self.target.metrics.gateway_upstream_errors_total
        if metric is None:
            return SignalReading(
                signal="gateway_upstream_errors", says="not_configured", detail="the target names no counter"
            )
        if self._down is not None or self.reader is None:
            return self._unavailable("gateway_upstream_errors")
        selector = {**self.target.gateway_prometheus_selector, self.target.metrics.version_label: version}
        window = self.conf.signal_window_s
        try:
            query, total = increase_total(self.reader, metric, selector, window, self.at)
        except PrometheusError as exc:
            self._down = exc.reason
            return self._unavailable("gateway_upstream_errors")
        if total is None or total <= 0:
            return SignalReading(
                signal="gateway_upstream_errors",
                says="silent",
                query=query,
                value=total,
                detail=f"no gateway upstream errors to {version} in {window:g} s",
            )
        return SignalReading(
            signal="gateway_upstream_errors",
            says="down",
            query=query,
            value=total,
            series=1,
            detail=f"the gateway counted {total:.0f} upstream errors to {version} in {window:g} s",
        )

    def confirm(self, name: str) -> Confirmation:
        """Whether ``name`` (stable, canary or gateway) is down, by the witnesses above."""
        if name == "gateway":
            signals = [self._ask_up(dict(self.target.gateway_prometheus_selector))]
        else:
            version_sel = {**self.target.prometheus_selector, self.target.metrics.version_label: name}
            signals = [self._ask_up(version_sel), self._ask_gateway_errors(name)]
        down = [s for s in signals if s.says == "down"]
        up = [s for s in signals if s.says == "up"]
        readings = "; ".join(f"{s.signal} {s.says}: {s.detail}".rstrip(": ") for s in signals)
        if down and not up:
            return Confirmation(confirmed=True, signals=signals, reason=f"confirmed by {readings}")
        why = "contradicted" if up else "no second signal says it is down"
        return Confirmation(confirmed=False, signals=signals, reason=f"not confirmed ({why}): {readings}")
