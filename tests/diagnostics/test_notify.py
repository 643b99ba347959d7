"""Notifications against a real HTTP receiver on loopback (tests/support/http.py): one message per
state change, duplicates suppressed by the ledger, the severity filter, retries then a recorded
failure (never an exception), no PII and no webhook URL anywhere it should not be."""

from __future__ import annotations

import json
import logging
import random
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from diagnostics.incident.model import Incident
from diagnostics.notify import Delivery, IncidentState, Notifier, load_notifications, message, notify
from diagnostics.runbooks import RunbookError
from diagnostics.runbooks.grading import GradeId
from diagnostics.runbooks.notifications import NotificationSettings
from testbed.faults import make_pii
from tests.conftest import REPO, free_port
from tests.support.http import Canned, CannedServer, Recorded, canned_server

ENV = "TRIAGE24_NOTIFY_WEBHOOK_URL"
HOOK = "/services/T000/B000/secret-token-9f8e7d"
BASE = load_notifications(REPO / "runbooks", environ={})
FAST = BASE.model_copy(update={"backoff_s": 0.05, "max_backoff_s": 0.2, "timeout_s": 2.0, "retries": 2})


def incident(
    grade: str | None = "L3", incident_id: str = "incident__testbed-canary__0a1b2c"
) -> dict[str, object]:
    return {"incident_id": incident_id, "target": "testbed", "grade": grade, "source": "alertmanager"}


