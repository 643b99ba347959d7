"""The scheduled regression watch: a regressed canary opens an incident through the alert intake.

The scheduled DAG runs the golden suite on stable and canary (and the phase-2 drift check); when the
canary fails a channel, or drifts to level 2, it posts an Alertmanager v4 alert group to the
intake's webhook — the **same path** as a Prometheus alert: bearer-authenticated, journaled, graded
by ``runbooks/grading.yaml`` (the alert's severity label), deduplicated. One regression episode is one
alert occurrence: its ``startsAt`` is the first scheduled run that saw it (kept in
``<artifacts>/regression/episodes.json``), so the next runs that still see it are duplicates of the open
incident, not new ones; a healthy run ends the episode.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from diagnostics.incident.store import write_json

ALERTNAME = "GoldenRegression"


class IntakeError(RuntimeError):
    """The intake did not take the alert (unreachable, refused): the scheduled run fails loudly."""


def regressions(suite: dict[str, Any] | None, drift_levels: dict[str, int | None] | None) -> dict[str, str]:
    """channel -> why, for the canary: failing regression channels and drift at level 2."""
    out: dict[str, str] = {}
    for channel, status in ((suite or {}).get("channels") or {}).items():
        if status == "failed":
            failing = [c for c in (suite or {}).get("failing", []) if isinstance(c, str)]
            out[channel] = "golden regression failing" + (f" ({', '.join(failing[:3])})" if failing else "")
    for channel, level in (drift_levels or {}).items():
        if level is not None and level >= 2:
            out[channel] = (out.get(channel, "") + "; " if channel in out else "") + "drift level 2"
    return out


def fingerprint(labels: dict[str, str]) -> str:
    """A stable id of the alert (Alertmanager's is a hash of the label set too)."""
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


def _episodes_path(root: Path) -> Path:
    return root / "regression" / "episodes.json"


def episode_start(root: Path, fp: str, now: datetime) -> datetime:
    """When this regression was first seen (now, for a new episode)."""
    path = _episodes_path(root)
    try:
        episodes = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        episodes = {}
    if fp not in episodes:
        episodes[fp] = now.isoformat()
        write_json(path, episodes)
    return datetime.fromisoformat(episodes[fp])


def end_episodes(root: Path, target: str) -> list[str]:
    """A healthy canary ends the target's open episodes; returns the fingerprints ended."""
    path = _episodes_path(root)
    try:
        episodes = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    ended = [fp for fp in episodes if fp.startswith(f"{target}:")]
    if ended:
        write_json(path, {k: v for k, v in episodes.items() if k not in ended})
    return ended


def alert_payload(
    target: str,
    version: str,
    why: dict[str, str],
    *,
    starts_at: datetime,
    severity: str,
    external_url: str = "",
) -> dict[str, Any]:
    """The Alertmanager v4 body for a regressed version (one alert per channel)."""
    alerts = []
    for channel, reason in sorted(why.items()):
        labels = {
            "alertname": ALERTNAME,
            "target": target,
            "version": version,
            "channel": channel,
            "severity": severity,
        }
        alerts.append(
            {
                "status": "firing",
                "labels": labels,
                "annotations": {
                    "summary": f"{target} {version} {channel}: {reason}",
                    "source": "triage24_regression",
                },
                "startsAt": starts_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": external_url,
                "fingerprint": fingerprint(labels),
            }
        )
    common = {"alertname": ALERTNAME, "target": target, "version": version, "severity": severity}
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{ALERTNAME}", target="{target}"}}',
        "status": "firing",
        "receiver": "triage24-regression",
        "groupLabels": {"alertname": ALERTNAME, "target": target},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": external_url,
        "truncatedAlerts": 0,
        "alerts": alerts,
    }


def post_alert(
    url: str, token: str | None, payload: dict[str, Any], timeout_s: float = 10.0
) -> dict[str, Any]:
    """POST the alert to the intake; returns its answer (``outcome``: created / duplicate / ...)."""
    if not token:
        raise IntakeError(
            "no webhook token: set the Airflow Connection triage24_webhook (password) "
            "or TRIAGE24_WEBHOOK_TOKEN"
        )
    try:
        resp = httpx.post(url, json=payload, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise IntakeError(f"intake {url} unreachable: {type(exc).__name__}: {exc}"[:300]) from None
    try:
        body = resp.json()
    except ValueError:
        body = {"text": resp.text[:300]}
    if resp.status_code not in (200, 201, 202):
        raise IntakeError(f"intake {url} answered HTTP {resp.status_code}: {str(body)[:300]}")
    return body if isinstance(body, dict) else {"answer": body}
