"""The canary watch as a deferrable operator: the worker only starts the watch and acts on its verdict;
the looks run in the triggerer (``triage24_triggers.CanaryWatchTrigger``, in plugins/), so no worker
slot is held while a canary is watched.

- ``execute``: the watch's definition from ``runbooks/canary_watch.yaml`` and ``targets.yaml`` for the
  run's target (a :class:`~diagnostics.canary_watch.session.WatchSpec`), Prometheus' URL from the
  Connection ``triage24_prometheus`` (else the local stack's settings; the token stays in the
  Connection), a deadline ``duration_minutes`` after the run started (a retried task keeps it), then
  defer;
- ``on_event``: ``checkpoint`` -> defer again with the current state (a triggerer restart resumes from
  there); ``rejected`` -> open the incident through the intake's own path: a ``CanaryWatchRejected``
  alert (:func:`diagnostics.canary_watch.alert.alert_payload`) posted to the intake's webhook with
  its token (Connection ``triage24_webhook``, else ``TRIAGE24_WEBHOOK_TOKEN``), so the journal,
  correlation, grading and dedup apply as to any alert, and the incident's fast path rolls back on
  the watch's evidence (decision rule ``canary_watch_rejection``); ``completed`` -> the summary.

A retry restarts the watch from ``execute`` (a fresh e-process: at worst one more chance at alpha per
retry); a rejection the intake did not take is posted 3 times over ~6 s before the task fails.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from airflow.sdk import BaseOperator

from triage24_airflow.connections import PROMETHEUS, connection, secret

log = logging.getLogger(__name__)

INTAKE_PATH = "/triage24/intake/alertmanager"
DEFAULT_DURATION_MINUTES = 120
# past the deadline, the trigger has this long to report before Airflow times the deferral out
DEADLINE_SLACK_S = 300.0
POST_ATTEMPTS = 3


def prometheus_url() -> str:
    """Prometheus' URL, without credentials: the Connection's host, else the evidence settings."""
    from diagnostics.golden_window.phase import EvidenceSources

    prom = connection(PROMETHEUS)
    if prom is not None and prom.host:
        return f"{prom.schema or 'http'}://{prom.host}:{prom.port or 9090}"
    return EvidenceSources.from_settings().prometheus_url


def trigger_kwargs(target: str, release: str, deadline: datetime, **options: Any) -> dict[str, Any]:
    """The kwargs of a new watch of ``target`` (``options``: checkpoint_s, query_timeout_s)."""
    from diagnostics.canary_watch.session import WatchSpec
    from diagnostics.config import Settings
    from diagnostics.runbooks import load_runbooks
    from diagnostics.runbooks.canary_watch import load_canary_watch

    books = load_runbooks()
    book = load_canary_watch(Settings().runbooks_dir / "canary_watch.yaml")
    spec = WatchSpec.from_runbook(book, books.targets.get(target), release)
    return {
        "spec": spec.model_dump(mode="json"),
        "deadline": deadline.astimezone(UTC).isoformat(),
        "prometheus_url": prometheus_url(),
        "prometheus_conn_id": PROMETHEUS,
        **options,
    }


def post_rejection(event: dict[str, Any], url: str | None = None) -> dict[str, Any]:
    """Post the rejection as a ``CanaryWatchRejected`` alert to the intake; its answer."""
    from diagnostics.canary_watch.alert import Rejection, alert_payload
    from diagnostics.config import Settings
    from diagnostics.verified_delivery.regression.watch import IntakeError, post_alert

    rejection = Rejection.model_validate({k: v for k, v in event.items() if k != "status"})
    token, where = secret("triage24_webhook", "TRIAGE24_WEBHOOK_TOKEN")
    if not token:
        raise RuntimeError(
            f"no webhook token ({where}): set the Airflow Connection triage24_webhook (password) "
            "or TRIAGE24_WEBHOOK_TOKEN; the rejection was: " + rejection.reason()
        )
    url = url or Settings().airflow_url + INTAKE_PATH
    payload = alert_payload(rejection)
    for attempt in range(1, POST_ATTEMPTS + 1):
        try:
            return post_alert(url, token, payload)
        except IntakeError as exc:
            if attempt == POST_ATTEMPTS:
                raise
            log.warning("intake did not take the rejection (attempt %d): %s", attempt, exc)
            time.sleep(2.0 * attempt)
    raise AssertionError("unreachable")


class CanaryWatchOperator(BaseOperator):
    """Watches the run's target's canary (Params ``target``, ``release``, ``duration_minutes``)."""

    ui_color = "#fce8b2"

    def __init__(self, *, checkpoint_s: float = 600.0, query_timeout_s: float = 4.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checkpoint_s, self.query_timeout_s = checkpoint_s, query_timeout_s

    def execute(self, context: Any) -> None:
        params = context["params"]
        target = str(params.get("target") or "testbed")
        release = str(params.get("release") or "")
        minutes = float(params.get("duration_minutes") or DEFAULT_DURATION_MINUTES)
        run = context["dag_run"]
        start = run.start_date or datetime.now(UTC)
        kwargs = trigger_kwargs(
            target,
            release,
            start + timedelta(minutes=minutes),
            checkpoint_s=self.checkpoint_s,
            query_timeout_s=self.query_timeout_s,
        )
        log.info(
            "watching the canary of %s%s until %s",
            target,
            f" ({release})" if release else "",
            kwargs["deadline"],
        )
        self._defer(kwargs)

    def _defer(self, kwargs: dict[str, Any]) -> NoReturn:
        from triage24_triggers import CanaryWatchTrigger

        left = datetime.fromisoformat(kwargs["deadline"]).timestamp() - time.time()
        self.defer(
            trigger=CanaryWatchTrigger(**kwargs),
            method_name="on_event",
            timeout=timedelta(seconds=max(left, 0.0) + DEADLINE_SLACK_S),
        )

    def on_event(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        status = (event or {}).get("status")
        if status == "checkpoint":
            assert event is not None
            log.info("checkpoint after %s looks: deferring again with the current state", event.get("looks"))
            self._defer(event["resume"])
        if status == "rejected":
            assert event is not None
            answer = post_rejection(event)
            log.warning(
                "rejected: %s; intake: %s %s",
                event.get("evidence"),
                answer.get("outcome"),
                answer.get("run_id") or "",
            )
            keep = ("channel", "test", "evidence", "e_value", "threshold", "counts", "looks", "rejected_at")
            return {
                "status": "rejected",
                **{k: event.get(k) for k in keep},
                "intake": {k: answer.get(k) for k in ("outcome", "run_id", "grade", "rule", "detail")},
            }
        if status == "completed":
            assert event is not None
            for line in (t.get("evidence", "") for t in event.get("tests", [])):
                log.info("  %s", line)
            return {k: event.get(k) for k in ("status", "target", "release", "looks", "threshold", "max_e")}
        raise ValueError(f"canary watch: unexpected trigger event {str(event)[:200]!r}")