class Receiver:
    """Answers each POST with the next status of ``script`` (then 200), and records the bodies."""

    def __init__(self) -> None:
        self.script: list[int] = []
        self.lock = threading.Lock()
        self.server: CannedServer | None = None

    def answer(self, req: Recorded) -> Canned:
        with self.lock:
            status = self.script.pop(0) if self.script else 200
        if status == 429:
            return Canned(status, "slow down", {"Retry-After": "0"})
        return Canned(status, {"ok": status < 300})

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url + HOOK

    @property
    def bodies(self) -> list[dict[str, object]]:
        assert self.server is not None
        return [json.loads(r.body) for r in self.server.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    with canned_server({("POST", HOOK): rec.answer}) as srv:
        rec.server = srv
        yield rec


def notifier(
    receiver: Receiver | None, root: Path, settings: NotificationSettings = FAST, **kw: object
) -> Notifier:
    env = {ENV: receiver.url} if receiver is not None else {}
    return Notifier(settings, environ=env, root=root, **kw)  # type: ignore[arg-type]


def test_one_slack_message_per_state_change(receiver: Receiver, tmp_path: Path) -> None:
    n = notifier(receiver, tmp_path)
    states = list(IncidentState)
    for state in states:
        result = n.notify(incident(), state, summary=f"{state.value} happened", details={"rule": "x"})
        assert result.delivery is Delivery.SENT and result.attempts == 1 and result.status_code == 200
    bodies = receiver.bodies
    assert len(bodies) == len(states)
    for state, body in zip(states, bodies, strict=True):
        assert set(body) == {"text", "blocks"}
        blocks = body["blocks"]
        assert isinstance(blocks, list) and [b["type"] for b in blocks] == [
            "header",
            "section",
            "section",
            "context",
        ]
        assert blocks[0]["text"]["type"] == "plain_text" and "[L3]" in blocks[0]["text"]["text"]
        assert f"{state.value} happened" in str(body["text"])
        assert {"type": "mrkdwn", "text": f"*state*\n{state.value}"} in blocks[2]["fields"]
        assert "incident__testbed-canary__0a1b2c" in blocks[3]["elements"][0]["text"]
    ledger = json.loads(
        (tmp_path / "incident__testbed-canary__0a1b2c" / "notifications" / "ledger.json").read_text()
    )
    assert set(ledger["states"]) == {s.value for s in states}
    assert all(e["delivery"] == "sent" and e["attempts"] == 1 for e in ledger["states"].values())


def test_a_repeated_state_change_is_a_no_op_even_from_another_process(
    receiver: Receiver, tmp_path: Path
) -> None:
    first = notifier(receiver, tmp_path).notify(incident(), "opened")
    again = notifier(receiver, tmp_path).notify(incident(), IncidentState.OPENED)  # a task retry
    assert (first.delivery, again.delivery) == (Delivery.SENT, Delivery.DUPLICATE)
    assert "already sent" in again.reason
    other = notifier(receiver, tmp_path).notify(incident(incident_id="incident__other"), "opened")
    assert other.delivery is Delivery.SENT  # per incident
    assert len(receiver.bodies) == 2


def test_concurrent_calls_for_one_state_post_once(receiver: Receiver, tmp_path: Path) -> None:
    results: list[Delivery] = []

    def go() -> None:
        results.append(notifier(receiver, tmp_path).notify(incident(), "decided").delivery)

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted([Delivery.SENT] + [Delivery.DUPLICATE] * 5)
    assert len(receiver.bodies) == 1


def test_the_severity_filter(receiver: Receiver, tmp_path: Path) -> None:
    strict = FAST.model_copy(update={"min_grade": GradeId.L3, "ungraded": "skip"})
    n = notifier(receiver, tmp_path, strict)
    below = n.notify(incident("L2"), "opened")
    assert below.delivery is Delivery.FILTERED and "below notifications.min_grade L3" in below.reason
    assert n.notify(incident(None, "manual__1"), "opened").delivery is Delivery.FILTERED
    assert n.notify(incident("L5", "incident__odd"), "opened").delivery is Delivery.FILTERED
    assert n.notify(incident("L3", "incident__a"), "opened").delivery is Delivery.SENT
    assert n.notify(incident("L4", "incident__b"), "opened").delivery is Delivery.SENT
    assert len(receiver.bodies) == 2
    assert not (tmp_path / "incident__testbed-canary__0a1b2c").exists()  # filtered: no ledger
    # the repo's policy: L1 stays out, ungraded (manual investigations) goes in
    n = notifier(receiver, tmp_path, BASE)
    assert n.notify(incident("L1", "incident__c"), "opened").delivery is Delivery.FILTERED
    assert n.notify(incident(None, "manual__2"), "opened").delivery is Delivery.SENT
    only_open = FAST.model_copy(update={"states": [IncidentState.OPENED]})
    closed = notifier(receiver, tmp_path, only_open).notify(incident("L4", "incident__d"), "closed")
    assert closed.delivery is Delivery.FILTERED and "not in notifications.states" in closed.reason


def test_5xx_is_retried_with_backoff_then_given_up_and_recorded(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    waits: list[float] = []
    receiver.script = [503, 500, 502]
    n = notifier(receiver, tmp_path, sleep=waits.append)
    with caplog.at_level(logging.INFO, logger="triage24.notify"):
        result = n.notify(incident(), "rolled_back", summary="weight 10 -> 0")
    assert result.delivery is Delivery.FAILED and result.attempts == 3 and result.status_code == 502
    assert result.error is not None and result.error.startswith("HTTP 502")
    assert waits == [0.05, 0.1]  # doubled per retry; none after the last attempt
    assert len(receiver.bodies) == 3
    path = tmp_path / "incident__testbed-canary__0a1b2c" / "notifications" / "ledger.json"
    entry = json.loads(path.read_text())["states"]["rolled_back"]
    assert (entry["delivery"], entry["attempts"], entry["status_code"]) == ("failed", 3, 502)
    # the receiver is back: a failed state is tried again (it was never delivered), then it is done
    later = n.notify(incident(), "rolled_back", summary="weight 10 -> 0")
    assert later.delivery is Delivery.SENT
    entry = json.loads(path.read_text())["states"]["rolled_back"]
    assert (entry["delivery"], entry["attempts"], entry["status_code"]) == ("sent", 4, 200)
    assert n.notify(incident(), "rolled_back").delivery is Delivery.DUPLICATE
    assert len(receiver.bodies) == 4
    for text in [r.getMessage() for r in caplog.records] + [path.read_text()]:
        assert HOOK not in text and "secret-token" not in text


def test_a_retry_that_succeeds_is_sent_and_429_honours_retry_after(
    receiver: Receiver, tmp_path: Path
) -> None:
    waits: list[float] = []
    receiver.script = [500, 429]
    result = notifier(receiver, tmp_path, sleep=waits.append).notify(incident(), "opened")
    assert (result.delivery, result.attempts) == (Delivery.SENT, 3)
    assert waits == [0.05, 0.0]  # the 429's Retry-After: 0


def test_a_4xx_is_not_retried(receiver: Receiver, tmp_path: Path) -> None:
    receiver.script = [404]
    result = notifier(receiver, tmp_path, sleep=lambda s: None).notify(incident(), "opened")
    assert (result.delivery, result.attempts, result.status_code) == (Delivery.FAILED, 1, 404)


def test_an_unreachable_receiver_never_raises(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}{HOOK}"
    waits: list[float] = []
    n = Notifier(FAST, environ={ENV: url}, root=tmp_path, sleep=waits.append)
    result = n.notify(incident(), "overdue", summary="phase 1 deadline (2 h) passed")
    assert result.delivery is Delivery.FAILED and result.attempts == 3 and result.status_code is None
    assert result.error is not None and result.error.startswith("ConnectError")
    assert HOOK not in result.model_dump_json() and len(waits) == 2
    ledger = (tmp_path / "incident__testbed-canary__0a1b2c" / "notifications" / "ledger.json").read_text()
    assert json.loads(ledger)["states"]["overdue"]["delivery"] == "failed" and HOOK not in ledger


def test_a_slow_receiver_times_out_within_the_budget(tmp_path: Path) -> None:
    with canned_server({("POST", HOOK): Canned(200, {}, delay_s=1.0)}) as srv:
        cfg = FAST.model_copy(update={"timeout_s": 0.2, "retries": 1})
        result = Notifier(cfg, environ={ENV: srv.url + HOOK}, root=tmp_path, sleep=lambda s: None).notify(
            incident(), "opened"
        )
    assert result.delivery is Delivery.FAILED and result.error is not None and "Timeout" in result.error


def test_no_pii_in_the_posted_body(receiver: Receiver, tmp_path: Path) -> None:
    n = notifier(receiver, tmp_path)
    samples = [make_pii(random.Random(seed)) for seed in range(20)]
    for i, s in enumerate(samples):
        n.notify(
            incident(incident_id=f"incident__pii{i}"),
            "decided",
            summary=f"rollback: caller profile: {s.as_text()} from 10.0.0.{i + 1}",
            details={"caller": s.email, "phone": s.cn_phone, s.intl_phone: "key with PII"},
        )
    raw = b"".join(r.body for r in receiver.server.requests).decode()  # type: ignore[union-attr]
    bodies = receiver.bodies
    assert len(bodies) == len(samples)
    for s in samples:
        for value in (s.cn_phone, s.intl_phone, s.cn_id, s.email, s.card):
            assert value not in raw
    text = str(bodies[0]["text"])
    assert "phone=[phone] alt_phone=[phone] id_card=[id_card] email=[email] card=[card] from [ip]" in text
    ledgers = "".join(p.read_text() for p in tmp_path.rglob("ledger.json"))
    assert "@" not in ledgers and samples[0].card not in ledgers


def test_no_webhook_url_disables_quietly_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import diagnostics.notify as mod

    mod._disabled_logged.clear()
    with caplog.at_level(logging.INFO, logger="triage24.notify"):
        first = notify(incident(), "opened", settings=FAST, environ={}, root=tmp_path)
        second = notify(incident(), "closed", settings=FAST, environ={ENV: "  "}, root=tmp_path)
    assert first.delivery is second.delivery is Delivery.DISABLED
    assert [r.getMessage() for r in caplog.records] == [
        "notifications are off: "
        f"webhook: Connection triage24_notify_webhook and {ENV} are not set; "
        "chat: Connection triage24_apprise and TRIAGE24_NOTIFY_APPRISE_URLS are not set; "
        "pager: Connection triage24_pagerduty and TRIAGE24_PAGERDUTY_ROUTING_KEY are not set"
    ]
    assert not any(tmp_path.iterdir())


def test_notify_takes_the_incident_model_and_refuses_unknown_states(
    receiver: Receiver, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    inc = Incident(
        incident_id="manual__2026-12-01T09:10:00+00:00",
        target="testbed",
        source="manual",
        alert_started_at=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        analysed_at=datetime(2026, 12, 1, 9, 10, tzinfo=UTC),
        window_s=900,
    )
    result = notify(inc, "opened", settings=FAST, environ={ENV: receiver.url}, root=tmp_path)
    assert result.delivery is Delivery.SENT
    assert "[ungraded]" in str(receiver.bodies[0]["text"])
    with pytest.raises(ValueError, match=r"state: 'exploded' is not an incident state; use one of: opened"):
        notify(inc, "exploded", settings=FAST, environ={ENV: receiver.url}, root=tmp_path)


def test_a_damaged_ledger_is_kept_aside_and_does_not_silence_the_channel(
    receiver: Receiver, tmp_path: Path
) -> None:
    path = tmp_path / "incident__testbed-canary__0a1b2c" / "notifications" / "ledger.json"
    path.parent.mkdir(parents=True)
    path.write_text("{half a ledger")
    assert notifier(receiver, tmp_path).notify(incident(), "opened").delivery is Delivery.SENT
    assert path.with_suffix(".damaged").read_text() == "{half a ledger"
    assert json.loads(path.read_text())["states"]["opened"]["delivery"] == "sent"
    assert [
        p.name for p in path.parent.iterdir() if p.name.startswith(".ledger.json")
    ] == []  # no temp file left


def test_message_is_pure_and_cut_to_slack_limits() -> None:
    body = message(
        incident("L4"),
        "closed",
        summary="x" * 5000,
        details={f"k{i}": i for i in range(20)},
        link="http://127.0.0.1:8080/dags/incident_response/runs/r1",
    )
    blocks = body["blocks"]
    assert len(blocks[0]["text"]["text"]) <= 150 and len(blocks[1]["text"]["text"]) == 3000
    assert len(blocks[2]["fields"]) == 10
    assert (
        "<http://127.0.0.1:8080/dags/incident_response/runs/r1|open in Airflow>"
        in blocks[3]["elements"][0]["text"]
    )


@pytest.fixture
def books(tmp_path: Path) -> Path:
    d = tmp_path / "runbooks"
    shutil.copytree(REPO / "runbooks", d)
    return d


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("old", "new", "field", "expect"),
    [
        (
            "  min_grade: L2 ",
            "  min_grade: L5 ",
            "notifications.min_grade",
            "'L1', 'L2', 'L3' or 'L4' (got 'L5')",
        ),
        ("  retries: 3 ", "  retries: 50 ", "notifications.retries", "less than or equal to 10"),
        ("rolled_back, recovered", "rolledback, recovered", "notifications.states[2]", "'rolled_back'"),
        ("  timeout_s: 5 ", "  timeout: 5 ", "notifications.timeout", "unknown field"),
    ],
)
def test_notifications_yaml_errors_name_file_line_and_fix(
    books: Path, old: str, new: str, field: str, expect: str
) -> None:
    path = books / "notifications.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(RunbookError) as exc:
        load_notifications(books, environ={})
    (problem,) = exc.value.problems
    assert problem.file == path and problem.field == field and expect in problem.message
    assert problem.line == _line_of(path, new.strip())
