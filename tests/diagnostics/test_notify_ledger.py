"""The ledger with several channels: a state is a no-op on the channels that had it and retried on the
one that failed; a ledger written before channels existed still counts for the webhook; channels
take only their states and grades; PagerDuty keeps an escalated alert open at close; a channel that
raises is a recorded failure."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from diagnostics.notify import Delivery, Notifier, load_notifications
from diagnostics.notify_channels import ChannelOutcome, IncidentInfo
from diagnostics.runbooks.grading import GradeId
from diagnostics.runbooks.notifications import AppriseChannel, IncidentState, NotificationSettings
from tests.conftest import REPO
from tests.support.notify_receiver import Receiver, receiver

INC = {"incident_id": "incident__testbed-canary__0a1b2c", "target": "testbed", "grade": "L3"}
KEY = "R0UTINGKEY0123456789abcdef012345"


class Setup:
    def __init__(self, hook: Receiver, chat: Receiver, pd: Receiver, root: Path) -> None:
        self.hook, self.chat, self.pd, self.root = hook, chat, pd, root
        self.env = {
            "TRIAGE24_NOTIFY_WEBHOOK_URL": hook.url,
            "TRIAGE24_NOTIFY_APPRISE_URLS": f"json://{chat.hostport}/chat",
            "TRIAGE24_PAGERDUTY_ROUTING_KEY": KEY,
            "TRIAGE24_PAGERDUTY_EVENTS_URL": pd.url,
        }
        base = load_notifications(REPO / "runbooks", environ=self.env)
        self.settings = base.model_copy(update={"backoff_s": 0.0, "retries": 1})

    def notifier(self, settings: NotificationSettings | None = None) -> Notifier:
        return Notifier(settings or self.settings, environ=self.env, root=self.root)

    def counts(self) -> tuple[int, int, int]:
        return len(self.hook.requests), len(self.chat.requests), len(self.pd.requests)

    def ledger(self, incident_id: str = str(INC["incident_id"])) -> dict[str, Any]:
        path = self.root / incident_id / "notifications" / "ledger.json"
        return dict(json.loads(path.read_text()))


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with receiver("/hook") as hook, receiver("/chat") as chat, receiver("/v2/enqueue", ok=202) as pd:
        yield Setup(hook, chat, pd, tmp_path)


def test_a_failed_channel_is_retried_alone_by_the_next_call(setup: Setup) -> None:
    setup.pd.script = [503, 503]
    first = setup.notifier().notify(INC, "opened")
    assert first.delivery is Delivery.FAILED and "not delivered to pager after 2 attempt(s)" in first.reason
    assert {c.channel: c.delivery for c in first.channels} == {
        "webhook": Delivery.SENT,
        "chat": Delivery.SENT,
        "pager": Delivery.FAILED,
    }
    assert first.attempts == 4 and first.status_code == 503  # 1 + 1 + 2
    entry = setup.ledger()["states"]["opened"]
    assert (entry["delivery"], entry["attempts"]) == ("failed", 4)
    assert {n: c["delivery"] for n, c in entry["channels"].items()} == {
        "webhook": "sent",
        "chat": "sent",
        "pager": "failed",
    }
    again = setup.notifier().notify(INC, "opened")  # a task retry: only PagerDuty is asked again
    assert again.delivery is Delivery.SENT and setup.counts() == (1, 1, 3)
    assert {c.channel: c.delivery for c in again.channels}["webhook"] is Delivery.DUPLICATE
    entry = setup.ledger()["states"]["opened"]
    assert (entry["delivery"], entry["attempts"], entry["status_code"]) == ("sent", 5, 202)
    assert entry["channels"]["pager"]["attempts"] == 3
    third = setup.notifier().notify(INC, "opened")
    assert third.delivery is Delivery.DUPLICATE and setup.counts() == (1, 1, 3)


def test_a_ledger_written_before_channels_counts_for_the_webhook(setup: Setup) -> None:
    path = setup.root / str(INC["incident_id"]) / "notifications" / "ledger.json"
    path.parent.mkdir(parents=True)
    old = {
        "delivery": "sent",
        "first_at": "2026-01-01T00:00:00Z",
        "last_at": "2026-01-01T00:00:00Z",
        "attempts": 1,
        "status_code": 200,
        "error": None,
        "text": "opened",
    }
    path.write_text(json.dumps({"incident_id": INC["incident_id"], "states": {"opened": old}}))
    result = setup.notifier().notify(INC, "opened")
    assert result.delivery is Delivery.SENT and setup.counts() == (0, 1, 1)  # the webhook had it
    channels = setup.ledger()["states"]["opened"]["channels"]
    assert channels["webhook"]["first_at"] == "2026-01-01T00:00:00Z" and set(channels) == {
        "webhook",
        "chat",
        "pager",
    }


def test_channels_take_only_their_states_and_grades(setup: Setup) -> None:
    specs = setup.settings.channel_specs()
    chat = specs[1]
    assert isinstance(chat, AppriseChannel)
    narrowed = setup.settings.model_copy(
        update={
            "channels": [
                specs[0],
                chat.model_copy(update={"states": [IncidentState.OPENED, IncidentState.CLOSED]}),
                specs[2].model_copy(update={"min_grade": GradeId.L4}),
            ]
        }
    )
    n = setup.notifier(narrowed)
    assert n.notify(INC, "decided").delivery is Delivery.SENT
    assert setup.counts() == (1, 0, 0)  # chat does not take decided; pager neither
    assert n.notify(INC, "opened").delivery is Delivery.SENT
    assert setup.counts() == (2, 1, 0)  # L3 is below the pager's own min_grade L4
    n.notify({**INC, "incident_id": "incident__l4", "grade": "L4"}, "opened")
    assert setup.counts() == (3, 2, 1)
    only_pager = narrowed.model_copy(update={"channels": [narrowed.channels[2]]})
    none = setup.notifier(only_pager).notify(INC, "escalated")
    assert none.delivery is Delivery.FILTERED and "no channel takes escalated" in none.reason


def test_an_escalated_alert_stays_open_at_close_until_a_recovery(setup: Setup) -> None:
    n = setup.notifier()
    for state in ("opened", "escalated", "closed"):
        assert n.notify(INC, state).delivery is Delivery.SENT
    actions = [e["event_action"] for e in setup.pd.bodies]
    assert actions == ["trigger", "trigger"]  # no resolve: a human was paged and nothing recovered
    closed = setup.ledger()["states"]["closed"]["channels"]
    assert set(closed) == {"webhook", "chat"}
    recovered = {**INC, "incident_id": "incident__recovered"}
    for state in ("opened", "escalated", "recovered", "closed"):
        n.notify(recovered, state)
    assert [e["event_action"] for e in setup.pd.bodies[2:]] == ["trigger", "trigger", "resolve", "resolve"]
    quiet = {**INC, "incident_id": "incident__quiet"}  # never escalated: closing resolves its alert
    n.notify(quiet, "opened")
    n.notify(quiet, "closed")
    assert [e["event_action"] for e in setup.pd.bodies[6:]] == ["trigger", "resolve"]


class Exploding:
    """A channel with a bug: it raises, with a secret in its message."""

    def __init__(self, spec: AppriseChannel) -> None:
        self.spec = spec
        self.name = spec.name

    def holds(self, state: IncidentState, sent: frozenset[IncidentState]) -> str | None:
        return None

    def send(
        self, message: Mapping[str, Any], incident: IncidentInfo, state: IncidentState
    ) -> ChannelOutcome:
        raise KeyError("token=hunter2-secret")


def test_a_channel_that_raises_is_a_recorded_failure_and_the_call_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = AppriseChannel(name="buggy", kind="apprise", url_env="X")
    settings = load_notifications(REPO / "runbooks", environ={})
    n = Notifier(settings, root=tmp_path, channels=[Exploding(spec)])
    result = n.notify(INC, "opened")
    assert result.delivery is Delivery.FAILED and result.error == "KeyError"
    entry = json.loads(next(tmp_path.rglob("ledger.json")).read_text())["states"]["opened"]
    assert entry["channels"]["buggy"] == {
        "delivery": "failed",
        "first_at": entry["first_at"],
        "last_at": entry["last_at"],
        "attempts": 1,
        "status_code": None,
        "error": "KeyError",
        "detail": "",
    }
    assert "notification channel buggy raised KeyError (a bug)" in caplog.text
    assert "hunter2" not in caplog.text
