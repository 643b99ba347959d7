"""A small typed reader over ``prometheus_api_client`` and the PromQL the metrics check runs.

Every check query is an instant query at the end of a window with range vectors of the window's
length; :meth:`PrometheusReader.query_range` (the phase-1 metric timeline) returns a range matrix as
it came, which :func:`range_frame` turns into a pandas frame.
Every failure - refused connection, timeout, HTTP error, a body that is not Prometheus' JSON,
``status: error`` - is raised as a :class:`PrometheusError` with a human reason, which the check turns
into ``insufficient_evidence``. NaN and ±Inf values (``histogram_quantile`` over no data) are "no
data" (``None``), never numbers.

Transient failures are retried (:mod:`diagnostics.sources.retry`, tenacity): a refused or reset
connection, HTTP 5xx and 429 (its ``Retry-After`` honoured), with a doubling backoff and a deadline
per query; a timeout is not retried, so a hanging Prometheus costs one ``timeout_s`` and the check
moves on. A failure after retries says how many attempts it took (``PrometheusError.attempts``).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator
from urllib3.exceptions import MaxRetryError, ReadTimeoutError
from urllib3.util.retry import Retry

from diagnostics.runbooks.schemas import Channel, MetricNames, Target
from diagnostics.sources.retry import retry_after_s, retrying

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_CHANNELS = frozenset(c.value for c in Channel)


class PrometheusError(Exception):
    """Prometheus could not answer a query; ``reason`` says why, for a human. ``status`` is the HTTP
    status where there was an answer, ``retry_after_s`` what its ``Retry-After`` asked for, and
    ``attempts`` how many requests the query made before giving up."""

    def __init__(self, reason: str, status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after_s = retry_after_s
        self.attempts = 1


class PrometheusUnavailable(PrometheusError):
    """No answer at all: connection refused, DNS, timeout."""


class PrometheusTimeout(PrometheusUnavailable):
    """No answer within the timeout (never retried: the next try would most likely hang as long)."""


class PrometheusQueryError(PrometheusError):
    """An answer that is not a successful Prometheus result: HTTP error, bad JSON, ``status: error``."""


class InvalidSelector(PrometheusError):
    """The target's selector or metric names cannot be turned into valid PromQL."""


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector; ``value`` is ``None`` for NaN/±Inf (no data)."""

    labels: Mapping[str, str]
    value: float | None


_Span = tuple[datetime, datetime, str]  # a range query's start, end and step


class Reader(Protocol):
    """What the check needs from Prometheus: an instant query at a time (tests pass fakes)."""

    def query(self, promql: str, at: datetime) -> list[Sample]: ...


# --- PromQL building ------------------------------------------------------------------------------


def quote(value: str) -> str:
    """A PromQL double-quoted string literal: backslash, double quote and newline are escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def duration(seconds: float) -> str:
    """A PromQL range duration: whole seconds as ``300s``, anything finer in milliseconds."""
    ms = round(seconds * 1000)
    if ms <= 0:
        raise InvalidSelector(f"a range must be longer than 0 s, got {seconds!r}")
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def matchers(
    selector: Mapping[str, str],
    equal: Mapping[str, str] | None = None,
    regex: Mapping[str, str] | None = None,
    one_of: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """``{a="x",b=~"re",...}``: exact matches from ``selector`` and ``equal``, regular-expression
    matches from ``regex``, and ``one_of`` as an anchored alternation of literal values."""
    parts: list[tuple[str, str, str]] = [(k, "=", v) for k, v in {**selector, **(equal or {})}.items()]
    parts += [(k, "=~", v) for k, v in (regex or {}).items()]
    # re.escape leaves letters/digits/_ alone and backslash-escapes punctuation, which RE2 accepts.
    parts += [(k, "=~", "|".join(re.escape(v) for v in values)) for k, values in (one_of or {}).items()]
    for name, _, _ in parts:
        if not _LABEL_NAME.match(name):
            raise InvalidSelector(f"{name!r} is not a valid Prometheus label name")
    return "{" + ",".join(f"{name}{op}{quote(value)}" for name, op, value in parts) + "}"


@dataclass(frozen=True)
class PromQL:
    """The queries of the metrics check for one target, grouped by version and channel."""

    names: MetricNames
    selector: str

    @classmethod
    def for_target(cls, target: Target, versions: Iterable[str] | None = None) -> PromQL:
        """Queries restricted to ``target.prometheus_selector`` and the target's versions."""
        names = target.metrics
        wanted = sorted(versions if versions is not None else target.versions)
        return cls(names, matchers(target.prometheus_selector, one_of={names.version_label: wanted}))

    def _sel(self, extra: str) -> str:
        inner = self.selector[1:-1]
        return "{" + ",".join(part for part in (inner, extra) if part) + "}"

    @property
    def _by(self) -> str:
        return f"{self.names.version_label}, {self.names.channel_label}"

    def requests(self, window_s: float) -> str:
        """Requests served in the window (``increase`` of the request counter)."""
        series = f"{self.names.requests_total}{self.selector}[{duration(window_s)}]"
        return f"sum by ({self._by}) (increase({series}))"

    def errors(self, window_s: float) -> str:
        """Requests answered with a code >= 400 in the window."""
        return (
            f"sum by ({self._by}) (increase({self.names.errors_total}{self.selector}[{duration(window_s)}]))"
        )

    def errors_5xx(self, window_s: float) -> str:
        """Requests answered 5xx in the window, from the request counter's code label."""
        sel = self._sel(f'{self.names.code_label}=~"5.."')
        return f"sum by ({self._by}) (increase({self.names.requests_total}{sel}[{duration(window_s)}]))"

    def quantile(self, q: float, window_s: float) -> str:
        """Latency quantile ``q`` in seconds, from the histogram's rate over the window."""
        bucket = f"{self.names.request_duration_histogram}_bucket{self.selector}[{duration(window_s)}]"
        return f"histogram_quantile({q!r}, sum by ({self._by}, le) (rate({bucket})))"

    def buckets(self, window_s: float) -> str:
        """Cumulative bucket increases (``le`` label) in the window, for the gamma fit."""
        bucket = f"{self.names.request_duration_histogram}_bucket{self.selector}[{duration(window_s)}]"
        return f"sum by ({self._by}, le) (increase({bucket}))"

    def gpu_memory(self, window_s: float) -> str | None:
        """Peak GPU memory bytes per version, device and kind in the window (None if not exported)."""
        if self.names.gpu_memory_bytes is None:
            return None
        series = f"{self.names.gpu_memory_bytes}{self.selector}[{duration(window_s)}]"
        return f"max by ({self.names.version_label}, device, kind) (max_over_time({series}))"


# --- the reader -----------------------------------------------------------------------------------


def _public_url(url: str) -> str:
    """The URL without user:password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _check_body(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """Response hook: anything but a JSON ``{"status": "success"}`` becomes a PrometheusQueryError
    (with the HTTP status and ``Retry-After``, for the retry policy)."""
    code = response.status_code
    wait = retry_after_s(response.headers.get("Retry-After"))
    try:
        body = response.json()
    except ValueError:
        snippet = response.text[:120].replace("\n", " ")
        raise PrometheusQueryError(
            f"HTTP {code} from {_public_url(response.url)}: body is not JSON ({snippet!r})", code, wait
        ) from None
    if not isinstance(body, dict) or body.get("status") != "success":
        detail = (
            body if not isinstance(body, dict) else f"{body.get('errorType', '')} {body.get('error', '')}"
        )
        status = body.get("status") if isinstance(body, dict) else None
        raise PrometheusQueryError(
            f"HTTP {code}, status {status!r} from {_public_url(response.url)}: {str(detail).strip()[:300]}",
            code,
            wait,
        )
    if code != 200:
        raise PrometheusQueryError(f"HTTP {code} from {_public_url(response.url)}", code, wait)


def _is_timeout(exc: requests.RequestException) -> bool:
    """A timeout, whether requests raised it directly or urllib3 wrapped it in MaxRetryError."""
    if isinstance(exc, requests.Timeout):
        return True
    inner = exc.args[0] if exc.args else None
    return isinstance(inner, MaxRetryError) and isinstance(inner.reason, TimeoutError | ReadTimeoutError)


def _cause(exc: requests.RequestException) -> str:
    """The innermost reason (e.g. 'Connection refused'), without URLs that could carry credentials."""
    inner = exc.args[0] if exc.args else exc
    reason = getattr(inner, "reason", inner)
    return re.sub(r"https?://\S+", "<url>", str(reason))[:200]


def _number(raw: object) -> float | None:
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PrometheusQueryError(f"sample value {raw!r} is not a number") from None
    return value if math.isfinite(value) else None


def _retryable(exc: BaseException) -> bool:
    """Worth another try: no connection (but not a timeout), HTTP 5xx, HTTP 429."""
    if isinstance(exc, PrometheusTimeout):
        return False
    if isinstance(exc, PrometheusUnavailable):
        return True
    return (
        isinstance(exc, PrometheusQueryError)
        and exc.status is not None
        and (exc.status == 429 or exc.status >= 500)
    )


def _asked_wait(exc: BaseException) -> float | None:
    return exc.retry_after_s if isinstance(exc, PrometheusError) else None


class PrometheusReader:
    """Instant queries against one Prometheus; raises :class:`PrometheusError` on every failure.

    ``headers`` are sent with every request (e.g. a tenant header); ``bearer_token`` adds an
    ``Authorization: Bearer`` header and is never put in messages. A query is retried (module
    docstring) at most ``retries`` times, ``backoff_s`` then doubling (or the ``Retry-After`` asked
    for), no attempt starting later than ``deadline_s`` (default ``timeout_s``) after the first: a
    query costs at most ``deadline_s + timeout_s``. A timeout is not retried, so a dead Prometheus
    costs ``timeout_s``.
    """

    def __init__(
        self,
        url: str,
        timeout_s: float = 10.0,
        headers: Mapping[str, str] | None = None,
        bearer_token: str | None = None,
        retries: int = 2,
        backoff_s: float = 0.2,
        deadline_s: float | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries, self.backoff_s = retries, backoff_s
        self.deadline_s = timeout_s if deadline_s is None else deadline_s
        self.sleep: Callable[[float], None] = time.sleep  # the pauses between attempts (tests record them)
        all_headers = dict(headers or {})
        if bearer_token:
            all_headers["Authorization"] = f"Bearer {bearer_token}"
        session = requests.Session()
        session.hooks["response"].append(_check_body)
        # Retries are tenacity's (query); urllib3 makes one attempt per call.
        self._client = PrometheusConnect(
            url=self.url, headers=all_headers or None, retry=Retry(0), session=session, timeout=timeout_s
        )

    def __repr__(self) -> str:
        return f"PrometheusReader({_public_url(self.url)!r}, timeout_s={self.timeout_s})"

    def _request(self, promql: str, params: dict[str, str], span: _Span | None = None) -> Any:
        """One ``/api/v1/query`` request (``/api/v1/query_range`` with a ``span``); every failure as a
        :class:`PrometheusError`."""
        where = _public_url(self.url)
        try:
            if span is not None:
                return self._client.custom_query_range(promql, span[0], span[1], span[2], params=params)
            return self._client.custom_query(promql, params=params)
        except PrometheusError:
            raise
        except requests.RequestException as exc:
            if _is_timeout(exc):
                raise PrometheusTimeout(
                    f"Prometheus at {where} did not answer within {self.timeout_s} s"
                ) from None
            raise PrometheusUnavailable(
                f"cannot reach Prometheus at {where}: {type(exc).__name__}: {_cause(exc)}"
            ) from None
        except PrometheusApiClientException as exc:
            raise PrometheusQueryError(f"Prometheus at {where}: {str(exc)[:300]}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise PrometheusQueryError(f"Prometheus at {where}: unexpected response ({exc!r})") from None

    def _with_retries(self, promql: str, params: dict[str, str], span: _Span | None = None) -> Any:
        """:meth:`_request` under the retry policy; the last failure says how many attempts it took."""
        started, attempts = time.monotonic(), 0

        def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            return self._request(promql, params, span)

        policy = retrying(
            retries=self.retries,
            backoff_s=self.backoff_s,
            deadline_s=self.deadline_s,
            retryable=_retryable,
            retry_after=_asked_wait,
            sleep=self.sleep,
        )
        try:
            return policy(attempt)
        except PrometheusError as exc:
            exc.attempts = attempts
            notes = [f"{attempts} attempts in {time.monotonic() - started:.1f} s"] if attempts > 1 else []
            if _retryable(exc) and attempts <= self.retries:  # stopped by the deadline, not the count
                asked = f", Retry-After {exc.retry_after_s:g} s" if exc.retry_after_s is not None else ""
                notes.append(f"no retry past the {self.deadline_s:g} s deadline{asked}")
            if notes:
                exc.reason += " (" + "; ".join(notes) + ")"
                exc.args = (exc.reason,)
            raise

    def query(self, promql: str, at: datetime) -> list[Sample]:
        """An instant query evaluated at ``at`` (a naive datetime is taken as UTC)."""
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        where = _public_url(self.url)
        raw = self._with_retries(promql, {"time": f"{at.timestamp():.3f}"})
        if not isinstance(raw, list):
            raise PrometheusQueryError(f"Prometheus at {where}: result is not a vector")
        samples: list[Sample] = []
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
                raise PrometheusQueryError(
                    f"Prometheus at {where}: {promql!r} did not return an instant vector"
                )
            value = item.get("value")
            if not isinstance(value, list) or len(value) != 2:
                raise PrometheusQueryError(f"Prometheus at {where}: sample without a [time, value] pair")
            samples.append(Sample({str(k): str(v) for k, v in item["metric"].items()}, _number(value[1])))
        return samples

    def query_range(self, expr: str, start: datetime, end: datetime, step: float) -> list[dict[str, Any]]:
        """A range query over ``[start, end]`` every ``step`` seconds (naive datetimes are UTC; the
        client sends whole seconds): the raw matrix, ``[{"metric": {...}, "values": [[ts, "v"], ...]}]``,
        with the same retries and errors as :meth:`query`. :func:`range_frame` makes it a frame."""
        start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
        if step <= 0 or end < start:
            raise ValueError(f"a range query needs step > 0 and start <= end, got {step!r}, {start}..{end}")
        raw = self._with_retries(expr, {}, (start, end, f"{step:g}"))
        if not isinstance(raw, list) or not all(
            isinstance(s, dict)
            and isinstance(s.get("metric"), dict)
            and isinstance(s.get("values"), list)
            and all(isinstance(p, list) and len(p) == 2 for p in s["values"])
            for s in raw
        ):
            raise PrometheusQueryError(
                f"Prometheus at {_public_url(self.url)}: {expr!r} did not return a range matrix"
            )
        return raw


def range_frame(matrix: Sequence[Mapping[str, Any]]) -> Any:
    """A range query's matrix as a long pandas frame, built with ``prometheus_api_client``'s
    ``MetricRangeDataFrame``: one row per sample, a UTC ``timestamp`` index, one column per label
    and ``value`` as a float (``"NaN"`` is NaN, ``"+Inf"``/``"-Inf"`` are ±inf: callers decide what
    no data means). An empty matrix, or one whose series have no samples, is an empty frame of the
    same shape (``MetricRangeDataFrame`` cannot build one). A value that is not a number, or an
    instant vector, is a :class:`PrometheusQueryError`."""
    import pandas as pd
    from prometheus_api_client import MetricRangeDataFrame
    from prometheus_api_client.exceptions import MetricValueConversionError

    labels = sorted({str(k) for s in matrix for k in s.get("metric", {})} - {"timestamp", "value"})
    if not any(s.get("values") for s in matrix):
        index = pd.DatetimeIndex([], tz="UTC", name="timestamp")
        empty = {**{k: pd.Series(dtype=object) for k in labels}, "value": pd.Series(dtype=float)}
        return pd.DataFrame(empty, index=index)
    try:
        frame = pd.DataFrame(MetricRangeDataFrame([s for s in matrix if s.get("values")]))
    except MetricValueConversionError as exc:
        raise PrometheusQueryError(f"a range sample is not a number: {exc}") from None
    except (TypeError, KeyError, ValueError) as exc:
        raise PrometheusQueryError(f"not a range matrix: {type(exc).__name__}: {exc}") from None
    frame.index = frame.index.tz_localize("UTC")
    frame["value"] = frame["value"].astype(float)
    return frame


def reader_for(
    url: str,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
    bearer_token: str | None = None,
) -> PrometheusReader:
    """A reader for the check from plain settings (the CLI) or an Airflow Connection's fields (the DAG)."""
    return PrometheusReader(url, timeout_s=timeout_s, headers=headers, bearer_token=bearer_token)


# --- one window's figures per version and channel --------------------------------------------------


def quantile_label(q: float) -> str:
    """``0.99`` -> ``p99``, ``0.9999`` -> ``p99.99``, ``0.5`` -> ``p50``."""
    return "p" + f"{q * 100:.4f}".rstrip("0").rstrip(".")


class WindowStats(BaseModel):
    """Requests, errors and latency of one version and channel over one window."""

    model_config = ConfigDict(extra="forbid")

    version: str
    channel: Channel
    end: datetime
    window_s: float
    requests: float = Field(default=0.0, description="increase() of the request counter (extrapolated)")
    errors: float = Field(default=0.0, description="requests answered with a code >= 400")
    errors_5xx: float = 0.0
    latency_ms: dict[str, float | None] = Field(
        default_factory=dict, description="histogram_quantile by label (p50, p99, ...); None = no data"
    )
    buckets: list[tuple[float, float]] = Field(
        default_factory=list, exclude=True, description="(le seconds, cumulative increase), for the fit"
    )

    @model_validator(mode="before")
    @classmethod
    def _without_computed(cls, data: Any) -> Any:
        # A stored result carries the computed figures too; they are derived, so reading it back drops them.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in ("rate_rps", "error_rate", "rate_5xx")}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rate_rps(self) -> float:
        return self.requests / self.window_s if self.window_s > 0 else 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def error_rate(self) -> float | None:
        return min(1.0, self.errors / self.requests) if self.requests > 0 else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rate_5xx(self) -> float | None:
        return min(1.0, self.errors_5xx / self.requests) if self.requests > 0 else None

    def latency(self, q: float) -> float | None:
        """The ``q`` latency quantile in ms, or None when it was not queried or had no data."""
        return self.latency_ms.get(quantile_label(q))


def collect_window(
    reader: Reader,
    target: Target,
    end: datetime,
    window_s: float,
    quantiles: Iterable[float],
    with_buckets: bool = True,
) -> dict[tuple[str, Channel], WindowStats]:
    """Every (version, channel) of ``target`` over ``[end - window_s, end]``; absent series are zeros
    (for counters) or ``None`` (for quantiles), so the grid is always complete."""
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    q = PromQL.for_target(target)
    vl, cl = target.metrics.version_label, target.metrics.channel_label
    grid: dict[tuple[str, Channel], dict[str, Any]] = {
        (v, c): {
            "version": v,
            "channel": c,
            "end": end,
            "window_s": window_s,
            "latency_ms": {},
            "buckets": [],
        }
        for v in sorted(target.versions, key=lambda v: v != "stable")
        for c in Channel
    }

    def cells(promql: str) -> Iterable[tuple[dict[str, Any], Sample]]:
        for sample in reader.query(promql, end):
            if sample.value is not None and not math.isfinite(sample.value):
                sample = Sample(sample.labels, None)  # any reader: NaN/Inf is no data
            key = (sample.labels.get(vl, ""), sample.labels.get(cl, ""))
            if key[1] in _CHANNELS and (key[0], Channel(key[1])) in grid:
                yield grid[(key[0], Channel(key[1]))], sample

    for field, promql in (
        ("requests", q.requests(window_s)),
        ("errors", q.errors(window_s)),
        ("errors_5xx", q.errors_5xx(window_s)),
    ):
        for cell, sample in cells(promql):
            cell[field] = sample.value or 0.0
    for quant in sorted(set(quantiles)):
        for cell in grid.values():
            cell["latency_ms"].setdefault(quantile_label(quant), None)
        for cell, sample in cells(q.quantile(quant, window_s)):
            cell["latency_ms"][quantile_label(quant)] = None if sample.value is None else sample.value * 1000
    if with_buckets:
        for cell, sample in cells(q.buckets(window_s)):
            le = sample.labels.get("le")
            if le is not None and sample.value is not None:
                cell["buckets"].append((float(le), sample.value))
    return {key: WindowStats(**cell) for key, cell in grid.items()}


def collect_gpu_memory(
    reader: Reader, target: Target, end: datetime, window_s: float
) -> dict[str, dict[str, float]]:
    """Peak GPU memory bytes per version as ``{version: {"cuda:0/allocated": bytes}}``; empty where
    the target exports none (no GPU)."""
    promql = PromQL.for_target(target).gpu_memory(window_s)
    if promql is None:
        return {}
    out: dict[str, dict[str, float]] = {}
    for sample in reader.query(promql, end):
        if sample.value is None:
            continue
        version = sample.labels.get(target.metrics.version_label, "")
        key = f"{sample.labels.get('device', '?')}/{sample.labels.get('kind', '?')}"
        out.setdefault(version, {})[key] = sample.value
    return out


def window_before(end: datetime, window_s: float) -> datetime:
    """The end of the window that ends where ``[end - window_s, end]`` starts."""
    return end - timedelta(seconds=window_s)


# --- second signals for the health check --------------------------------------------------------------


def scrape_up(reader: Reader, selector: Mapping[str, str], at: datetime) -> tuple[str, list[float | None]]:
    """Prometheus' own verdict on its last scrape of every instance ``selector`` picks (``up``: 1
    scraped, 0 failed): the query and one value per series; empty when nothing is scraped under it."""
    if not selector:
        raise InvalidSelector("an up query needs at least one label, or it reads every job's up")
    promql = f"up{matchers(selector)}"
    return promql, [s.value for s in reader.query(promql, at)]


def increase_total(
    reader: Reader, metric: str, selector: Mapping[str, str], window_s: float, at: datetime
) -> tuple[str, float | None]:
    """``sum(increase(metric{selector}[window]))``: the query and the total, None when no series
    matches (a labelled counter never incremented is not exported at all)."""
    series = metric + (matchers(selector) if selector else "")
    promql = f"sum(increase({series}[{duration(window_s)}]))"
    values = [s.value for s in reader.query(promql, at)]
    known = [v for v in values if v is not None]
    return promql, (sum(known) if known else None)
