"""Notifications in Airflow: the channels' secrets from Airflow Connections, and a failure notifier.

:func:`install` (called by the task module at import) makes every ``notify``/``escalate`` a phase
makes find each channel's secret of ``runbooks/notifications.yaml`` in its Connection first
(``connection_id``), in its environment variable otherwise. The Connections use the providers' types
and are read the providers' way:

- ``apprise`` (apache-airflow-providers-apprise): extra ``config`` = ``{"path": URL, "tag": ...}`` or a
  list of them, read by ``AppriseHook.get_config_from_conn``; a channel's ``tag`` picks some;
- ``pagerduty_events`` (apache-airflow-providers-pagerduty): the password is the routing
  (integration) key, read by ``PagerdutyEventsHook``;
- the ``webhook`` channel: any Connection type, its password is the URL (or its extra ``url``).

Delivery itself stays in the library (:mod:`diagnostics.notify_channels`), not in the providers'
``AppriseNotifier``/``PagerdutyNotifier``: ``AppriseHook.notify`` drops Apprise's result (a failed
delivery would look sent, and the ledger could neither record nor retry it), and the PagerDuty hook
retries on its own schedule. :class:`IncidentEscalation` is the notifier framework's side: a
``BaseNotifier`` for ``on_failure_callback`` that pages through the same channels and ledger.

The triggerer (the deadline callback) does not import this package: there, the secrets come from the
environment variables (set them where the triggerer runs, or export the Connections as variables).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from airflow.sdk import BaseNotifier

from diagnostics.notify_channels import ChannelSpec, Secret, env_secrets, use_secret_source
from triage24_airflow.connections import connection

log = logging.getLogger(__name__)


def _apprise_urls(conn: Any, tag: str | None) -> tuple[str, ...]:
    from airflow.providers.apprise.hooks.apprise import AppriseHook

    config = AppriseHook(apprise_conn_id=conn.conn_id).get_config_from_conn(conn)
    entries = config if isinstance(config, list) else [config]
    urls = []
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("path"):
            continue
        tags = entry.get("tag") or []
        tags = [tags] if isinstance(tags, str) else list(tags)
        if tag is None or tag in tags:
            urls.append(str(entry["path"]))
    return tuple(urls)


def _routing_key(conn_id: str) -> str:
    from airflow.providers.pagerduty.hooks.pagerduty_events import PagerdutyEventsHook

    return str(PagerdutyEventsHook(pagerduty_events_conn_id=conn_id).integration_key)


def connection_secret(spec: ChannelSpec) -> Secret | None:
    """The channel's secret from its Airflow Connection; None where it has none or no usable value."""
    if spec.connection_id is None:
        return None
    conn = connection(spec.connection_id)
    if conn is None:
        return None
    origin = f"Connection {spec.connection_id}"
    if spec.kind == "apprise":
        values = _apprise_urls(conn, spec.tag)
    elif spec.kind == "pagerduty":
        values = (_routing_key(spec.connection_id),) if conn.password else ()
    else:
        url = conn.password or conn.extra_dejson.get("url")
        values = (str(url).strip(),) if url else ()
    if not values:
        log.warning("%s defines no %s for notification channel %s", origin, spec.kind, spec.name)
        return None
    return Secret(values, origin)


def airflow_secrets(spec: ChannelSpec) -> Secret | None:
    """The Connection first, the environment variable otherwise."""
    return connection_secret(spec) or env_secrets(os.environ)(spec)


def install() -> None:
    """Every notification of this process resolves its channels with :func:`airflow_secrets`."""
    use_secret_source(airflow_secrets)


class IncidentEscalation(BaseNotifier):
    """``on_failure_callback``: a task of the incident failed for good (a rollback that could not be
    applied): page a human now, through the channels and the ledger of every other state change
    (one page per incident, whatever fails after). Never raises: a notification must not hide the
    failure it reports. (No template fields: one instance serves every task that names it.)"""

    def __init__(self, what: str = "failed", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.what = what

    def notify(self, context: Any) -> None:
        from diagnostics.notify import escalate
        from triage24_airflow import runs

        install()
        try:
            ti = context["ti"]
            summary = f"{ti.task_id} {self.what}: {context.get('exception') or 'see the task log'}"
            details = {"task": ti.task_id, "try": ti.try_number}
            sent = escalate(runs.incident(context), summary, details=details)
            log.warning("task %s %s: %s", ti.task_id, self.what, sent.reason)
        except Exception:  # a failure callback must not raise
            log.exception("could not escalate the failed task")
