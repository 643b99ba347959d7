"""Log lines from an Elasticsearch index, read with a point in time and ``search_after``.

What runs on the server and what runs here:

- the server filters by time (``range`` on the timestamp field), version and service (``terms`` /
  ``term``) and level (``terms`` over the level names at or above ``min_level``), sorted by
  ``[timestamp asc, _shard_doc asc]`` so ``search_after`` pages through a consistent snapshot;
- keyword regexes are **not** sent: Elasticsearch ``regexp`` queries are anchored, case-sensitive
  on keyword fields, run against analysed terms on text fields, and cost a scan per pattern, so
  they would neither match the priority matrix's semantics nor be cheap. The classification
  matches them here, on the fetched lines; the query's own ``keywords`` are applied here too;
- every server-side condition is applied again client-side on the parsed record, so an index whose
  field names differ only partly still gives correct (if slower) results.

Level values are sent both as given and lower-cased (``ERROR``/``error``, ``WARNING``/``WARN``/
``warn`` …), so the filter works on ``keyword`` fields and on dynamically mapped ``text`` fields.

Failures (connection refused, TLS, timeouts, 401/403, missing index, a server that is not
Elasticsearch) become ``SourceUnavailable`` with a reason that never contains credentials.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from elasticsearch import (
    ApiError,
    AuthenticationException,
    AuthorizationException,
    ConnectionError,
    ConnectionTimeout,
    Elasticsearch,
    NotFoundError,
    SerializationError,
    TransportError,
    UnsupportedProductError,
)

from diagnostics.sources.logs.records import (
    LogQuery,
    LogRead,
    LogRecord,
    ReadStats,
    SourceUnavailable,
)

__all__ = ["ENV_API_KEY", "ENV_URL", "ElasticsearchLogSource", "FieldNames"]

ENV_URL = "TRIAGE24_ELASTICSEARCH_URL"
ENV_API_KEY = "TRIAGE24_ELASTICSEARCH_API_KEY"

_LEVEL_SPELLINGS: dict[str, tuple[str, ...]] = {
    "DEBUG": ("DEBUG", "debug", "TRACE", "trace"),
    "INFO": ("INFO", "info", "NOTICE", "notice"),
    "WARNING": ("WARNING", "warning", "WARN", "warn"),
    "ERROR": ("ERROR", "error", "ERR", "err"),
    "CRITICAL": ("CRITICAL", "critical", "FATAL", "fatal"),
}


@dataclass(frozen=True)
class FieldNames:
    """Index field names used in the server-side filter and sort.

    The defaults suit testbed lines shipped as they are, with ``@timestamp`` added by the shipper;
    for ECS indexes use ``FieldNames(version="service.version", level="log.level",
    service="service.name")``. For ``text`` fields with a ``.keyword`` sub-field, name the
    sub-field (``version.keyword``).
    """

    timestamp: str = "@timestamp"
    version: str = "version"
    level: str = "level"
    service: str = "service"


def _redact_url(url: str) -> str:
    """The URL without user info (``https://user:pass@host`` must never reach a log or a report)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


class _Pit:
    """The open point in time (its id changes as searches return a new one); closed exactly once."""

    def __init__(self, pit_id: str) -> None:
        self.id = pit_id
        self.closed = False


class ElasticsearchLogSource:
    """Reads one index (or pattern / alias) through elasticsearch-py.

    Build it from explicit settings, from an Airflow Connection's parts (``from_connection``) or
    from the CLI environment (``from_env``). ``client`` may be passed to reuse one (tests do).
    """

    def __init__(
        self,
        index: str,
        *,
        hosts: str | Sequence[str] | None = None,
        api_key: str | tuple[str, str] | None = None,
        basic_auth: tuple[str, str] | None = None,
        request_timeout: float = 10.0,
        verify_certs: bool | None = None,
        ca_certs: str | None = None,
        max_retries: int = 1,
        page_size: int = 1000,
        keep_alive: str = "1m",
        field_names: FieldNames | None = None,
        client: Elasticsearch | None = None,
    ) -> None:
        if not index:
            raise ValueError("an index (or pattern or alias) is required")
        if page_size < 1 or page_size > 10_000:
            raise ValueError("page_size must be within 1..10000 (index.max_result_window)")
        self.index = index
        self.page_size = page_size
        self.keep_alive = keep_alive
        self.request_timeout = request_timeout
        self.fields = field_names or FieldNames()
        host_list = [hosts] if isinstance(hosts, str) else list(hosts or [])
        self._hosts = [_redact_url(h) for h in host_list]
        # Secrets to scrub from any error text, in case a library ever echoes them.
        self._secrets = [
            s
            for s in (
                *(api_key if isinstance(api_key, tuple) else (api_key,)),
                *(basic_auth or ()),
            )
            if s and len(s) >= 4
        ]
        if client is None:
            if not host_list:
                raise ValueError("hosts (or a client) are required")
            kwargs: dict[str, Any] = {"request_timeout": request_timeout, "max_retries": max_retries}
            if api_key is not None:
                kwargs["api_key"] = api_key
            elif basic_auth is not None:
                kwargs["basic_auth"] = basic_auth
            if verify_certs is not None:
                kwargs["verify_certs"] = verify_certs
            if ca_certs is not None:
                kwargs["ca_certs"] = ca_certs
            client = Elasticsearch(host_list, **kwargs)
        self.client = client

    # --- construction from settings ------------------------------------------------------------------

    @classmethod
    def from_env(
        cls, index: str, environ: Mapping[str, str] | None = None, **kwargs: Any
    ) -> ElasticsearchLogSource:
        """The CLI's way: ``TRIAGE24_ELASTICSEARCH_URL`` and optional ``TRIAGE24_ELASTICSEARCH_API_KEY``."""
        env = os.environ if environ is None else environ
        url = env.get(ENV_URL, "").strip()
        if not url:
            raise SourceUnavailable(f"elasticsearch index {index}", f"{ENV_URL} is not set")
        api_key = env.get(ENV_API_KEY, "").strip() or None
        return cls(index, hosts=url, api_key=api_key, **kwargs)

    @classmethod
    def from_connection(
        cls,
        index: str,
        *,
        host: str,
        port: int | None = None,
        login: str | None = None,
        password: str | None = None,
        extra: Mapping[str, Any] | None = None,
        schema: str | None = None,
        **kwargs: Any,
    ) -> ElasticsearchLogSource:
        """From an Airflow Connection's ``host``, ``port``, ``login``, ``password`` and ``extra``.

        ``extra`` may hold ``api_key`` (preferred over login/password), ``scheme`` (default https
        unless ``host`` has one), ``verify_certs``, ``ca_certs``, ``request_timeout``.
        """
        ex = dict(extra or {})
        url = host.strip()
        if "://" not in url:
            scheme = str(ex.get("scheme") or schema or "https")
            url = f"{scheme}://{url}"
        if port and urlsplit(url).port is None:
            url = f"{url.rstrip('/')}:{port}"
        api_key = ex.get("api_key") or None
        basic = (login, password or "") if login and not api_key else None
        for key in ("verify_certs", "ca_certs", "request_timeout"):
            if key in ex and key not in kwargs:
                kwargs[key] = ex[key]
        if "verify_certs" in kwargs and isinstance(kwargs["verify_certs"], str):
            kwargs["verify_certs"] = kwargs["verify_certs"].lower() not in ("false", "0", "no")
        if "request_timeout" in kwargs:
            kwargs["request_timeout"] = float(kwargs["request_timeout"])
        return cls(index, hosts=url, api_key=api_key, basic_auth=basic, **kwargs)

    # --- reading ---------------------------------------------------------------------------------------

    def describe(self) -> str:
        where = ", ".join(self._hosts) if self._hosts else "client"
        return f"elasticsearch {where} index {self.index}"

    def build_query(self, query: LogQuery) -> dict[str, Any]:
        """The ``bool`` filter sent to the server (see the module docstring for what is left out)."""
        f = self.fields
        filters: list[dict[str, Any]] = [
            {
                "range": {
                    f.timestamp: {
                        "gte": _iso(query.start),
                        "lt": _iso(query.end),
                        "format": "strict_date_optional_time",
                    }
                }
            }
        ]
        if query.versions is not None:
            filters.append({"terms": {f.version: sorted(query.versions)}})
        if query.service is not None:
            filters.append({"term": {f.service: query.service}})
        if query.min_level is not None:
            names = [s for level in query.levels() for s in _LEVEL_SPELLINGS[level]]
            filters.append({"terms": {f.level: names}})
        return {"bool": {"filter": filters}}

    def sort(self) -> list[dict[str, Any]]:
        return [{self.fields.timestamp: "asc"}, {"_shard_doc": "asc"}]

    def read(self, query: LogQuery) -> LogRead:
        stats = ReadStats(source=self.describe(), inputs=[self.index])
        try:
            resp = self.client.open_point_in_time(index=self.index, keep_alive=self.keep_alive)
            pit = _Pit(str(resp["id"]))
        except (ApiError, TransportError) as exc:
            raise self._unavailable(exc) from None
        records = self._iterate(pit, query, stats)
        return LogRead(stats=stats, records=records, on_close=lambda: self._close(pit))

    def _iterate(self, pit: _Pit, query: LogQuery, stats: ReadStats) -> Iterator[LogRecord]:
        keep = query.matcher()
        es_query = self.build_query(query)
        search_after: list[Any] | None = None
        try:
            while True:
                # One document more than still wanted tells whether the result was truncated.
                size = min(self.page_size, query.max_records + 1 - stats.returned)
                try:
                    resp = self.client.search(
                        pit={"id": pit.id, "keep_alive": self.keep_alive},
                        query=es_query,
                        sort=self.sort(),
                        size=size,
                        search_after=search_after,
                        track_total_hits=False,
                    )
                except (ApiError, TransportError) as exc:
                    raise self._unavailable(exc) from None
                body = resp.body
                if body.get("timed_out"):
                    # Partial pages could hide the very lines that matter: no evidence is better.
                    raise SourceUnavailable(stats.source, "search timed out on the server (partial results)")
                pit.id = str(body.get("pit_id") or pit.id)
                hits = body.get("hits", {}).get("hits", [])
                for hit in hits:
                    record = stats.accept(partial(hit.get, "_source"), keep, query.max_records)
                    if record is not None:
                        yield record
                    elif stats.truncated:
                        return
                if len(hits) < size or not hits:
                    return
                search_after = list(hits[-1]["sort"])
        finally:
            self._close(pit)

    def _close(self, pit: _Pit) -> None:
        if pit.closed:
            return
        pit.closed = True
        # It expires after keep_alive anyway; failing the check over it would lose the evidence.
        with contextlib.suppress(ApiError, TransportError):
            self.client.close_point_in_time(id=pit.id)

    def _unavailable(self, exc: Exception) -> SourceUnavailable:
        return SourceUnavailable(self.describe(), self._scrub(self._reason(exc)))

    def _reason(self, exc: Exception) -> str:
        where = ", ".join(self._hosts) or "the cluster"
        if isinstance(exc, AuthenticationException):
            return f"authentication failed (HTTP 401) at {where}: the API key or user/password was rejected"
        if isinstance(exc, AuthorizationException):
            return (
                f"not authorised (HTTP 403) to read index {self.index}: the credentials need the read "
                "and view_index_metadata privileges on it"
            )
        if isinstance(exc, NotFoundError):
            reason = _error_reason(exc)
            if _error_type(exc) == "index_not_found_exception":
                return f"index {self.index} not found (HTTP 404)"
            return f"not found (HTTP 404): {reason}"
        if isinstance(exc, UnsupportedProductError):
            return f"the server at {where} is not Elasticsearch (no X-Elastic-Product header)"
        if isinstance(exc, ApiError):
            return f"HTTP {exc.meta.status}: {_error_reason(exc)}"
        if isinstance(exc, ConnectionTimeout):
            return f"timed out after {self.request_timeout:g} s talking to {where}"
        if isinstance(exc, ConnectionError):
            return f"cannot connect to {where}: {_short(str(exc.message))}"
        if isinstance(exc, SerializationError):
            return f"unreadable answer from {where}: {_short(str(exc))}"
        return f"{type(exc).__name__} talking to {where}: {_short(str(exc))}"

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _iso(dt: Any) -> str:
    return str(dt.isoformat(timespec="milliseconds")).replace("+00:00", "Z")


def _error_type(exc: ApiError) -> str | None:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        kind = body["error"].get("type")
        return str(kind) if kind else None
    return None


def _error_reason(exc: ApiError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return _short(str(body["error"].get("reason") or body["error"].get("type") or exc.message))
    if isinstance(body, dict) and body.get("error"):
        return _short(str(body["error"]))
    return _short(str(exc.message))


_SPACES = re.compile(r"\s+")


def _short(text: str, limit: int = 200) -> str:
    text = _SPACES.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
