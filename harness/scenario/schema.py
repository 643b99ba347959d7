"""The scenario format (``benchmarks/scenarios/*.yaml``; documented in ``benchmarks/README.md``).

A scenario says what to do to the local stack and what a correct pipeline concludes from it:

- ``traffic`` the runner sends through the gateway (rate, channel mix, duration), after setting the
  canary's ``start_weight``; ``warmup_s`` of it before anything breaks;
- ``faults`` injected through the testbed's admin API (name, version, channel, magnitude, when, how
  long), validated against the testbed's own fault catalogue;
- ``outages``: a dependency (Prometheus, Alertmanager, a testbed version) stopped or frozen for a while;
- ``trigger``: wait for the alert-driven incident run (``alert``), or open an investigation the way an
  on-call engineer does from the UI form (``manual``) where no alert rule can see the fault;
- ``human``: what the simulated on-call engineer answers when the run asks (the human gate);
- ``expect``: grade, suspected component and version, runbook problem, decision, whether a rollback
  must happen, recovery, no PII in artifacts, deadlines. Only what is given is scored.

Errors name ``file:line: field: what is expected`` (through :func:`load_yaml_model`).
"""

from __future__ import annotations

import dataclasses
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from diagnostics.incident.results import Status
from diagnostics.runbooks.decision import Outcome
from diagnostics.runbooks.grading import GradeId
from diagnostics.runbooks.loader import Problem, RunbookError, load_yaml_model
from diagnostics.runbooks.schemas import Channel, Component

SCHEMA_DOC = "benchmarks/README.md (schema: harness/scenario/schema.py)"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
Identifier = Annotated[str, Field(pattern=NAME_PATTERN.pattern)]
Seconds = Annotated[float, Field(ge=0, le=7200)]
Version = Literal["stable", "canary"]
DECISION_RULES = (
    "canary_gate_breach",
    "canary_watch_rejection",
    "critical_canary_finding",
    "bayesian_risk",
    "phase2_evidence",
    "insufficient_evidence",
    "continue",
)


class ScenarioError(RunbookError):
    """One or more scenario files do not match the format; ``problems`` name file, line and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Traffic(_Strict):
    """Golden-set requests the runner sends through the gateway for the whole scenario (warm-up included)."""

    rate: float = Field(gt=0, le=50, description="requests per second")
    mix: dict[Channel, Annotated[float, Field(ge=0)]] | None = Field(
        default=None, description="channel shares (normalised); default the generator's own mix"
    )
    duration_s: float | None = Field(
        default=None, gt=0, le=86400, description="stop sending after this; default: the whole scenario"
    )
    seed: int | None = None

    @field_validator("mix")
    @classmethod
    def _some_share(cls, mix: dict[Channel, float] | None) -> dict[Channel, float] | None:
        if mix is not None and sum(mix.values()) <= 0:
            raise ValueError("at least one channel needs a share > 0 (e.g. {text: 0.5, image: 0.5})")
        return mix

    def mix_arg(self) -> str | None:
        """The generator's ``--mix`` value."""
        if self.mix is None:
            return None
        return ",".join(f"{ch.value}={share:g}" for ch, share in self.mix.items())


class FaultStep(_Strict):
    """One fault of the testbed's catalogue (testbed/README.md), injected ``start_s`` after the warm-up."""

    name: str = Field(description="a testbed fault name, e.g. error_burst")
    version: Version = "canary"
    channel: str | None = Field(default=None, description="the fault's channel; default its own default")
    magnitude: float | None = Field(default=None, description="default: the fault's default magnitude")
    start_s: Seconds = 0.0
    duration_s: float | None = Field(
        default=None, gt=0, le=86400, description="the testbed expires it; default: until the scenario ends"
    )

    @model_validator(mode="after")
    def _known_to_the_testbed(self) -> Self:
        from testbed.faults import FaultError, validate_request

        try:
            validate_request(self.admin_body())
        except FaultError as exc:
            raise ValueError(str(exc)) from None
        return self

    def admin_body(self) -> dict[str, object]:
        """The ``POST /admin/faults`` body."""
        body: dict[str, object] = {"fault": self.name}
        if self.channel is not None:
            body["channel"] = self.channel
        if self.magnitude is not None:
            body["magnitude"] = self.magnitude
        if self.duration_s is not None:
            body["duration_s"] = self.duration_s
        return body

    def label(self) -> str:
        where = "/".join(x for x in (self.version, self.channel) if x)
        size = f" {self.magnitude:g}" if self.magnitude is not None else ""
        return f"{self.name}{size} on {where}"


class OutageComponent(StrEnum):
    PROMETHEUS = "prometheus"
    ALERTMANAGER = "alertmanager"
    TESTBED_STABLE = "testbed-stable"
    TESTBED_CANARY = "testbed-canary"


