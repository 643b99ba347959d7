"""Triage24's triggers, run by Airflow's triggerer: ``CanaryWatchTrigger``, the canary watch's loop.

**Why this module lives in plugins/.** The triggerer re-creates a trigger from its classpath with
``import_string``; it does not put the DAG bundle's folder on ``sys.path`` (Airflow 3 documents that
the triggerer does not load DAG bundles: apache/airflow#48603, #65455), so a trigger under ``dags/``
fails to import there. Every Airflow process puts ``[core] plugins_folder`` on ``sys.path`` when it
starts (``airflow.settings.prepare_syspath_for_config_and_plugins``), and every deployment of this
repo sets it to this folder (the local stack, docker-compose, the image, the Helm values), so
``triage24_triggers.CanaryWatchTrigger`` imports in the triggerer, the workers and the
dag-processor alike (``diagnostics`` is installed, but the library must not import Airflow). The
plugin manager skips this file (``plugins/.airflowignore``): it holds no plugin. Importing it is
cheap; the library (numpy, scipy) is loaded when a trigger runs, in a thread off the event loop.
The statistics stay in ``diagnostics.canary_watch``; this is only the async loop around them.

**The loop.** Every ``look_every_s`` (runbooks/canary_watch.yaml) it reads one look from Prometheus
(four instant queries, each with its own timeout) and updates every test. The first rejection yields
``{"status": "rejected", ...}`` with its evidence; the deadline yields ``{"status": "completed",
...}`` with each test's e-value; every ``checkpoint_s`` it yields ``{"status": "checkpoint", "resume":
<its kwargs>}`` so that the operator defers again with the current state: the triggerer keeps the
kwargs a trigger was created with, so a restart resumes from the last checkpoint (the looks since are
read again as one look from the checkpoint's baseline). Prometheus unreachable or a series missing
pauses the tests, never rejects. One log line a minute: each test's highest e-value against its bound.

The Prometheus token is never among the kwargs: the trigger reads it in ``run()`` from the password
of the Connection ``prometheus_conn_id``, else the environment variable ``token_env``.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent

CLASSPATH = "triage24_triggers.CanaryWatchTrigger"
LOG_EVERY_S = 60.0


def _load(spec: dict[str, Any], state: dict[str, Any] | None) -> Any:
    """The watch session (imports numpy/scipy: run in a thread, off the triggerer's event loop)."""
    from diagnostics.canary_watch.session import WatchSession, WatchSpec

    return WatchSession(WatchSpec.model_validate(spec), state)


class CanaryWatchTrigger(BaseTrigger):
    """Watches one canary until it is rejected, the deadline comes, or a checkpoint is due.

    ``spec``: :class:`diagnostics.canary_watch.session.WatchSpec` as JSON; ``deadline``: ISO-8601 (UTC)
    end of the watch; ``prometheus_url``: without credentials; ``state``: the tests' encoded state
    (None: a new watch).
    """

    def __init__(
        self,
        spec: dict[str, Any],
        deadline: str,
        prometheus_url: str,
        prometheus_conn_id: str = "triage24_prometheus",
        token_env: str = "TRIAGE24_PROMETHEUS_TOKEN",  # noqa: S107 - the variable's name, not a token
        state: dict[str, Any] | None = None,
        checkpoint_s: float = 600.0,
        query_timeout_s: float = 4.0,
    ) -> None:
        super().__init__()
        self.spec, self.deadline, self.prometheus_url = spec, deadline, prometheus_url
        self.prometheus_conn_id, self.token_env = prometheus_conn_id, token_env
        self.state, self.checkpoint_s, self.query_timeout_s = state, checkpoint_s, query_timeout_s
        self._session: Any = None
        # the seams a test drives (not serialized): the transport, the wall clock, the sleep
        self.transport: httpx.AsyncBaseTransport | None = None
        self.clock: Callable[[], float] = time.time
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def serialize(self) -> tuple[str, dict[str, Any]]:
        state = self._session.encode() if self._session is not None else self.state
        return CLASSPATH, {
            "spec": self.spec,
            "deadline": self.deadline,
            "prometheus_url": self.prometheus_url,
            "prometheus_conn_id": self.prometheus_conn_id,
            "token_env": self.token_env,
            "state": state,
            "checkpoint_s": self.checkpoint_s,
            "query_timeout_s": self.query_timeout_s,
        }

    async def _token(self) -> str | None:
        if self.prometheus_conn_id:
            from airflow.sdk import BaseHook

            try:
                conn = await BaseHook.aget_connection(self.prometheus_conn_id)
                if conn.password:
                    return str(conn.password)
            except Exception as exc:  # not defined: the environment's token, or none
                self.log.debug("connection %s not used: %s", self.prometheus_conn_id, type(exc).__name__)
        return os.environ.get(self.token_env) or None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from diagnostics.canary_watch.look import build_looks, read_answers

        session = self._session = await asyncio.to_thread(_load, self.spec, self.state)
        token = await self._token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        end = datetime.fromisoformat(self.deadline).timestamp()
        started = self.clock()
        logged = -math.inf
        self.log.info(
            "canary watch of %s started: looks every %g s until %s",
            session.spec.target,
            session.spec.look_every_s,
            self.deadline,
        )
        async with httpx.AsyncClient(transport=self.transport, headers=headers) as client:
            while True:
                at = self.clock()
                if at >= end:
                    self.log.info("%s (deadline)", session.status_line())
                    yield TriggerEvent({"status": "completed", **session.summary()})
                    return
                answers = await read_answers(
                    client, self.prometheus_url, session.spec.look, at, self.query_timeout_s
                )
                session.observe(build_looks(session.spec.look, session.keys, answers))
                rejected = session.rejection()
                if rejected is not None:
                    yield TriggerEvent(self._rejected(session, rejected))
                    return
                if at - logged >= LOG_EVERY_S:
                    self.log.info("%s", session.status_line())
                    logged = at
                if self.checkpoint_s and at - started >= self.checkpoint_s:
                    yield TriggerEvent(
                        {"status": "checkpoint", "looks": session.looks, "resume": self.serialize()[1]}
                    )
                    return
                await self.sleep(max(0.0, min(at + session.spec.look_every_s, end) - self.clock()))

    def _rejected(self, session: Any, result: Any) -> dict[str, Any]:
        from diagnostics.canary_watch.alert import Rejection

        at = datetime.fromtimestamp(self.clock(), UTC)
        rejection = Rejection.from_result(result, session.spec.target, session.spec.release, at)
        self.log.warning("canary watch rejected the canary: %s", rejection.reason())
        return rejection.event()
