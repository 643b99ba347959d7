"""Rollback and promotion actions: one entry point, :func:`apply`, over the methods of targets.yaml.

Changing production is the one thing Triage24 does that cannot be taken back by re-running a check,
so every action follows the same guarded sequence, whatever the method (gateway weight, Kubernetes
Deployment, Argo Rollout):

1. **idempotency per incident**: if the audit log shows that this incident already applied this
   action to this target, nothing is sent again and the result refers to that record. This is what
   makes a retried task or a restarted scheduler safe mid-incident, even if someone changed the
   service by hand since;
2. **read the current state first**, and change nothing when it already is the desired state (a
   second run is a no-op);
3. **no roll "back" to a known-bad version**: a rollback whose destination is a version an earlier
   rollback of this target moved away from is refused (``kubectl rollout undo`` run twice rolls
   forward again; this guards against that);
4. **dry run** reports what would be done, after reading the state, and changes nothing;
5. **rate limit per target** (``max_changes`` per ``per_seconds`` from the target's rollback config):
   over it, the result is ``failed`` with the reason and nothing changes, so a flapping signal cannot
   make Triage24 thrash a service;
6. the change, then an **append-only audit record** in ``<state_dir>/audit/rollback.jsonl`` for
   every outcome (time, incident, target, method, before, after, dry run, outcome, actor).

All of it runs under one exclusive file lock in ``state_dir``, so two workers cannot both decide the
change is still needed. Every failure (missing token, unreachable service, refused request) is a
``failed`` result with a reason for a human, never an exception; a secret (the admin token) is never
put in a result, a log line or the audit record.

The types the drivers implement and return are in :mod:`~diagnostics.response.rollback.contracts`,
the method → driver table in :mod:`~diagnostics.response.rollback.registry`; this module imports
both, and neither imports it back.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from diagnostics.incident.results import Status
from diagnostics.incident.store import write_json
from diagnostics.locks import file_lock
from diagnostics.response.rollback.contracts import (
    Action,
    ActionError,
    ActionResult,
    AuditRecord,
    Driver,
    Outcome,
    Plan,
)
from diagnostics.response.rollback.registry import driver_for
from diagnostics.runbooks.schemas import Target

AUDIT_PATH = Path("audit") / "rollback.jsonl"
RATE_PATH = Path("rollback-rate.json")
LOCK_PATH = Path("rollback.lock")
CHECK_OF: dict[Action, Literal["rollback", "promotion"]] = {"rollback": "rollback", "promote": "promotion"}


# --- the lock, the audit log and the rate limit ---------------------------------------------------


def audit_records(state_dir: Path) -> list[AuditRecord]:
    """Every readable record of the audit log, oldest first; a damaged line is skipped, not fatal."""
    path = state_dir / AUDIT_PATH
    if not path.exists():
        return []
    records: list[AuditRecord] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            with contextlib.suppress(ValueError, ValidationError):
                records.append(AuditRecord.model_validate_json(line))
    return records


def _append_audit(state_dir: Path, record: AuditRecord) -> Path:
    path = state_dir / AUDIT_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    line = record.model_dump_json() + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)  # the record is what makes a retry a no-op: it must be on disk
    finally:
        os.close(fd)
    return path


def _recent_changes(state_dir: Path, target: str, now: datetime, per_seconds: float) -> list[float]:
    path = state_dir / RATE_PATH
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        data = {}  # a damaged file must not block a rollback forever; the audit log keeps the history
    times = data.get("changes", {}).get(target, []) if isinstance(data, dict) else []
    horizon = now.timestamp() - per_seconds
    return sorted(t for t in times if isinstance(t, int | float) and t > horizon)


def _record_change(state_dir: Path, target: str, now: datetime, per_seconds: float) -> None:
    path = state_dir / RATE_PATH
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        changes = data.get("changes", {}) if isinstance(data, dict) else {}
    except (OSError, ValueError):
        changes = {}
    changes[target] = [*_recent_changes(state_dir, target, now, per_seconds), now.timestamp()]
    write_json(path, {"version": 1, "changes": changes})


# --- secrets never leave ---------------------------------------------------------------------------


def _redact(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` with every secret replaced by ``***``, through dicts and lists."""
    if not secrets:
        return value
    if isinstance(value, str):
        for s in secrets:
            value = value.replace(s, "***")
        return value
    if isinstance(value, dict):
        return {k: _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v, secrets) for v in value]
    return value