class Outage(_Strict):
    """A dependency down for a while: ``stop`` (SIGTERM, restarted after) or ``pause`` (SIGSTOP/SIGCONT,
    a hung process that accepts connections but never answers)."""

    component: OutageComponent
    mode: Literal["stop", "pause"] = "stop"
    after: Literal["start", "alert", "incident"] = Field(
        default="start",
        description="start: after the warm-up; alert: when Alertmanager first holds an alert of the faulty "
        "version (before it notifies); incident: when the scenario's incident run is created",
    )
    delay_s: Seconds = 0.0
    duration_s: float = Field(gt=0, le=1800)


class SentAlert(_Strict):
    """An alert a second monitoring system sends straight to the intake, as its own alert group: e.g.
    Grafana's webhook contact point beside Prometheus + Alertmanager (harness/scenario/senders.py)."""

    sender: Literal["grafana"] = "grafana"
    after: Literal["start", "alert"] = Field(
        default="start",
        description="start: after the warm-up; alert: when Alertmanager first holds an alert of the "
        "faulty version",
    )
    delay_s: Seconds = 0.0
    alertname: str = Field(min_length=1, max_length=200)
    severity: str = Field(default="warning", min_length=1, description="the sender's severity label")
    version: Version = "canary"
    labels: dict[str, str] = Field(default_factory=dict, description="more labels (target is testbed)")
    summary: str = Field(default="", max_length=500)


class Trigger(_Strict):
    """How the incident run comes to be."""

    kind: Literal["alert", "manual"] = "alert"
    after_s: Seconds = Field(default=0.0, description="manual: seconds after the warm-up to open it")
    window_minutes: float | None = Field(
        default=None, ge=1, le=120, description="manual: default covers the warm-up and after_s"
    )
    version: Version | None = Field(default="canary", description="manual: the suspected version in conf")
    timeout_s: float = Field(
        default=360.0, gt=0, le=3600, description="alert: how long after the warm-up to wait for the run"
    )


class Human(_Strict):
    """The simulated on-call engineer at the human gate (HITL); ``none`` leaves it to the timeout."""

    answer: Literal["hold", "rollback", "continue", "none"] = "hold"
    after_s: float = Field(default=3.0, ge=0, le=3600, description="seconds after the question appears")


class Deadlines(_Strict):
    """Upper bounds in seconds. ``detection_s`` runs from the first fault's injection to the alert's
    ``startsAt``; every other one from the alert's ``startsAt`` (a manual run: its trigger time)."""

    detection_s: float | None = Field(default=None, gt=0)
    run_created_s: float | None = Field(default=None, gt=0)
    first_evidence_s: float | None = Field(default=None, gt=0)
    decision_s: float | None = Field(default=None, gt=0)
    rollback_applied_s: float | None = Field(default=None, gt=0)
    recovery_verified_s: float | None = Field(default=None, gt=0)
    total_s: float | None = Field(default=None, gt=0)

    def items(self) -> list[tuple[str, float]]:
        return [(k, v) for k, v in self.model_dump().items() if v is not None]


class Expect(_Strict):
    """What a correct pipeline concludes. Lists are the acceptable values; absent fields are not scored."""

    alert_incident: Literal["required", "forbidden", "any"] | None = Field(
        default=None, description="an alert-driven run must / must not open; default: required for alert"
    )
    max_incidents: int | None = Field(
        default=None, ge=0, description="alert-driven runs of the faulty version's alert group, at most"
    )
    grade: list[GradeId] | None = Field(default=None, min_length=1)
    suspected_component: list[Component] | None = Field(default=None, min_length=1)
    suspected_version: Version | None = None
    nothing_blamed: bool | None = Field(
        default=None, description="true: no high or critical finding on any version, in any run"
    )
    problem: list[Identifier] | None = Field(
        default=None, min_length=1, description="the lead finding's problem id (its runbook action)"
    )
    findings_include: list[Identifier] | None = Field(
        default=None, min_length=1, description="problem ids that must all be among the findings"
    )
    decision: list[Outcome] | None = Field(default=None, min_length=1)
    decision_rule: list[Literal[DECISION_RULES]] | None = Field(default=None, min_length=1)  # type: ignore[valid-type]
    rollback: bool | None = Field(default=None, description="a rollback is applied by the pipeline")
    recovered: bool | None = Field(default=None, description="the recovery verification says recovered")
    pii_in_artifacts: Literal[False] | None = Field(
        default=None, description="false: no leaked PII value appears in any artifact of the runs"
    )
    checks: dict[Identifier, list[Status]] | None = Field(
        default=None, description="phase-1/phase-2 check -> acceptable statuses"
    )
    run_state: list[Literal["success", "failed"]] | None = Field(default=None, min_length=1)
    alert_groups: int | None = Field(
        default=None,
        ge=1,
        description="the scenario's incident holds alerts of at least this many alert groups (senders "
        "joined by the intake's correlation rules)",
    )
    deadlines: Deadlines | None = None


