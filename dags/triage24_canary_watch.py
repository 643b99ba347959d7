"""Triage24 canary watch: while a canary takes traffic, compare it with stable continuously and
pull it out the moment the evidence is in.

The SOP's "watch" phase. Every look (5 s, ``runbooks/canary_watch.yaml``) the watch reads each
version's request, error, 5xx and SLA-slow counters from Prometheus and updates an anytime-valid
sequential test per channel and test: a healthy canary is rolled back by the watch with probability at
most ``alpha`` (0.5 %) over every look of the watch, however long it runs. Missing data (a scrape
gap, Prometheus down, a restarted version) pauses the tests; it never rejects.

1. **Watch** (deferred: the looks run in the triggerer, no worker slot is held) until a test
   rejects the canary or ``duration_minutes`` have passed.
2. **On a rejection**, open the incident the way every alert does: a ``CanaryWatchRejected`` alert
   (graded L3 like a canary gate breach) goes to the intake with its evidence - the test, the counts
   of both versions, the e-value and its bound - and the incident's fast path rolls the canary back on
   that evidence (decision rule ``canary_watch_rejection``), before Prometheus' own rules have fired.
3. **Otherwise** the run ends with each test's e-value: nothing argued against the canary.

Trigger it by hand from the form, or with a release's conf: ``{"release": "...", "target": "..."}``
(e.g. when the gateway's canary weight changes).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag
from triage24_airflow.canary_watch import DEFAULT_DURATION_MINUTES, CanaryWatchOperator

from diagnostics.runbooks import RunbookError, load_runbooks

try:
    _TARGETS = [t.name for t in load_runbooks().targets.targets]
except (RunbookError, OSError):  # the run fails on the runbooks then, naming the mistake
    _TARGETS = ["testbed"]


@dag(
    dag_id="triage24_canary_watch",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=16,
    tags=["triage24", "canary_watch"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=10)},
    doc_md=__doc__,
    params={
        "target": Param(_TARGETS[0], type="string", enum=_TARGETS, title="Target service"),
        "release": Param(
            "", type="string", title="Release", description="What is being rolled out (shown in the alert)"
        ),
        "duration_minutes": Param(
            DEFAULT_DURATION_MINUTES,
            type="integer",
            minimum=1,
            maximum=24 * 60,
            title="Watch for (minutes)",
            description="The watch ends here if nothing rejected the canary (default 2 h)",
        ),
    },
)
def triage24_canary_watch() -> None:
    CanaryWatchOperator(
        task_id="watch_canary",
        doc_md="Sequential tests of canary vs stable on every look; a rejection opens the incident.",
    )


triage24_canary_watch()
