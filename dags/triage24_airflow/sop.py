"""The SOP's shape as the incident DAG builds it, read from ``runbooks/`` once per parse: phase titles,
deadlines, the checks of each phase (and where phase 2's run), the human gate of each grade, targets.

A broken runbook must not hide the DAG: the layout then falls back to a minimal one whose doc names the
problem (the selfcheck DAG and ``triage24 runbooks validate`` say more).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from diagnostics.incident import task_ids
from diagnostics.runbooks import RunbookError
from diagnostics.runbooks.decision import HumanGateDefault
from diagnostics.runbooks.schemas import Phase2Execution
from triage24_airflow.runs import books


@dataclass(frozen=True)
class SopLayout:
    doc: str
    targets: list[str]
    titles: dict[str, str] = field(default_factory=dict)
    deadlines: dict[str, float] = field(default_factory=dict)  # phase -> hours, from the run's queue time
    human_gates: dict[str, HumanGateDefault] = field(default_factory=dict)  # grade -> default, timeout
    phase1_checks: dict[str, str] = field(default_factory=dict)  # name -> doc
    deep_checks: dict[str, str] = field(default_factory=dict)  # name -> "local" | "kubernetes"
    execution: Phase2Execution = field(default_factory=Phase2Execution)

    @classmethod
    def load(cls, *, deadline_alerts: bool = True) -> SopLayout:
        """``deadline_alerts=False`` only where runs go through dag.test(): on Airflow 3.3 dag.test()
        fails to create a run of a DAG with deadlines (a query of deadline_alert by a dict id)."""
        from diagnostics.deep_diagnosis.phase import phase_checks
        from diagnostics.golden_window.phase import PHASE_CHECKS

        try:
            b = books()
            execution = b.targets.phase2_execution
            return cls(
                doc=b.markdown("sop.md"),
                targets=[t.name for t in b.targets.targets],
                titles={p.id: p.title for p in b.sop.phases},
                deadlines={p.id: p.deadline_h for p in b.sop.phases if p.deadline_h is not None}
                if deadline_alerts
                else {},
                human_gates={
                    **{g.value: d for g, d in sorted(b.decision.human_gate.grades.items())},
                    "ungraded": b.decision.human_gate.ungraded,
                },
                phase1_checks={name: fn.__doc__ or name for name, fn in PHASE_CHECKS.items()},
                deep_checks={name: execution.mode_of(name) for name in phase_checks(b)},
                execution=execution,
            )
        except (RunbookError, OSError, KeyError, ValueError) as exc:
            return cls(
                doc=f"Runbooks could not be loaded: {exc}",
                targets=["testbed"],
                phase1_checks={name: fn.__doc__ or name for name, fn in PHASE_CHECKS.items()},
            )

    def params(self) -> dict[str, Any]:
        """The trigger form: target, window, dry run, which phase-2 checks."""
        from airflow.sdk import Param

        return {
            "target": Param(
                self.targets[0],
                type="string",
                title="Target service",
                description="The watched service (runbooks/targets.yaml). An alert's `target` label sets it.",
                examples=self.targets,
            ),
            "window_minutes": Param(
                15,
                type="number",
                minimum=1,
                maximum=120,
                title="Alert window (minutes)",
                description="How far back phase 1 reads metrics and logs; "
                "it always covers the alert's start.",
            ),
            "dry_run": Param(
                False,
                type="boolean",
                title="Dry run",
                description="Collect evidence and decide, but change nothing (no rollback).",
            ),
            "deep_checks": Param(
                list(self.deep_checks),
                type="array",
                items={"type": "string", "enum": list(self.deep_checks)},
                title="Phase-2 checks",
                description="Which deep-diagnosis checks to run (runbooks/sop.yaml). A check left out is "
                "recorded as not measured: it never counts as a pass.",
            ),
        }

    def deadline_alerts(self, callback: str) -> list[Any]:
        """One Deadline Alert per phase with a deadline (2 h, 12 h, 24 h), from the run's queue time:
        while the run is open, the triggerer calls ``callback`` (marks the phase overdue, notifies)."""
        from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

        return [
            DeadlineAlert(
                reference=DeadlineReference.DAGRUN_QUEUED_AT,
                interval=timedelta(hours=hours),
                callback=AsyncCallback(callback, kwargs={"phase": phase}),
                name=f"{phase}_deadline",
            )
            for phase, hours in self.deadlines.items()
        ]

    @property
    def grades(self) -> list[str]:
        return list(self.human_gates)

    def title(self, phase: str) -> str:
        return self.titles.get(phase, phase)

    def deep_pod(self, check: str, opened: Any) -> Any:
        """A phase-2 check as a KubernetesPodOperator pod on a GPU node (runbooks/targets.yaml
        ``phase2_execution.kubernetes``): ``python -m diagnostics check <name>``; the full result comes
        back through XCom (/airflow/xcom/return.json) and the phase summary stores it."""
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

        from diagnostics.checks.registry import resolve
        from diagnostics.deep_diagnosis.kubernetes import pod_operator_kwargs

        assert self.execution.kubernetes is not None  # the schema requires it in kubernetes mode
        pulled = "{{ ti.xcom_pull(task_ids='" + task_ids.OPEN_INCIDENT + "', key='incident_b64') }}"
        op = KubernetesPodOperator(
            **pod_operator_kwargs(
                check,
                self.execution.kubernetes,
                incident_b64=pulled,
                gpu=resolve(check).gpu,
            )
        )
        opened >> op
        return op.output