class Scenario(_Strict):
    version: Literal[1] = 1
    name: Identifier | None = Field(default=None, description="unique in a suite; default: the file name")
    description: str = Field(min_length=1)
    tags: list[Identifier] = Field(default_factory=list)
    start_weight: float = Field(default=50.0, ge=0, le=100, description="canary weight at the start")
    warmup_s: Seconds = 60.0
    reset_evidence: bool = Field(
        default=True,
        description="fresh Prometheus TSDB and truncated testbed logs first (only on the runner's stack)",
    )
    traffic: Traffic
    faults: list[FaultStep] = Field(default_factory=list)
    outages: list[Outage] = Field(default_factory=list)
    sent_alerts: list[SentAlert] = Field(
        default_factory=list, description="alerts a second monitoring system sends to the intake"
    )
    trigger: Trigger = Field(default_factory=Trigger)
    human: Human = Field(default_factory=Human)
    expect: Expect
    timeout_s: float = Field(default=1200.0, ge=60, le=7200, description="the whole scenario, at most")

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        e, t = self.expect, self.trigger
        if t.kind == "alert" and e.alert_incident == "forbidden":
            raise ValueError(
                "expect.alert_incident: 'forbidden' contradicts trigger.kind 'alert' (the run comes from "
                "the alert); use trigger.kind: manual to investigate after the observation"
            )
        if t.kind == "manual" and e.grade is not None:
            raise ValueError(
                "expect.grade: a manual investigation has no grade (the intake grades alerts); "
                "remove it or use trigger.kind: alert"
            )
        if t.kind == "alert" and not self.faults:
            raise ValueError("faults: an alert-triggered scenario needs at least one fault to alert on")
        busy = [f.start_s for f in self.faults if f.start_s >= self.timeout_s]
        if busy:
            raise ValueError(f"faults[].start_s {busy[0]:g} is not before timeout_s {self.timeout_s:g}")
        return self

    @property
    def id(self) -> str:
        """The scenario's name (set from the file name by :func:`load_scenario` when not written)."""
        if self.name is None:
            raise ValueError("scenario has no name: load it with load_scenario()")
        return self.name

    @property
    def alert_incident(self) -> str:
        if self.expect.alert_incident is not None:
            return self.expect.alert_incident
        return "required" if self.trigger.kind == "alert" else "any"

    def window_minutes(self) -> float:
        """The manual investigation's window: the scenario so far (warm-up + after_s), 1..120 min."""
        if self.trigger.window_minutes is not None:
            return self.trigger.window_minutes
        return float(min(120, max(1, -(-int(self.warmup_s + self.trigger.after_s + 30) // 60))))


def _rewrite(problem: Problem) -> Problem:
    # The loader's hint names the runbook schema; a scenario's lives elsewhere.
    if problem.message.startswith("Value error, "):
        return dataclasses.replace(problem, message=problem.message.removeprefix("Value error, "))
    if problem.message.startswith("unknown field"):
        return dataclasses.replace(
            problem, message=f"unknown field (check the spelling; the scenario format is in {SCHEMA_DOC})"
        )
    return problem


def load_scenario(path: Path) -> Scenario:
    """One scenario file; its ``name`` defaults to the file name. Raises :class:`ScenarioError`."""
    try:
        sc = load_yaml_model(path, Scenario, environ={})
    except RunbookError as exc:
        raise ScenarioError([_rewrite(p) for p in exc.problems]) from None
    if sc.name is not None:
        return sc
    if not NAME_PATTERN.match(path.stem):
        raise ScenarioError(
            [
                Problem(
                    path,
                    None,
                    "name",
                    f"the file name {path.stem!r} cannot be the scenario's name ({NAME_PATTERN.pattern}); "
                    "rename the file or set name:",
                )
            ]
        )
    return sc.model_copy(update={"name": path.stem})


def scenario_files(path: Path) -> list[Path]:
    """``path`` itself, or the ``*.yaml`` / ``*.yml`` files directly in a directory (sorted)."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return [path]


def load_suite(paths: list[Path], tags: list[str] | None = None) -> list[tuple[Path, Scenario]]:
    """Every scenario under ``paths`` (files or directories), all validated before any runs; optionally
    only those with one of ``tags``. Raises :class:`ScenarioError` with every problem of every file."""
    problems: list[Problem] = []
    loaded: list[tuple[Path, Scenario]] = []
    files: list[Path] = []
    for p in paths:
        if not p.exists():
            problems.append(Problem(p, None, "", "no such file or directory"))
            continue
        found = scenario_files(p)
        if not found:
            problems.append(Problem(p, None, "", "no *.yaml scenario files in this directory"))
        files += found
    seen: dict[str, Path] = {}
    for f in files:
        try:
            sc = load_scenario(f)
        except ScenarioError as exc:
            problems += exc.problems
            continue
        if sc.id in seen:
            problems.append(
                Problem(f, None, "name", f"{sc.id!r} is already the name of {seen[sc.id]}; names are unique")
            )
            continue
        seen[sc.id] = f
        loaded.append((f, sc))
    if problems:
        raise ScenarioError(problems)
    if tags:
        loaded = [(f, s) for f, s in loaded if set(tags) & set(s.tags)]
    return loaded


__all__ = [
    "DECISION_RULES",
    "Deadlines",
    "Expect",
    "FaultStep",
    "Human",
    "Outage",
    "OutageComponent",
    "Scenario",
    "ScenarioError",
    "Traffic",
    "Trigger",
    "load_scenario",
    "load_suite",
    "scenario_files",
]
