"""The human gate: the standard HITL branch operator, plus a record of who answered."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLBranchOperator

from diagnostics.incident import task_ids as T
from diagnostics.runbooks.decision import HUMAN_OPTIONS, HumanGateDefault


class HumanGate(HITLBranchOperator):
    """The standard HITL branch, plus who answered (or that the timeout chose) as XCom ``response``:
    the branch's return value is only the chosen task ids, and the response steps record who decided."""

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        user = event.get("responded_by_user") or {}
        context["ti"].xcom_push(
            key="response",
            value={
                "chosen": list(event.get("chosen_options") or []),
                "by": user.get("name") if isinstance(user, dict) else None,
                "at": str(event.get("responded_at")),
            },
        )
        return super().execute_complete(context, event)


def human_gates(defaults: Mapping[str, HumanGateDefault]) -> Iterator[HumanGate]:
    """One gate per grade (decision.yaml ``human_gate``): its default choice and timeout are the grade's;
    the decision branches to the incident's grade, the other grades' gates are skipped."""
    for grade, default in defaults.items():
        yield HumanGate(
            task_id=T.in_group(T.human_gate(grade)),
            subject=f"Incident {{{{ run_id }}}}: the canary decision needs you ({grade})",
            body="{{ ti.xcom_pull(task_ids='" + T.DECIDE + "', key='markdown') }}",
            options=list(HUMAN_OPTIONS.values()),
            defaults=HUMAN_OPTIONS[default.choice.value],
            options_mapping={label: T.human_choice(c) for c, label in HUMAN_OPTIONS.items()},
            response_timeout=timedelta(seconds=default.timeout_s),
            doc_md=f"{grade}: nobody answering within {default.timeout_s:g} s means "
            f"'{HUMAN_OPTIONS[default.choice.value]}'.",
        )
