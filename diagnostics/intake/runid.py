"""Deterministic run ids: one alert group's firing state always maps to the same incident run id.

``incident__<name>__<24 hex>``: the hex is SHA-256 over the group key and the sorted
``fingerprint@startsAt`` of the firing alerts. A redelivery (Alertmanager retries, repeats) gives
the same id; an alert that resolved and fired again has a new startsAt and so a new id. The name
(the group's label values, e.g. ``testbed-canary``) is only for people reading the run list.
Ids fit Airflow's default ``allowed_run_id_pattern`` (``^[A-Za-z0-9_.~:+-]+$``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

PREFIX = "incident__"
RUN_ID_PATTERN = re.compile(r"^incident__[a-z0-9_-]{0,40}__[0-9a-f]{24}$")


def slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")


def incident_run_id(group_key: str, occurrences: Iterable[tuple[str, str]], name: str = "") -> str:
    firing = sorted({f"{fp.lower()}@{starts}" for fp, starts in occurrences})
    if not firing:
        raise ValueError("an incident run id needs at least one firing alert")
    digest = hashlib.sha256("\n".join([group_key, *firing]).encode("utf-8")).hexdigest()[:24]
    return f"{PREFIX}{slug(name)}__{digest}"