# --- apply -----------------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Run:
    """The facts gathered while an action runs, turned into the result and the audit record."""

    action: Action
    target: Target
    incident_id: str
    dry_run: bool
    started_at: datetime
    outcome: Outcome = "failed"
    summary: str = ""
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    plan: Plan | None = None
    error: str | None = None
    prior_audit_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def fail(self, reason: str, outcome: Outcome = "failed") -> None:
        self.outcome, self.error = outcome, reason
        self.summary = f"{self.action} of {self.target.name} not done: {reason}"


def _guarded(
    run: _Run,
    driver: Driver,
    state_dir: Path,
    promote_to: float | None,
    now: Callable[[], datetime],
) -> None:
    """Steps 1-6 of the module docstring, under the lock; every stop is recorded in ``run``."""
    config, name = run.target.rollback, run.target.name
    history = audit_records(state_dir)
    prior = next(
        (
            r
            for r in reversed(history)
            if r.incident_id == run.incident_id
            and r.target == name
            and r.action == run.action
            and r.outcome == "applied"
            and not r.dry_run
        ),
        None,
    )
    if prior is not None and not run.dry_run:
        run.outcome, run.prior_audit_id = "already_applied", prior.id
        run.before = run.after = dict(prior.after)
        with contextlib.suppress(ActionError):  # the current state is information, not a condition
            run.before = run.after = driver.read().summary
        run.summary = (
            f"{run.action} of {name} was already applied for incident {run.incident_id} at "
            f"{prior.time.isoformat()} (audit record {prior.id}): not sent again"
        )
        return
    state = driver.read()
    run.before = run.after = state.summary
    plan = run.plan = driver.plan(run.action, state, promote_to)
    if not plan.needed:
        run.outcome, run.summary = "noop", f"{name}: {plan.description}; nothing to change"
        return
    if run.action == "rollback" and plan.reaches is not None:
        bad = next(
            (
                r
                for r in reversed(history)
                if r.target == name
                and r.action == "rollback"
                and r.outcome == "applied"
                and r.leaves == plan.reaches
            ),
            None,
        )
        if bad is not None:
            raise ActionError(
                f"the rollback would go to {plan.reaches}, the version that the rollback of incident "
                f"{bad.incident_id} at {bad.time.isoformat()} moved away from (audit record {bad.id}); "
                "refusing to roll forward to a known-bad version: choose the revision by hand",
                "refused",
            )
    at = now()
    recent = _recent_changes(state_dir, name, at, config.per_seconds)
    run.details["rate_limit"] = {
        "max_changes": config.max_changes,
        "per_seconds": config.per_seconds,
        "recent_changes": len(recent),
    }
    if len(recent) >= config.max_changes:
        next_at = datetime.fromtimestamp(recent[0] + config.per_seconds, UTC).isoformat()
        raise ActionError(
            f"rate limit: {len(recent)} changes of {name} in the last {config.per_seconds:g} s "
            f"(limit {config.max_changes} per {config.per_seconds:g} s, rollback config of "
            f"runbooks/targets.yaml); the next change is allowed after {next_at}",
            "rate_limited",
        )
    if run.dry_run:
        run.outcome, run.after = "dry_run", {**state.summary, **plan.desired}
        run.summary = f"dry run: would {plan.description} on {name}; nothing was changed"
        return
    run.after = driver.execute(plan)
    run.outcome, run.summary = "applied", f"{run.action} of {name}: {plan.description}"
    try:
        _record_change(state_dir, name, now(), config.per_seconds)
    except OSError as exc:  # the change stands; the audit log still records it
        run.details["rate_limit"]["record_error"] = f"{type(exc).__name__}: {exc}"


