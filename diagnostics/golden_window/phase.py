"""Phase 1, the 0-2 h golden window: which checks run, how each is fed, where results are stored.

Each check registers a :class:`~diagnostics.checks.registry.CheckSpec` with a one-step ``run`` (the
registry phase 2 uses too); ``runbooks/sop.yaml`` lists the same names for the phase, and a test keeps
the two in step. The DAG and the CLI both go through
:func:`run_and_store`, so a check behaves the same in a DAG run and in ``triage24 check``. After
``metrics_sla`` is stored, :func:`store_metric_timeline` stores the window's metric timeline beside it:
evidence for the report, not a check (it is not registered and cannot fail the run).
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diagnostics.checks.registry import CheckSpec, register, registered
from diagnostics.config import Settings
from diagnostics.golden_window.health import check_health
from diagnostics.golden_window.model_integrity import check_models
from diagnostics.incident.model import Incident, incident_from_conf
from diagnostics.incident.results import CheckResult, Status
from diagnostics.incident.store import read_result, write_json, write_result
from diagnostics.incident.summary import PhaseSummary, summarize
from diagnostics.runbooks import Runbooks, load_runbooks
from diagnostics.runbooks.schemas import Target

if TYPE_CHECKING:
    from diagnostics.golden_window.timeline import MetricTimeline

log = logging.getLogger("triage24.golden_window")

PHASE = "golden_window"


@dataclass(frozen=True)
class EvidenceSources:
    """Where evidence comes from. In Airflow these come from Connections; in the CLI from settings."""

    prometheus_url: str
    prometheus_headers: dict[str, str] = field(default_factory=dict)
    elasticsearch: dict[str, Any] | None = None  # {"hosts": [...], "api_key"|"basic_auth": ...}
    http_timeout_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> EvidenceSources:
        s = settings or Settings()
        es_url = os.environ.get("TRIAGE24_ELASTICSEARCH_URL")
        es: dict[str, Any] | None = None
        if es_url:
            es = {"hosts": [es_url]}
            if os.environ.get("TRIAGE24_ELASTICSEARCH_API_KEY"):
                es["api_key"] = os.environ["TRIAGE24_ELASTICSEARCH_API_KEY"]
        url = os.environ.get("TRIAGE24_PROMETHEUS_URL") or f"http://{s.host}:{s.prometheus_port}"
        return cls(prometheus_url=url, elasticsearch=es)

    def public(self) -> dict[str, Any]:
        """What may be stored and shown: no credentials."""
        data = asdict(self)
        data["prometheus_headers"] = sorted(self.prometheus_headers)
        data["elasticsearch"] = {"hosts": self.elasticsearch.get("hosts")} if self.elasticsearch else None
        return data


@dataclass(frozen=True)
class Context:
    incident: Incident
    books: Runbooks
    target: Target
    sources: EvidenceSources


def _health(ctx: Context) -> CheckResult:
    """Health snapshot: every version's and the gateway's health, per module; a failing endpoint is
    retried and confirmed by a second signal (Prometheus up, gateway upstream errors)."""
    from diagnostics.sources.prometheus import reader_for

    # Only asked when an endpoint failed every try: a healthy snapshot makes no Prometheus request.
    reader = reader_for(
        ctx.sources.prometheus_url, ctx.sources.prometheus_headers, ctx.sources.http_timeout_s
    )
    return check_health(
        ctx.target,
        ctx.books.priority_matrix,
        ctx.sources.http_timeout_s,
        conf=ctx.books.thresholds.health_confirmation,
        reader=reader,
    )


def _models(ctx: Context) -> CheckResult:
    """Model load and integrity: loaded models and their SHA-256 against targets.yaml."""
    return check_models(
        ctx.target,
        ctx.books.priority_matrix,
        ctx.sources.http_timeout_s,
        conf=ctx.books.thresholds.health_confirmation,
    )


def _metrics(ctx: Context) -> CheckResult:
    """Metrics vs SLA: per channel and version, static SLA, dynamic thresholds and canary gates."""
    from diagnostics.golden_window.metrics_sla import check_metrics_sla
    from diagnostics.sources.prometheus import reader_for

    reader = reader_for(
        ctx.sources.prometheus_url, ctx.sources.prometheus_headers, ctx.sources.http_timeout_s
    )
    return check_metrics_sla(
        reader,
        ctx.target,
        ctx.books.thresholds,
        ctx.books.priority_matrix,
        window_end=ctx.incident.analysed_at,
        window_s=ctx.incident.window_s,
    )


def _logs(ctx: Context) -> CheckResult:
    """Logs: pulled for the window and classified with the priority matrix; failing request paths."""
    from diagnostics.golden_window.logs_check import check_logs, source_for

    return check_logs(
        source_for(ctx.target, ctx.sources.elasticsearch),
        ctx.books.priority_matrix,
        start=ctx.incident.window_start,
        end=ctx.incident.analysed_at,
    )


def _one_step(
    name: str, modality: str, inputs: tuple[str, ...], run: Callable[[Context], CheckResult]
) -> None:
    register(
        CheckSpec(name=name, phase=PHASE, modality=modality, inputs=inputs, run=run, doc=run.__doc__ or "")
    )


# Phase 1's checks, registered with the same registry as phase 2's (runbooks/sop.yaml lists them).
_one_step("health_snapshot", "service", ("service.health",), _health)
_one_step("model_integrity", "models", ("service.health",), _models)
_one_step("metrics_sla", "metrics", ("prometheus",), _metrics)
_one_step("log_classification", "logs", ("logs",), _logs)

# name -> the check's one step, in the registry's order (the DAG's tasks, the CLI's choices)
PHASE_CHECKS: dict[str, Callable[[Context], CheckResult]] = {
    name: spec.run for name, spec in registered(PHASE).items() if spec.run is not None
}


def open_incident(
    run_id: str, conf: dict[str, Any], now: datetime | None = None, books: Runbooks | None = None
) -> Incident:
    """The incident of a run; fails with the field and the fix when the conf or the target is wrong.

    ``now`` is the analysis time: the DAG passes the run's start, so every check of the run (each in
    its own task, started at its own moment) reads the same window.
    """
    books = books or load_runbooks()
    incident = incident_from_conf(run_id, conf, now=now, default_target=books.targets.targets[0].name)
    names = [t.name for t in books.targets.targets]
    if incident.target not in names:
        raise ValueError(
            f"target: {incident.target!r} is not in runbooks/targets.yaml (known: {', '.join(names)}); "
            "add it there, or fix the alert's 'target' label"
        )
    return incident


def store_incident(incident: Incident) -> dict[str, Any]:
    from diagnostics.notify import notify

    path = write_json(
        Settings().artifacts / incident.incident_id / "incident.json", incident.model_dump(mode="json")
    )
    names = ", ".join(incident.alert_names) or "manual investigation"
    notify(incident, "opened", summary=f"{incident.target}: {names}")
    return {**incident.summary(), "artifact": str(path)}


def run_check(
    name: str, incident: Incident, sources: EvidenceSources, books: Runbooks | None = None
) -> CheckResult:
    """Run one phase-1 check. A crash of the check itself is reported, not raised: the run goes on."""
    books = books or load_runbooks()
    ctx = Context(incident, books, books.targets.get(incident.target), sources)
    try:
        return PHASE_CHECKS[name](ctx)
    except Exception as exc:  # a bug or an unforeseen answer must not stop the incident's other checks
        log.error("check %s crashed:\n%s", name, traceback.format_exc())
        return CheckResult(
            check=name,
            status=Status.INSUFFICIENT_EVIDENCE,
            summary=f"check crashed: {type(exc).__name__}: {str(exc)[:300]}",
            details={"crashed": True},
        )


def brief(result: CheckResult, path: str) -> dict[str, Any]:
    """What XCom carries for a check: status, summary, counts, where the full result is."""
    out: dict[str, Any] = {
        "check": result.check,
        "status": result.status.value,
        "summary": result.summary,
        "findings": len(result.findings),
        "artifact": path,
    }
    gate = getattr(result, "gate", None)
    if gate is not None:
        out["gate"] = gate.model_dump(mode="json") if hasattr(gate, "model_dump") else gate
    return out


def run_and_store(name: str, inc: Incident, sources: EvidenceSources | None = None) -> dict[str, Any]:
    sources = sources or EvidenceSources.from_settings()
    result = run_check(name, inc, sources)
    path = write_result(Settings().artifacts, inc.incident_id, PHASE, name, result)
    log.info("%s: %s - %s (%s)", name, result.status.value, result.summary, path)
    if name == "metrics_sla":  # the report's metric timeline rides with the metrics check's task
        store_metric_timeline(inc, sources, result)
    return brief(result, str(path))


def store_metric_timeline(
    inc: Incident, sources: EvidenceSources, metrics: CheckResult | None = None
) -> Path | None:
    """``golden_window/metric_timeline.json`` (:mod:`diagnostics.golden_window.timeline`): evidence for
    the report, not a check - nothing reads it to decide. Never raises: a failure is logged and stored
    as insufficient evidence (None when not even that could be stored); Prometheus is not asked again
    when ``metrics`` could not read it."""
    try:
        from diagnostics.golden_window import timeline

        error = metrics.details.get("error") if metrics is not None else None
        if metrics is not None and metrics.status is Status.INSUFFICIENT_EVIDENCE and error:
            reason = f"not queried: metrics_sla could not read Prometheus ({error})"
            result = timeline.unavailable(inc.target, inc.analysed_at, inc.window_s, reason)
        else:
            result = _metric_timeline(inc, sources)
        path = write_result(Settings().artifacts, inc.incident_id, PHASE, timeline.NAME, result)
    except Exception:  # evidence for the report must never fail phase 1
        log.error("metric timeline not stored:\n%s", traceback.format_exc())
        return None
    log.info("%s: %s - %s (%s)", timeline.NAME, result.status.value, result.summary, path)
    return path


def _metric_timeline(inc: Incident, sources: EvidenceSources) -> MetricTimeline:
    """The timeline from Prometheus; a crash is an insufficient_evidence timeline naming it."""
    from diagnostics.golden_window import timeline
    from diagnostics.sources.prometheus import reader_for

    try:
        books = load_runbooks()
        reader = reader_for(sources.prometheus_url, sources.prometheus_headers, sources.http_timeout_s)
        target = books.targets.get(inc.target)
        return timeline.metric_timeline(reader, target, books.thresholds, inc.analysed_at, inc.window_s)
    except Exception as exc:
        log.error("metric timeline crashed:\n%s", traceback.format_exc())
        reason = f"timeline crashed: {type(exc).__name__}: {str(exc)[:300]}"
        return timeline.unavailable(inc.target, inc.analysed_at, inc.window_s, reason)


def _load(root: Any, incident_id: str, name: str) -> CheckResult:
    data = read_result(root, incident_id, PHASE, name)
    # Stored results carry their subclass's fields; the summary needs only the common shape.
    common = {k: data[k] for k in CheckResult.model_fields if k in data}
    return CheckResult.model_validate(common)


def summarize_and_store(inc: Incident, briefs: list[dict[str, Any]]) -> dict[str, Any]:
    root = Settings().artifacts
    results: list[CheckResult] = []
    for name in PHASE_CHECKS:
        try:
            results.append(_load(root, inc.incident_id, name))
        except Exception as exc:  # a check task that never stored a result is missing evidence
            results.append(
                CheckResult(check=name, status=Status.INSUFFICIENT_EVIDENCE, summary=f"no result: {exc}")
            )
    gate = next((b["gate"] for b in briefs if b.get("gate") is not None), None)
    summary: PhaseSummary = summarize(PHASE, results, gate=gate)
    path = write_result(root, inc.incident_id, PHASE, "summary", summary)
    log.info("phase summary: %s - %s (%s)", summary.status.value, summary.summary, path)
    return {**summary.brief(), "artifact": str(path)}
