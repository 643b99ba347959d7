"""The run's note opens with the incident's title (target version · alert), the same one the Incidents
view and the notifications show, and keeps it when a group joins."""

from __future__ import annotations

from diagnostics.intake.payload import validate
from diagnostics.intake.service import IntakeService
from tests.diagnostics.intake.conftest import Clock, MemoryBackend, body, model_not_loaded, real_payload


def test_the_note_opens_with_the_incident_title(service: IntakeService, backend: MemoryBackend) -> None:
    payload = real_payload("firing")
    out = service.handle(validate(payload), body(payload))
    run = backend.runs[out.run_id or ""]
    first, second = run.note.split("\n\n")[:2]
    assert first == "**testbed canary · CanaryGate5xx**"
    assert second.startswith("**L3**"), "the grade follows the title"


def test_a_joined_group_keeps_the_title_of_the_alert_that_opened_it(
    service: IntakeService, backend: MemoryBackend, clock: Clock
) -> None:
    opened = real_payload("firing")
    out = service.handle(validate(opened), body(opened))
    clock.advance(30)
    joined = model_not_loaded(clock.now - 10)
    service.handle(validate(joined), body(joined))
    (run,) = backend.runs.values()
    assert run.run_id == out.run_id
    assert run.note.startswith("**testbed canary · CanaryGate5xx**\n\n")
    assert "joined by 1 group(s)" in run.note
