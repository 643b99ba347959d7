"""Each notification channel against a real receiver on loopback (tests/support/notify_receiver.py):
what it sends (the Slack body, Apprise's JSON and form bodies, PagerDuty Events v2), retries with
tenacity (503 twice then 2xx: delivered on the third try; a 429's Retry-After honoured and capped),
final answers, a dead receiver recorded as failed without raising, and no secret in any text."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from diagnostics.notify import Delivery, Notifier, load_notifications, message
from diagnostics.notify_channels import (
    AppriseSender,
    Channel,
    IncidentInfo,
    PagerDutyEvents,
    RetryPolicy,
    Secret,
    WebhookPoster,
    build_channels,
    dedup_key,
    env_secrets,
    redactor,
    secret_source,
    use_secret_source,
)
from diagnostics.runbooks.notifications import (
    AppriseChannel,
    IncidentState,
    PagerDutyChannel,
    WebhookChannel,
)
from testbed.faults import make_pii
from tests.conftest import REPO, free_port
from tests.support.notify_receiver import Receiver, receiver

TOKEN = "secret-token-9f8e7d6c"
HOOK = f"/services/T000/B000/{TOKEN}"
ROUTING_KEY = "R0UTINGKEY0123456789abcdef012345"
POLICY = RetryPolicy(timeout_s=2.0, retries=2, backoff_s=0.05, max_backoff_s=0.2)
INC = {"incident_id": "incident__testbed-canary__0a1b2c", "target": "testbed", "grade": "L3"}
INFO = IncidentInfo("incident__testbed-canary__0a1b2c", "testbed", "L3")


def body(state: str = "opened", summary: str = "gateway 5xx at 12%") -> dict[str, object]:
    return message(INC, state, summary, details={"rule": "canary_5xx"})


def webhook(url: str, waits: list[float]) -> WebhookPoster:
    spec = WebhookChannel(name="webhook", kind="webhook", url_env="X")
    return WebhookPoster(spec, Secret((url,), "X"), POLICY, waits.append)


def apprise_to(urls: list[str], waits: list[float]) -> AppriseSender:
    spec = AppriseChannel(name="chat", kind="apprise", url_env="X")
    return AppriseSender(spec, Secret(tuple(urls), "X"), POLICY, waits.append)


def pagerduty(url: str, waits: list[float], **spec: object) -> PagerDutyEvents:
    ch = PagerDutyChannel(name="pager", kind="pagerduty", routing_key_env="X", events_url=url, **spec)  # type: ignore[arg-type]
    return PagerDutyEvents(ch, Secret((ROUTING_KEY,), "X"), POLICY, waits.append)


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver(HOOK, retry_after="0.15") as rec:
        yield rec


@pytest.fixture
def events() -> Iterator[Receiver]:
    with receiver("/v2/enqueue", ok=202, retry_after="0.15") as rec:
        yield rec


# --- retries, the same for every channel ----------------------------------------------------------

Factory = Callable[[Receiver, list[float]], Channel]
KINDS: dict[str, tuple[str, Factory]] = {
    "webhook": (HOOK, lambda r, w: webhook(r.url, w)),
    "apprise": (f"/hook/{TOKEN}", lambda r, w: apprise_to([f"json://{r.hostport}/hook/{TOKEN}"], w)),
    "pagerduty": ("/v2/enqueue", lambda r, w: pagerduty(r.url, w)),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_503_twice_then_ok_is_delivered_on_the_third_try_with_backoff(kind: str) -> None:
    path, make = KINDS[kind]
    waits: list[float] = []
    with receiver(path, ok=202 if kind == "pagerduty" else 200) as rec:
        rec.script = [503, 503]
        outcome = make(rec, waits).send(body(), INFO, IncidentState.OPENED)
        assert len(rec.requests) == 3
        assert rec.requests[0].body == rec.requests[2].body  # the same message, asked again
    assert outcome.delivered and outcome.attempts == 3 and outcome.error is None
    assert waits == [0.05, 0.1]  # backoff_s, doubled; none after the last try


@pytest.mark.parametrize("kind", list(KINDS))
def test_always_503_is_given_up_after_retries_and_never_raises(kind: str) -> None:
    path, make = KINDS[kind]
    waits: list[float] = []
    with receiver(path) as rec:
        rec.script = [503, 503, 503, 503]
        outcome = make(rec, waits).send(body(), INFO, IncidentState.OPENED)
        assert len(rec.requests) == 3
    assert not outcome.delivered and outcome.attempts == 3 and outcome.status_code == 503
    assert outcome.error is not None and "503" in outcome.error and TOKEN not in outcome.error


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_dead_receiver_is_a_failure_without_the_secret(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    path, make = KINDS[kind]
    dead = Receiver(path)
    dead.server = type("Dead", (), {"url": f"http://127.0.0.1:{free_port()}", "requests": []})()  # type: ignore[assignment]
    waits: list[float] = []
    with caplog.at_level(logging.DEBUG):
        outcome = make(dead, waits).send(body(), INFO, IncidentState.OPENED)
    assert not outcome.delivered and outcome.attempts == 3 and outcome.status_code is None
    assert len(waits) == 2
    assert outcome.error is not None and TOKEN not in outcome.error
    assert not [r for r in caplog.records if TOKEN in r.getMessage() or ROUTING_KEY in r.getMessage()]


@pytest.mark.parametrize("kind", ["webhook", "pagerduty"])
def test_429_retry_after_is_honoured_and_capped(kind: str) -> None:
    path, make = KINDS[kind]
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    # seconds, a fraction, or an HTTP date (the one parser: diagnostics.sources.retry.retry_after_s)
    for retry_after, expected in (("0.15", [0.15, 0.15]), ("60", [0.2, 0.2]), (in_a_minute, [0.2, 0.2])):
        waits: list[float] = []
        with receiver(path, ok=202, retry_after=retry_after) as rec:
            rec.script = [429, 429]
            outcome = make(rec, waits).send(body(), INFO, IncidentState.OPENED)
        assert outcome.delivered and outcome.attempts == 3
        assert waits == expected  # Retry-After, never more than max_backoff_s


@pytest.mark.parametrize("kind", ["webhook", "pagerduty"])
def test_a_4xx_is_final(kind: str) -> None:
    path, make = KINDS[kind]
    with receiver(path) as rec:
        rec.script = [400]
        outcome = make(rec, []).send(body(), INFO, IncidentState.OPENED)
        assert len(rec.requests) == 1
    assert (outcome.delivered, outcome.attempts, outcome.status_code) == (False, 1, 400)


# --- what each channel sends ------------------------------------------------------------------------


def test_the_webhook_posts_the_slack_body_as_is(hook: Receiver) -> None:
    sent = body("decided", "rollback (canary_5xx)")
    outcome = webhook(hook.url, []).send(sent, INFO, IncidentState.DECIDED)
    assert outcome.delivered and outcome.detail == "posted (HTTP 200)"
    assert hook.bodies == [sent]


def test_apprise_json_gets_the_title_and_markdown_with_the_state_as_its_type() -> None:
    with receiver(f"/hook/{TOKEN}") as rec:
        ch = apprise_to([f"json://{rec.hostport}/hook/{TOKEN}"], [])
        assert ch.send(
            body("escalated", "still 5xx after the rollback"), INFO, IncidentState.ESCALATED
        ).delivered
        assert ch.send(body("recovered", "back to SLA"), INFO, IncidentState.RECOVERED).delivered
        first, second = rec.bodies
    assert first["title"].startswith(":sos: [L3] escalated: a human is needed now: testbed")
    assert first["message"].startswith("still 5xx after the rollback")
    assert "**grade**: L3" in first["message"] and "**rule**: canary_5xx" in first["message"]
    assert "incident `incident__testbed-canary__0a1b2c`" in first["message"]
    assert (first["type"], second["type"]) == ("failure", "success")


def test_apprise_form_and_two_services_where_a_retry_goes_only_to_the_one_that_failed() -> None:
    waits: list[float] = []
    with receiver("/form/in") as form, receiver("/json/in") as js:
        js.script = [502]
        ch = apprise_to([f"form://{form.hostport}/form/in", f"json://{js.hostport}/json/in"], waits)
        outcome = ch.send(body(), INFO, IncidentState.OPENED)
        fields = parse_qs(form.requests[0].body.decode())
        assert len(form.requests) == 1 and len(js.requests) == 2  # the form service was not asked again
    assert outcome.delivered and outcome.attempts == 2 and waits == [0.05]
    assert fields["type"] == ["warning"] and fields["title"][0].startswith(":rotating_light: [L3]")


def test_apprise_url_it_cannot_read_fails_at_once_and_no_log_carries_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    waits: list[float] = []
    with caplog.at_level(logging.DEBUG):
        outcome = apprise_to([f"notaurl://{TOKEN}/x"], waits).send(body(), INFO, IncidentState.OPENED)
    assert not outcome.delivered and outcome.attempts == 1 and waits == []
    assert outcome.error == "apprise: URL(s) not understood (scheme notaurl)"
    messages = [r.getMessage() for r in caplog.records]
    assert any("Unparseable URL" in m for m in messages)  # apprise said it ...
    assert not [m for m in messages if TOKEN in m]  # ... without the token


def test_pagerduty_one_alert_per_incident_triggered_then_resolved(events: Receiver) -> None:
    ch = pagerduty(events.url, [])
    opened = ch.send(body("opened"), INFO, IncidentState.OPENED)
    escalated = ch.send(body("escalated", "still bad"), INFO, IncidentState.ESCALATED)
    recovered = ch.send(body("recovered", "back to SLA"), INFO, IncidentState.RECOVERED)
    assert [o.detail for o in (opened, escalated, recovered)] == [
        "trigger accepted (HTTP 202)",
        "trigger accepted (HTTP 202)",
        "resolve accepted (HTTP 202)",
    ]
    a, b, c = events.bodies
    assert {e["dedup_key"] for e in (a, b, c)} == {"triage24/incident__testbed-canary__0a1b2c"}
    assert [e["event_action"] for e in (a, b, c)] == ["trigger", "trigger", "resolve"]
    assert all(e["routing_key"] == ROUTING_KEY for e in (a, b, c))
    assert [e["payload"]["severity"] for e in (a, b, c)] == ["error", "critical", "error"]  # L3; a page
    assert a["payload"]["summary"].startswith(":rotating_light: [L3] incident opened: testbed")
    assert (a["payload"]["source"], a["payload"]["class"]) == ("testbed", "opened")
    assert a["payload"]["custom_details"]["rule"] == "canary_5xx"
    assert a["payload"]["custom_details"]["message"] == "gateway 5xx at 12%"


def test_pagerduty_severity_follows_the_grade_and_the_link_is_kept(events: Receiver) -> None:
    ch = pagerduty(events.url, [], severity={"L4": "critical", "ungraded": "info"})
    link = "http://airflow.example/dags/incident_response/runs/r1"
    for grade in ("L4", None, "L2"):
        info = IncidentInfo(f"incident__{grade}", "testbed", grade)
        sent = message({**INC, "incident_id": info.incident_id, "grade": grade}, "opened", "x", link=link)
        assert ch.send(sent, info, IncidentState.OPENED).delivered
    assert [e["payload"]["severity"] for e in events.bodies] == ["critical", "info", "warning"]
    assert events.bodies[0]["links"] == [{"href": link, "text": "open in Airflow"}]


def test_pagerduty_dedup_key_is_the_incident_unless_it_would_carry_pii_or_not_fit() -> None:
    assert dedup_key("incident__testbed__1") == "triage24/incident__testbed__1"
    with_phone = dedup_key("manual__13812345678")
    assert "13812345678" not in with_phone and with_phone == dedup_key("manual__13812345678")
    assert len(dedup_key("x" * 250)) == len("triage24/") + 40


# --- through the Notifier: every channel at once ----------------------------------------------------


@pytest.fixture
def three(tmp_path: Path) -> Iterator[tuple[Notifier, Receiver, Receiver, Receiver]]:
    with receiver(HOOK) as hook, receiver(f"/chat/{TOKEN}") as chat, receiver("/v2/enqueue", ok=202) as pd:
        env = {
            "TRIAGE24_NOTIFY_WEBHOOK_URL": hook.url,
            "TRIAGE24_NOTIFY_APPRISE_URLS": f"json://{chat.hostport}/chat/{TOKEN}",
            "TRIAGE24_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
            "TRIAGE24_PAGERDUTY_EVENTS_URL": pd.url,
        }
        settings = load_notifications(REPO / "runbooks", environ=env)
        fast = settings.model_copy(update={"backoff_s": 0.01, "max_backoff_s": 0.02, "retries": 1})
        yield Notifier(fast, environ=env, root=tmp_path), hook, chat, pd


def test_no_pii_reaches_any_channel(three: tuple[Notifier, Receiver, Receiver, Receiver]) -> None:
    n, hook, chat, pd = three
    samples = [make_pii(random.Random(seed)) for seed in range(8)]
    for i, s in enumerate(samples):
        result = n.notify(
            {**INC, "incident_id": f"incident__pii{i}"},
            "opened",
            summary=f"caller profile: {s.as_text()} from 10.0.0.{i + 1}",
            details={"caller": s.email, "phone": s.cn_phone, s.intl_phone: "key with PII"},
        )
        assert result.delivery is Delivery.SENT
        assert [c.channel for c in result.channels] == ["webhook", "chat", "pager"]
    for rec in (hook, chat, pd):
        assert len(rec.requests) == len(samples)
        for s in samples:
            for value in (s.cn_phone, s.intl_phone, s.cn_id, s.email, s.card, "10.0.0.1 "):
                assert value not in rec.raw
    assert "[phone]" in chat.raw and "[email]" in pd.raw and "[card]" in hook.raw


def test_secrets_appear_in_no_log_result_or_ledger(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    env = {
        "TRIAGE24_NOTIFY_WEBHOOK_URL": f"http://127.0.0.1:{port}{HOOK}",
        "TRIAGE24_NOTIFY_APPRISE_URLS": f"json://user:{TOKEN}@127.0.0.1:{port}/x, notaurl://{TOKEN}",
        "TRIAGE24_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "TRIAGE24_PAGERDUTY_EVENTS_URL": f"http://127.0.0.1:{port}/v2/enqueue",
    }
    settings = load_notifications(REPO / "runbooks", environ=env).model_copy(
        update={"backoff_s": 0.0, "retries": 1}
    )
    with caplog.at_level(logging.DEBUG):
        result = Notifier(settings, environ=env, root=tmp_path).notify(INC, "opened")
    assert result.delivery is Delivery.FAILED
    assert [c.delivery for c in result.channels] == [Delivery.FAILED] * 3
    ledger = next(tmp_path.rglob("ledger.json")).read_text()
    texts = [r.getMessage() for r in caplog.records] + [result.model_dump_json(), ledger]
    for secret in (TOKEN, ROUTING_KEY, HOOK):
        assert not [t for t in texts if secret in t], secret
    assert json.loads(ledger)["states"]["opened"]["channels"]["pager"]["attempts"] == 2


def test_redactor_hides_the_secret_and_its_token_parts() -> None:
    redact = redactor([f"https://user:pa55word-long@hooks.example.com{HOOK}?key=abcdef123456"])
    text = f"POST https://hooks.example.com{HOOK} failed; token {TOKEN}; key abcdef123456; pa55word-long"
    out = redact(text)
    assert TOKEN not in out and "abcdef123456" not in out and "pa55word-long" not in out
    assert out.startswith("POST https://<secret>") and "failed; token <secret>" in out


# --- where secrets come from --------------------------------------------------------------------


def test_environment_secrets_per_kind() -> None:
    env = {"A": " json://h/1 ,  form://h/2 ", "W": "https://h/x https://h/y", "K": "key1", "E": "  "}
    source = env_secrets(env)
    assert source(AppriseChannel(name="c", kind="apprise", url_env="A")).values == (
        "json://h/1",
        "form://h/2",
    )  # type: ignore[union-attr]
    assert source(WebhookChannel(name="w", kind="webhook", url_env="W")).values == ("https://h/x",)  # type: ignore[union-attr]
    assert source(PagerDutyChannel(name="p", kind="pagerduty", routing_key_env="K")).origin == "K"  # type: ignore[union-attr]
    assert source(WebhookChannel(name="w", kind="webhook", url_env="E")) is None
    assert source(WebhookChannel(name="w", kind="webhook", connection_id="c")) is None
    assert "key1" not in repr(source(PagerDutyChannel(name="p", kind="pagerduty", routing_key_env="K")))


def test_an_installed_source_is_used_unless_an_environment_is_given() -> None:
    seen: list[str] = []

    def source(spec: object) -> Secret | None:
        seen.append(getattr(spec, "name", ""))
        return Secret(("https://from-the-source",), "test source")

    use_secret_source(source)
    try:
        settings = load_notifications(REPO / "runbooks", environ={})
        channels, off = build_channels(settings, secret_source(), sleep=lambda s: None)
        assert [c.name for c in channels] == ["webhook", "chat", "pager"] and off == {}
        assert seen == ["webhook", "chat", "pager"]
        assert secret_source({})(settings.channel_specs()[0]) is None  # an explicit environment wins
    finally:
        use_secret_source(None)
    assert secret_source() is not source


def test_a_failing_source_turns_the_channel_off_naming_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    def broken(spec: object) -> Secret | None:
        raise RuntimeError(f"backend down, token {TOKEN}")

    settings = load_notifications(REPO / "runbooks", environ={})
    with caplog.at_level(logging.WARNING, logger="triage24.notify"):
        channels, off = build_channels(settings, broken, sleep=lambda s: None)
    assert channels == [] and set(off) == {"webhook", "chat", "pager"}
    assert off["pager"] == "Connection triage24_pagerduty and TRIAGE24_PAGERDUTY_ROUTING_KEY are not set"
    logged = [r.getMessage() for r in caplog.records]
    assert "notification channel webhook: secret lookup failed (RuntimeError)" in logged
    assert not [m for m in logged if TOKEN in m]
