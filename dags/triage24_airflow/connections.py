"""Airflow Connections -> the library's evidence sources and secrets. Credentials stay in the
Connection: URLs are built by hand (``get_uri()`` would carry a password into logs)."""

from __future__ import annotations

import logging
import os
from typing import Any

from diagnostics.golden_window.phase import EvidenceSources
from diagnostics.runbooks import Runbooks

log = logging.getLogger(__name__)

PROMETHEUS = "triage24_prometheus"


def connection(conn_id: str) -> Any:
    """The Connection, or None where it is not defined (the usual case on the local stack)."""
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:  # not defined: the caller falls back to the settings / environment
        log.info("connection %s not used: %s", conn_id, type(exc).__name__)
        return None


def secret(conn_id: str, env: str) -> tuple[str | None, str]:
    """A secret: the Connection's password, else the environment variable; with where it came from
    (named in errors, never the value)."""
    conn = connection(conn_id)
    if conn is not None and conn.password:
        return str(conn.password), f"Connection {conn_id}"
    return os.environ.get(env) or None, env


def require_secret(conn_id: str, env: str) -> str:
    """Like :func:`secret`, but a missing secret fails the task naming both places to set it."""
    value, _ = secret(conn_id, env)
    if not value:
        raise RuntimeError(
            f"no secret: set the Airflow Connection {conn_id!r} (password) "
            f"or {env} in the workers' environment"
        )
    return value


def evidence_sources(books: Runbooks, target: str) -> EvidenceSources:
    """Evidence sources from the Connection ``triage24_prometheus`` and the target's log connection
    (``logs.connection_id`` in targets.yaml, default ``triage24_elasticsearch``) where they exist, else
    the local stack's settings."""
    logs = books.targets.get(target).logs
    sources = EvidenceSources.from_settings()
    overrides: dict[str, Any] = {}
    prom = connection(PROMETHEUS)
    if prom is not None and prom.host:
        overrides["prometheus_url"] = f"{prom.schema or 'http'}://{prom.host}:{prom.port or 9090}"
        if prom.password:
            overrides["prometheus_headers"] = {"Authorization": f"Bearer {prom.password}"}
    es = connection(logs.connection_id) if logs.source == "elasticsearch" else None
    if es is not None and es.host:
        cfg: dict[str, Any] = {"hosts": [f"{es.schema or 'https'}://{es.host}:{es.port or 9200}"]}
        if es.extra_dejson.get("api_key"):
            cfg["api_key"] = es.extra_dejson["api_key"]
        elif es.login:
            cfg["basic_auth"] = (es.login, es.password or "")
        overrides["elasticsearch"] = cfg
    return EvidenceSources(**{**sources.__dict__, **overrides})
