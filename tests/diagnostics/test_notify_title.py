"""The notification names the incident by its title (target version · alert), as the Incidents view
and the run's note do; a caller that hands only an id and a target gets the target, as before."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from diagnostics.incident.model import incident_from_conf
from diagnostics.notify import Delivery, Notifier, message
from tests.support.http import canned_server

NOW = datetime(2026, 12, 1, 8, 57, tzinfo=UTC)
CONF = {
    "schema": "triage24.intake/v1",
    "target": "testbed",
    "version": "canary",
    "grade": "L2",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "Http5xxBurst", "target": "testbed", "version": "canary"},
            "starts_at": "2026-12-01T08:56:51Z",
            "fingerprint": "a1",
        }
    ],
}


def _header(body: dict[str, object]) -> str:
    blocks = body["blocks"]
    assert isinstance(blocks, list)
    return str(blocks[0]["text"]["text"])


def test_the_header_and_the_fallback_text_carry_the_incident_title() -> None:
    incident = incident_from_conf("incident__testbed-canary__a1", CONF, now=NOW)
    body = message(incident, "opened", summary="testbed: Http5xxBurst", at=NOW)
    assert _header(body) == ":rotating_light: [L2] incident opened: testbed canary · Http5xxBurst"
    assert str(body["text"]).startswith(
        ":rotating_light: [L2] incident opened: testbed canary · Http5xxBurst (incident__testbed-canary__a1)"
    )
    as_dict = message(incident.model_dump(mode="json"), "decided", at=NOW)
    assert _header(as_dict) == ":scales: [L2] decision made: testbed canary · Http5xxBurst"


def test_without_the_alerts_the_header_names_the_target() -> None:
    body = message({"incident_id": "incident__x__1", "target": "testbed", "grade": "L3"}, "closed", at=NOW)
    assert _header(body) == ":lock: [L3] incident closed: testbed"


def test_pii_in_an_alert_name_is_masked_in_the_title() -> None:
    incident = {
        "incident_id": "incident__x__1",
        "target": "testbed",
        "alert_names": ["Leak jane.doe@example.com"],
    }
    body = message(incident, "opened", at=NOW)
    assert "jane.doe@example.com" not in _header(body) and "jane.doe@example.com" not in str(body["text"])
    assert _header(body).startswith(":rotating_light: [ungraded] incident opened: testbed · Leak ")


def test_what_the_notifier_posts_carries_the_title_of_the_incident_it_was_given(tmp_path: Path) -> None:
    # Notifier.notify hands message() the incident itself: a view of it without the alerts would
    # lose the title and fall back to the target.
    from tests.diagnostics.test_notify import ENV, FAST, HOOK, Receiver

    rec = Receiver()
    with canned_server({("POST", HOOK): rec.answer}) as srv:
        rec.server = srv
        n = Notifier(FAST, environ={ENV: rec.url}, root=tmp_path)
        incident = incident_from_conf("incident__testbed-canary__a1", CONF, now=NOW)
        assert n.notify(incident, "opened").delivery is Delivery.SENT
    (body,) = rec.bodies
    assert _header(body) == ":rotating_light: [L2] incident opened: testbed canary · Http5xxBurst"
