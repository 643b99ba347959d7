"""The incident DAG's ``conf``, as one versioned, typed model: what the intake (and the regression watch,
through the intake) writes, and what every task of the run reads back.

Two shapes arrive at a run: the alert group the intake sends (:class:`IncidentConf`, ``schema:
triage24.intake/v1``) and the form an engineer fills in the Airflow UI (:class:`ManualConf`: target,
window, dry run). :func:`parse_conf` tells them apart by ``schema`` and names the field and the fix
when either is wrong. A new conf version is a new ``schema`` value and a new model beside this one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

INTAKE_SCHEMA = "triage24.intake/v1"

DEFAULT_WINDOW_MINUTES = 15.0
MAX_WINDOW_MINUTES = 120.0  # the golden window: evidence older than 2 h is not phase-1 evidence


class ConfError(ValueError):
    """The run's conf cannot describe an incident; the message names the field and the fix."""


class _RunOptions(BaseModel):
    """What the trigger form's Params add to either shape (the DAG merges them in)."""

    # Alertmanager and older intakes may add keys; the run must still start (extra keys are kept).
    model_config = ConfigDict(extra="allow", frozen=True)

    window_minutes: float = DEFAULT_WINDOW_MINUTES
    dry_run: bool = False
    target: str | None = None
    version: str | None = None

    @field_validator("window_minutes", mode="before")
    @classmethod
    def _minutes(cls, value: object) -> float:
        try:
            minutes = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"expected a number of minutes, got {value!r}") from None
        if not 1 <= minutes <= MAX_WINDOW_MINUTES:
            raise ValueError(f"must be between 1 and {MAX_WINDOW_MINUTES:g} (got {minutes:g})")
        return minutes

    @field_validator("dry_run", mode="before")
    @classmethod
    def _dry_run(cls, value: object) -> bool:
        if not isinstance(value, bool):  # "yes" or 1 must not silently mean a real rollback
            raise ValueError(f"expected true or false, got {value!r}")
        return value

    @field_validator("target", "version", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return value or None


class ConfAlert(BaseModel):
    """One alert of the group, as the intake normalised it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    starts_at: str
    ends_at: str | None = None
    generator_url: str = ""
    fingerprint: str = ""

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


class IncidentConf(_RunOptions):
    """The normalised alert group the intake writes (one definition; the intake builds exactly this)."""

    schema_: Literal["triage24.intake/v1"] = Field(default="triage24.intake/v1", alias="schema")
    source: Literal["alertmanager"] = "alertmanager"
    group_key: str = ""
    receiver: str = ""
    status: Literal["firing", "resolved"] = "firing"
    external_url: str = ""
    group_labels: dict[str, str] = {}
    common_labels: dict[str, str] = {}
    common_annotations: dict[str, str] = {}
    alerts: list[ConfAlert] = []
    fingerprints: list[str] = []
    truncated_alerts: int = 0
    grade: str | None = None
    grade_rule: str | None = None
    grade_title: str | None = None
    escalated: bool = False
    escalation_rule: str | None = None
    escalation_reason: str | None = None
    delivery_id: int | None = None
    received_at: str | None = None
    # A re-evaluation run (new evidence at an open incident): the run it supersedes and why. Optional,
    # so v1 stays v1: a run without them is the incident's first.
    reevaluates: str | None = None
    reevaluation_reason: str | None = None

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    @property
    def firing(self) -> list[ConfAlert]:
        return [a for a in self.alerts if a.status == "firing"]

    def as_conf(self) -> dict[str, Any]:
        """The JSON the DAG run is created with (``schema`` under its wire name). The form's options
        are left out unless set, so the trigger form's Params keep their own defaults."""
        unset = {k for k in _RunOptions.model_fields if k not in self.model_fields_set} - {
            "target",
            "version",
        }
        return self.model_dump(mode="json", by_alias=True, exclude=unset)


class ManualConf(_RunOptions):
    """A manual investigation from the trigger form (or the CLI)."""

    alert_started_at: str | None = None


def _field_error(exc: ValidationError) -> ConfError:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "conf"
    if field == "schema_":
        field = "schema"
    if first["type"] == "value_error":  # our validators' messages already say what was wrong
        return ConfError(f"{field}: {first['ctx']['error']}")
    return ConfError(f"{field}: {first['msg']} (got {first.get('input')!r})")


def parse_conf(conf: dict[str, Any] | None) -> IncidentConf | ManualConf:
    """The typed conf of a run: the intake's alert group when it says ``schema``, else the form."""
    raw = dict(conf or {})
    schema = raw.get("schema")
    if schema is not None and schema != INTAKE_SCHEMA:
        raise ConfError(f"schema: unknown conf schema {schema!r}; expected {INTAKE_SCHEMA!r}")
    try:
        return IncidentConf.model_validate(raw) if schema else ManualConf.model_validate(raw)
    except ValidationError as exc:
        raise _field_error(exc) from None