def apply(
    action: Action,
    target: Target,
    *,
    incident_id: str,
    dry_run: bool,
    state_dir: Path,
    environ: Mapping[str, str] = os.environ,
    promote_to: float | None = None,
    now: Callable[[], datetime] | None = None,
    api_client: Any = None,
    kubeconfig: str | Path | None = None,
    driver: Driver | None = None,
) -> ActionResult:
    """Roll back (or promote) ``target`` with the method its rollback config names; never raises.

    ``promote_to`` is the canary weight of a gateway promotion. ``api_client`` (a
    ``kubernetes.client.ApiClient``, e.g. from the Airflow KubernetesHook of the config's
    ``connection_id``) or ``kubeconfig`` (a path; else ``$KUBECONFIG``, ``~/.kube/config`` or the
    in-cluster config) configure the Kubernetes methods. ``driver`` replaces the method's driver
    (tests). ``now`` is the wall clock of the audit and the rate limit.
    """
    clock = now or _utcnow
    run = _Run(action, target, incident_id, dry_run, clock())
    secrets: list[str] = []
    if action not in CHECK_OF:
        run.fail(f"unknown action {action!r}; expected rollback or promote")
    elif not incident_id.strip():
        run.fail("an incident id is required: it is what makes a retried action a no-op")
    else:
        try:
            with file_lock(state_dir / LOCK_PATH):  # held for a whole action
                try:
                    driver = driver or driver_for(
                        target, environ, api_client=api_client, kubeconfig=kubeconfig
                    )
                    secrets.extend(s for s in driver.secrets() if s)
                    _guarded(run, driver, state_dir, promote_to, clock)
                except ActionError as exc:
                    run.fail(exc.reason, exc.outcome)
                except Exception as exc:  # a bug must still leave an audit record and a result
                    run.fail(f"unexpected {type(exc).__name__}: {str(exc)[:300]}")
                return _finish(run, state_dir, tuple(secrets), clock)
        except OSError as exc:  # the state dir cannot hold the lock
            run.fail(f"cannot use the state directory {state_dir}: {type(exc).__name__}: {exc}")
    return _finish(run, state_dir, tuple(secrets), clock)


def _finish(
    run: _Run, state_dir: Path, secrets: tuple[str, ...], now: Callable[[], datetime]
) -> ActionResult:
    """The result of ``run``, after its audit record is on disk (redacted, whatever the outcome)."""
    finished = now()
    plan = run.plan
    status = Status.OK if run.outcome in ("applied", "noop", "already_applied", "dry_run") else Status.FAILED
    record = AuditRecord(
        id=uuid.uuid4().hex,
        time=finished,
        incident_id=run.incident_id,
        target=run.target.name,
        method=run.target.rollback.method,
        action=run.action,
        dry_run=run.dry_run,
        outcome=run.outcome,
        before=_redact(run.before, secrets),
        after=_redact(run.after, secrets),
        leaves=plan.leaves if plan else None,
        reaches=plan.reaches if plan else None,
        summary=_redact(run.summary, secrets),
        error=_redact(run.error, secrets),
        prior_audit_id=run.prior_audit_id,
    )
    audit_path: str | None = None
    error = record.error
    summary = record.summary
    try:
        audit_path = str(_append_audit(state_dir, record))
    except OSError as exc:
        problem = f"the audit record could not be written to {state_dir / AUDIT_PATH}: {exc}"
        error = f"{error}; {problem}" if error else problem
        if status is Status.OK:
            # the change stands, but without its record a retry would not know it: a human must look
            status, summary = Status.DEGRADED, f"{summary} (but {problem})"
    return ActionResult(
        check=CHECK_OF.get(run.action, "rollback"),
        status=status,
        summary=summary,
        details={**run.details, "sensitive": run.target.rollback.sensitive},
        action=run.action,
        method=run.target.rollback.method,
        target=run.target.name,
        incident_id=run.incident_id,
        dry_run=run.dry_run,
        outcome=run.outcome,
        changed=run.outcome == "applied",
        would_change=run.outcome == "dry_run",
        idempotent_noop=run.outcome in ("noop", "already_applied"),
        before=record.before,
        after=record.after,
        started_at=run.started_at,
        finished_at=finished,
        error=error,
        audit_record=audit_path,
        audit_id=record.id if audit_path else None,
        prior_audit_id=run.prior_audit_id,
    )
