"""Expectations vs observations, and the suite's figures. Pure: no I/O, no clock.

Each expectation of a scenario becomes one :class:`ExpectationResult` with the expected and the
observed value; a scenario passes when every expectation does and the runner met no error. The
*primary* run is the one the scenario is about: the manual investigation it opened, or the first
alert-driven run created after the warm-up. Timings run from the primary run's origin: the alert's
``startsAt`` (a manual run: its trigger time); ``detection_s`` runs from the first fault's injection to
the alert's ``startsAt``, and ``fault_to_rollback_s`` from it to the rollback applied (what the canary's
users live through).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.scenario.observe import RunObservation
from harness.scenario.schema import Scenario
from harness.scenario.watch import WatchObservation

TIMINGS = (
    "detection_s",
    "alert_delivered_s",
    "run_created_s",
    "first_evidence_s",
    "phase1_done_s",
    "decision_s",
    "rollback_applied_s",
    "fault_to_rollback_s",
    "recovery_verified_s",
    "report_written_s",
    "total_s",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScenarioObservation(_Model):
    """Everything the runner saw during one scenario (epoch seconds)."""

    scenario: str
    commit: str | None = Field(default=None, description="the checkout the runner ran from (git HEAD)")
    started_at: float = Field(description="the scenario began (after the reset)")
    warmup_done_at: float | None = None
    fault_injected_at: float | None = Field(default=None, description="the first fault was in place")
    manual_triggered_at: float | None = None
    runs: list[RunObservation] = Field(default_factory=list)
    primary: str | None = Field(default=None, description="run id of the run the scenario is about")
    weight_start: float | None = None
    weight_end: float | None = Field(default=None, description="the gateway's canary weight at the end")
    late_runs: list[str] = Field(
        default_factory=list, description="alert-driven runs created after the primary run had finished"
    )
    deliveries: dict[str, int] = Field(
        default_factory=dict, description="intake outcomes during the scenario"
    )
    alert_groups: dict[str, list[str]] = Field(
        default_factory=dict, description="each run's incident's alert groups (group keys, the opener first)"
    )
    pii_values_logged: int = Field(default=0, description="distinct PII values the testbed logged")
    peak_rss_mib: float | None = None
    peak_pss_mib: float | None = Field(default=None, description="the same processes' summed PSS")
    errors: list[str] = Field(default_factory=list, description="what went wrong in the runner itself")
    interrupted: bool = False
    canary_watch: WatchObservation | None = Field(
        default=None, description="the canary watch the runner started (scenario run --canary-watch)"
    )

    def primary_run(self) -> RunObservation | None:
        return next((r for r in self.runs if r.run_id == self.primary), None)

    def alert_runs(self) -> list[RunObservation]:
        return [r for r in self.runs if r.kind == "alert"]


class ExpectationResult(_Model):
    name: str
    expected: Any
    observed: Any
    passed: bool
    detail: str = ""


class ScenarioScore(_Model):
    status: Literal["pass", "fail", "error"]
    expectations: list[ExpectationResult]
    timings: dict[str, float | None]

    @property
    def failed(self) -> list[ExpectationResult]:
        return [e for e in self.expectations if not e.passed]


def _since(t: float | None, origin: float | None) -> float | None:
    return None if t is None or origin is None else round(t - origin, 3)


def timings(obs: ScenarioObservation) -> dict[str, float | None]:
    """Seconds of each step of the primary run from its origin (see the module docstring)."""
    run = obs.primary_run()
    out: dict[str, float | None] = dict.fromkeys(TIMINGS)
    if run is None:
        return out
    t = run.times
    origin = t.alert_fired if run.kind == "alert" else (obs.manual_triggered_at or t.created)
    out["detection_s"] = _since(t.alert_fired, obs.fault_injected_at) if run.kind == "alert" else None
    out["alert_delivered_s"] = _since(t.alert_delivered, origin)
    out["run_created_s"] = _since(t.created, origin)
    out["first_evidence_s"] = _since(t.first_evidence, origin)
    out["phase1_done_s"] = _since(t.phase1_done, origin)
    out["decision_s"] = _since(t.decision, origin)
    out["rollback_applied_s"] = _since(t.rollback_applied, origin)
    # what users live through: the first fault in place until the canary's weight is 0
    out["fault_to_rollback_s"] = _since(t.rollback_applied, obs.fault_injected_at)
    out["recovery_verified_s"] = _since(t.recovery_verified, origin)
    out["report_written_s"] = _since(t.report_written, origin)
    ends = [x for x in (t.finished, t.report_written) if x is not None]
    out["total_s"] = _since(max(ends), origin) if t.finished is not None else None
    return out


def _in(name: str, expected: list[Any], observed: Any, detail: str = "") -> ExpectationResult:
    values = [getattr(v, "value", v) for v in expected]
    return ExpectationResult(
        name=name,
        expected=values if len(values) > 1 else values[0],
        observed=observed,
        passed=observed in values,
        detail=detail,
    )


_NO_RUN = "no incident run to read it from"


def score(scenario: Scenario, obs: ScenarioObservation) -> ScenarioScore:
    """Every expectation of ``scenario`` against ``obs``."""
    results = [result for check in _CHECKS for result in check(scenario, obs)]
    tm = timings(obs)
    results += _deadlines(scenario, tm)
    status: Literal["pass", "fail", "error"] = "pass" if all(r.passed for r in results) else "fail"
    if obs.errors or obs.interrupted:
        status = "error"
    return ScenarioScore(status=status, expectations=results, timings=tm)


def _alert_incident(scenario: Scenario, obs: ScenarioObservation) -> list[ExpectationResult]:
    policy = scenario.alert_incident
    if policy == "any":
        return []
    alert_runs = obs.alert_runs()
    n = len(alert_runs)
    ok = n > 0 if policy == "required" else n == 0
    ids = ", ".join(r.run_id for r in alert_runs)
    return [
        ExpectationResult(
            name="alert_incident",
            expected=policy,
            observed=n,
            passed=ok,
            detail=f"alert-driven runs: {ids}" if ids else "no alert-driven run was opened",
        )
    ]


def _max_incidents(scenario: Scenario, obs: ScenarioObservation) -> list[ExpectationResult]:
    e = scenario.expect
    if e.max_incidents is None:
        return []
    # Deduplication is per alert group: count the faulty version's incidents (an SLA page of the
    # other version is its own group's incident, reported in the detail).
    # A re-evaluation run (new evidence at an open incident) is the same incident, not another one.
    alert_runs = [r for r in obs.alert_runs() if r.reevaluates is None]
    faulty = scenario.faults[0].version if scenario.faults else None
    own = [r for r in alert_runs if faulty is None or r.conf_version == faulty]
    others = [r.run_id for r in alert_runs if r not in own]
    detail = f"intake outcomes: {obs.deliveries}" if obs.deliveries else ""
    if others:
        detail += f"; other groups' incidents, not counted: {', '.join(others)}"
    return [
        ExpectationResult(
            name="max_incidents",
            expected=e.max_incidents,
            observed=len(own),
            passed=len(own) <= e.max_incidents,
            detail=detail.lstrip("; "),
        )
    ]


def _alert_groups(scenario: Scenario, obs: ScenarioObservation) -> list[ExpectationResult]:
    want = scenario.expect.alert_groups
    if want is None:
        return []
    groups = obs.alert_groups.get(obs.primary or "", [])
    return [
        ExpectationResult(
            name="alert_groups",
            expected=f">= {want}",
            observed=len(groups),
            passed=len(groups) >= want,
            detail="; ".join(groups) or "the journal holds no alert group of the scenario's incident",
        )
    ]


def _grade(scenario: Scenario, obs: ScenarioObservation) -> list[ExpectationResult]:
    e, run = scenario.expect, obs.primary_run()
    if e.grade is None:
        return []
    # The incident's grade: an alert of a higher grade that joins the group later raises it.
    grade = (run.incident_grade or run.grade) if run else None
    detail = _NO_RUN if run is None else ""
    if run is not None and run.incident_grade and run.incident_grade != run.grade:
        detail = f"opened as {run.grade}, raised to {run.incident_grade} by the intake"
    return [_in("grade", e.grade, grade, detail)]


def _suspected(scenario: Scenario, obs: ScenarioObservation) -> list[ExpectationResult]:
    e, run = scenario.expect, obs.primary_run()
    results: list[ExpectationResult] = []
    if e.suspected_component is not None:
        detail = (
            _NO_RUN
            if run is None
            else f"lead finding: {run.lead_severity} {run.lead_problem} ({run.lead_phase})"
        )
        component = run.suspected_component if run else None
        results.append(_in("suspected_component", e.suspected_component, component, detail))
    if e.suspected_version is not None:
        version = run.suspected_version if run else None
        results.append(_in("suspected_version", [e.suspected_version], version, "" if run else _NO_RUN))
    return results


def _nothing_blamed(scenario: Scenario, obs: ScenarioObservation) -> list[ExpectationResult]:
    e = scenario.expect
    if e.nothing_blamed is None:
        return []
    blamed = [f for r in obs.runs for f in r.blamed()]
    observed = sorted(
        {f"{f.severity} {f.problem} on {f.component} ({f.version or 'no version'})" for f in blamed}
    )
    return [
        ExpectationResult(
            name="nothing_blamed",
            expected=e.nothing_blamed,
            observed=observed or "nothing blamed",
            passed=bool(obs.runs) and (not blamed) == e.nothing_blamed,
            detail=f"{len(obs.runs)} run(s) read" if obs.runs else "no run: nothing was examined",
        )
    ]


def _problem(scenario: Scenario, obs: ScenarioObservation) -> list[ExpectationResult]:
    e, run = scenario.expect, obs.primary_run()
    if e.problem is None:
        return []
    # The runbook action the pipeline points to, by its matrix problem id (a gate breach carries
    # the action of the matrix problem it stands for); without an action, the lead finding's id.
    observed = (run.action_problem or run.lead_problem) if run else None
    detail = (
        _NO_RUN if run is None else f"lead finding {run.lead_problem}; action: {run.top_action or 'none'}"
    )
    return [_in("problem", e.problem, observed, detail)]


def _findings_include(scenario: Scenario, obs: ScenarioObservation) -> list[ExpectationResult]:
    e, run = scenario.expect, obs.primary_run()
    if e.findings_include is None:
        return []
    found = {f.problem for f in run.findings} if run else set()
    missing = [p for p in e.findings_include if p not in found]
    return [
        ExpectationResult(
            name="findings_include",
            expected=list(e.findings_include),
            observed=sorted(found),
            passed=not missing,
            detail=f"missing: {', '.join(missing)}" if missing else "",
        )
    ]


def _decision(scenario: Scenario, obs: ScenarioObservation) -> list[ExpectationResult]:
    e, run = scenario.expect, obs.primary_run()
    results: list[ExpectationResult] = []
    if e.decision is not None:
        detail = (
            _NO_RUN if run is None else f"rule {run.decision_rule}" + (", fast path" if run.fast_path else "")
        )
        results.append(_in("decision", e.decision, run.decision if run else None, detail))
    if e.decision_rule is not None:
        results.append(_in("decision_rule", list(e.decision_rule), run.decision_rule if run else None))
    return results


def _rollback(scenario: Scenario, obs: ScenarioObservation) -> list[ExpectationResult]:
    e = scenario.expect
    if e.rollback is None:
        return []
    applied = [r for r in obs.runs if r.rollback_outcome == "applied"]
    weights = f"gateway canary weight {obs.weight_start} -> {obs.weight_end}"
    return [
        ExpectationResult(
            name="rollback",
            expected=e.rollback,
            observed=bool(applied),
            passed=bool(applied) == e.rollback,
            detail=(f"applied by {', '.join(r.run_id for r in applied)}; " if applied else "") + weights,
        )
    ]


def _recovered(scenario: Scenario, obs: ScenarioObservation) -> list[ExpectationResult]:
    e = scenario.expect
    if e.recovered is None:
        return []
    verified = [r.recovered for r in obs.runs if r.recovered is not None]
    observed: bool | None = any(verified) if verified else None
    return [
        ExpectationResult(
            name="recovered",
            expected=e.recovered,
            observed=observed,
            passed=observed is e.recovered,
            detail="" if verified else "no recovery verification was stored",
        )
    ]


def _pii_in_artifacts(scenario: Scenario, obs: ScenarioObservation) -> list[ExpectationResult]:
    if scenario.expect.pii_in_artifacts is None:
        return []
    leaks = [leak for r in obs.runs for leak in r.pii_leaks]
    pii_fault = any(f.name == "pii_in_logs" for f in scenario.faults)
    # Nothing leaked into the logs means nothing could leak into the artifacts: not a pass.
    vacuous = pii_fault and obs.pii_values_logged == 0
    detail = (
        f"{obs.pii_values_logged} distinct PII value(s) were in the testbed logs; "
        f"searched {len(obs.runs)} run(s)"
    )
    if vacuous:
        detail = "vacuous: the pii_in_logs fault leaked nothing into the logs, so there was nothing to find"
    return [
        ExpectationResult(
            name="pii_in_artifacts",
            expected=False,
            observed=leaks[:20] or False,
            passed=not leaks and not vacuous and bool(obs.runs),
            detail=detail if obs.runs else "no run: no artifacts to search",
        )
    ]


def _checks_and_state(scenario: Scenario, obs: ScenarioObservation) -> list[ExpectationResult]:
    e, run = scenario.expect, obs.primary_run()
    results = [
        _in(f"checks.{check}", list(statuses), run.checks.get(check) if run else None)
        for check, statuses in (e.checks or {}).items()
    ]
    if e.run_state is not None:
        results.append(_in("run_state", list(e.run_state), run.state if run else None))
    return results


def _deadlines(scenario: Scenario, tm: dict[str, float | None]) -> list[ExpectationResult]:
    deadlines = scenario.expect.deadlines
    results: list[ExpectationResult] = []
    for name, bound in deadlines.items() if deadlines else []:
        value = tm.get(name)
        results.append(
            ExpectationResult(
                name=f"deadline.{name}",
                expected=f"<= {bound:g} s",
                observed=value,
                passed=value is not None and value <= bound,
                detail="" if value is not None else "the step never happened",
            )
        )
    return results


# In the order the expectations are reported (deadlines last, from the timings).
_CHECKS: tuple[Callable[[Scenario, ScenarioObservation], list[ExpectationResult]], ...] = (
    _alert_incident,
    _max_incidents,
    _alert_groups,
    _grade,
    _suspected,
    _nothing_blamed,
    _problem,
    _findings_include,
    _decision,
    _rollback,
    _recovered,
    _pii_in_artifacts,
    _checks_and_state,
)


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def suite_figures(items: list[tuple[Scenario, ScenarioObservation, ScenarioScore]]) -> dict[str, Any]:
    """The suite's figures: accuracy (share of scenarios with every expectation met), rollbacks where
    none was expected, the median timings, the peak resident memory."""
    n = len(items)
    passed = sum(1 for _, _, s in items if s.status == "pass")
    exp_total = sum(len(s.expectations) for _, _, s in items)
    exp_passed = sum(1 for _, _, s in items for x in s.expectations if x.passed)
    healthy = [
        sc.id
        for sc, obs, _ in items
        if sc.expect.rollback is False and any(r.rollback_outcome == "applied" for r in obs.runs)
    ]
    col = {
        name: [s.timings[name] for _, _, s in items if s.timings.get(name) is not None] for name in TIMINGS
    }
    rss = [o.peak_rss_mib for _, o, _ in items if o.peak_rss_mib is not None]
    pss = [o.peak_pss_mib for _, o, _ in items if o.peak_pss_mib is not None]
    return {
        "scenarios": n,
        "passed": passed,
        "failed": sum(1 for _, _, s in items if s.status == "fail"),
        "errors": sum(1 for _, _, s in items if s.status == "error"),
        "accuracy": round(passed / n, 4) if n else None,
        "expectation_accuracy": round(exp_passed / exp_total, 4) if exp_total else None,
        "healthy_rollbacks": len(healthy),
        "healthy_rollback_scenarios": healthy,
        "detection_median_s": _median([float(v) for v in col["detection_s"] if v is not None]),
        "first_evidence_median_s": _median([float(v) for v in col["first_evidence_s"] if v is not None]),
        "rollback_applied_median_s": _median([float(v) for v in col["rollback_applied_s"] if v is not None]),
        "fault_to_rollback_median_s": _median(
            [float(v) for v in col["fault_to_rollback_s"] if v is not None]
        ),
        "incident_total_median_s": _median([float(v) for v in col["total_s"] if v is not None]),
        "peak_rss_mib": round(max(rss), 1) if rss else None,
        "peak_pss_mib": round(max(pss), 1) if pss else None,
    }


__all__ = [
    "TIMINGS",
    "ExpectationResult",
    "ScenarioObservation",
    "ScenarioScore",
    "score",
    "suite_figures",
    "timings",
]
