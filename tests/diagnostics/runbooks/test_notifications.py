"""``runbooks/notifications.yaml``: the channels as the repo ships them, the file of before channels
(a bare ``url_env``) still working, and each channel mistake named by file, line, field and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnostics.notify import Delivery, Notifier, load_notifications
from diagnostics.runbooks import RunbookError
from diagnostics.runbooks.grading import GradeId
from diagnostics.runbooks.notifications import (
    AppriseChannel,
    IncidentState,
    PagerDutyChannel,
    WebhookChannel,
)
from tests.conftest import REPO
from tests.support.notify_receiver import receiver

LEGACY = """\
version: 1
notifications:
  url_env: TRIAGE24_NOTIFY_WEBHOOK_URL
  min_grade: L2
  retries: 0
"""

HEAD = """\
version: 1
notifications:
  min_grade: L2
  states: [opened, recovered, closed, escalated]
  channels:
"""


def _write(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "runbooks"
    d.mkdir(exist_ok=True)
    (d / "notifications.yaml").write_text(text)
    return d


def test_the_repo_ships_a_webhook_an_apprise_and_a_pagerduty_channel() -> None:
    cfg = load_notifications(
        REPO / "runbooks", environ={"TRIAGE24_PAGERDUTY_EVENTS_URL": "http://127.0.0.1:9/e"}
    )
    webhook, chat, pager = cfg.channel_specs()
    assert isinstance(webhook, WebhookChannel) and webhook.url_env == "TRIAGE24_NOTIFY_WEBHOOK_URL"
    assert isinstance(chat, AppriseChannel) and chat.connection_id == "triage24_apprise"
    assert isinstance(pager, PagerDutyChannel) and pager.events_url == "http://127.0.0.1:9/e"
    assert pager.trigger_on == [IncidentState.OPENED, IncidentState.ESCALATED]
    assert pager.resolve_on == [IncidentState.RECOVERED, IncidentState.CLOSED]
    assert pager.severity[GradeId.L4] == "critical" and not pager.takes(IncidentState.DECIDED)
    default = load_notifications(REPO / "runbooks", environ={}).channel_specs()[2]
    assert isinstance(default, PagerDutyChannel)
    assert default.events_url == "https://events.pagerduty.com/v2/enqueue"


def test_a_file_of_before_channels_is_one_webhook_channel_and_still_posts(tmp_path: Path) -> None:
    cfg = load_notifications(_write(tmp_path, LEGACY), environ={})
    assert cfg.channel_specs() == [
        WebhookChannel(name="webhook", kind="webhook", url_env="TRIAGE24_NOTIFY_WEBHOOK_URL")
    ]
    with receiver("/hook") as hook:
        n = Notifier(cfg, environ={"TRIAGE24_NOTIFY_WEBHOOK_URL": hook.url}, root=tmp_path / "a")
        result = n.notify({"incident_id": "incident__1", "target": "testbed", "grade": "L2"}, "opened")
        assert result.delivery is Delivery.SENT and result.reason == "posted (HTTP 200)"
        assert set(hook.bodies[0]) == {"text", "blocks"}
    off = Notifier(cfg, environ={}, root=tmp_path / "b").notify({"incident_id": "incident__1"}, "opened")
    assert off.delivery is Delivery.DISABLED and off.reason == "TRIAGE24_NOTIFY_WEBHOOK_URL is not set"


@pytest.mark.parametrize(
    ("channels", "field", "expect", "line_of"),
    [
        (
            "    - {name: chat, kind: teams, url_env: X}\n",
            "notifications.channels[0].kind",
            "'webhook', 'apprise', 'pagerduty'",
            "kind: teams",
        ),
        (
            "    - name: chat\n      kind: apprise\n",
            "notifications.channels[0].apprise",
            "names no secret: set connection_id (an Airflow Connection) and/or url_env",
            "name: chat",
        ),
        (
            "    - name: pager\n      kind: pagerduty\n      url_env: PD_KEY\n",
            "notifications.channels[0].pagerduty.url_env",
            "unknown field",
            "name: pager",
        ),
        (
            "    - name: pager\n      kind: pagerduty\n      routing_key_env: PD\n"
            "      trigger_on: [opened, closed]\n",
            "notifications.channels[0].pagerduty",
            "closed both trigger and resolve: keep each state in one list",
            "name: pager",
        ),
        (
            "    - name: pager\n      kind: pagerduty\n      routing_key_env: PD\n"
            "      events_url: events.pd\n",
            "notifications.channels[0].pagerduty.events_url",
            "should match pattern",
            "name: pager",
        ),
        (
            "    - {name: a, kind: webhook, url_env: A}\n    - {name: a, kind: apprise, url_env: B}\n",
            "notifications",
            "channel names must be unique; a is used more than once",
            "notifications:",
        ),
        (
            "    - {name: a, kind: webhook, url_env: A, states: [opened, decided]}\n",
            "notifications",
            "channel 'a' takes decided, not in notifications.states: it would never be sent",
            "notifications:",
        ),
        (
            "    - {name: a, kind: webhook, url_env: A, min_grade: L1}\n",
            "notifications",
            "min_grade L1 is below notifications.min_grade L2",
            "notifications:",
        ),
        (
            "    - {name: Chat Room, kind: webhook, url_env: A}\n",
            "notifications.channels[0].webhook.name",
            "should match pattern",
            "name: Chat Room",
        ),
    ],
)
def test_channel_mistakes_name_file_line_field_and_fix(
    tmp_path: Path, channels: str, field: str, expect: str, line_of: str
) -> None:
    d = _write(tmp_path, HEAD + channels)
    with pytest.raises(RunbookError) as exc:
        load_notifications(d, environ={})
    (problem,) = exc.value.problems
    assert problem.file == d / "notifications.yaml"
    assert (problem.field, expect in problem.message) == (field, True), problem.message
    lines = (d / "notifications.yaml").read_text().splitlines()
    assert problem.line == next(i for i, text in enumerate(lines, 1) if line_of in text)


def test_url_env_and_channels_together_or_neither_is_refused(tmp_path: Path) -> None:
    both = HEAD.replace("  min_grade: L2\n", "  min_grade: L2\n  url_env: HOOK\n")
    with pytest.raises(RunbookError) as exc:
        load_notifications(
            _write(tmp_path, both + "    - {name: a, kind: apprise, url_env: A}\n"), environ={}
        )
    assert "url_env and channels both given: list the webhook as a channel" in str(exc.value)
    neither = "version: 1\nnotifications:\n  min_grade: L2\n"
    with pytest.raises(RunbookError) as exc:
        load_notifications(_write(tmp_path, neither), environ={})
    assert "no channel: list channels (webhook, apprise, pagerduty), or give url_env" in str(exc.value)
