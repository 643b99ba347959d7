"""The human gate: the standard HITL branch operator, plus a record of who answered that outlives the try.

A human's answer is never lost: the gate stores it in the incident's artifact store
(``decision/human_gate_<grade>.json``) the moment it arrives, before it skips the other branches. A
retried gate (the skipping failed, e.g. the API server answered 404 under load) finds that answer
and branches by it instead of asking the same question again and waiting out the timeout.

Besides the human's choices the gate offers "Superseded by new evidence": the intake answers with it
when an update (a raised grade, a gate breach) started a re-evaluation run of the incident, naming the
run and why in the answer's ``params_input``. It routes like hold, without escalating.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLBranchOperator
from pydantic import BaseModel, ConfigDict, Field

from diagnostics.config import Settings
from diagnostics.incident import task_ids as T
from diagnostics.incident.store import ArtifactError, find_result, write_result
from diagnostics.runbooks.decision import GATE_OPTIONS, HUMAN_OPTIONS, HumanGateDefault
from triage24_airflow import runs

ANSWERS = "decision"  # = diagnostics.decision.phase.DECISION_PHASE (not imported at DAG parse)


class HumanAnswer(BaseModel):
    """A gate's answer as it arrived: the options chosen, who chose them (None: the timeout's default)."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    chosen: list[str] = Field(description="the option labels chosen")
    by: str | None = None
    at: str
    try_number: int = Field(description="the try that received the answer")
    params: dict[str, Any] = Field(
        default_factory=dict, description="what the answer carried (a superseding run: its id and why)"
    )

    def xcom(self) -> dict[str, Any]:
        """What ``runs.decided_by`` and ``runs.gate_answer`` read (XCom ``response``)."""
        return {"chosen": self.chosen, "by": self.by, "at": self.at, "params": self.params}


def answer_name(task_id: str) -> str:
    """``decision.human_gate_L3`` -> ``human_gate_L3``: the record's name under ``decision/``."""
    return T.in_group(task_id)


class HumanGate(HITLBranchOperator):
    """The standard HITL branch, plus who answered (or that the timeout chose) as XCom ``response``
    and in the artifact store: the branch's return value is only the chosen task ids."""

    def _incident_id(self, context: Any) -> str:
        return runs.incident(context).incident_id

    def stored_answer(self, context: Any) -> HumanAnswer | None:
        """The answer an earlier try of this gate received, if it is one of this gate's options."""
        try:
            answer = find_result(
                Settings().artifacts,
                self._incident_id(context),
                ANSWERS,
                answer_name(self.task_id),
                HumanAnswer,
            )
        except ArtifactError as exc:  # unreadable: asking again beats guessing
            self.log.warning("stored answer unreadable, asking again: %s", exc)
            return None
        if answer is None or not answer.chosen or not set(answer.chosen) <= set(self.options):
            return None
        return answer

    def execute(self, context: Any) -> Any:
        answer = self.stored_answer(context)
        if answer is None:
            return super().execute(context)
        self.log.info(
            "Reusing the answer given at try %d, not asking again: %s by %s at %s",
            answer.try_number,
            answer.chosen,
            answer.by or "the timeout default",
            answer.at,
        )
        context["ti"].xcom_push(key="response", value=answer.xcom())
        branches = [self.options_mapping.get(option, option) for option in answer.chosen]
        return self.do_branch(context=context, branches_to_execute=branches)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if "error" not in event:
            chosen = list(event.get("chosen_options") or [])
            self.validate_chosen_options(chosen)
            user = event.get("responded_by_user") or {}
            answer = HumanAnswer(
                task_id=self.task_id,
                chosen=chosen,
                by=user.get("name") if isinstance(user, dict) else None,
                at=str(event.get("responded_at")),
                try_number=int(context["ti"].try_number),
                params=dict(event.get("params_input") or {}),
            )
            # Stored before the branches are skipped: a failure there must not lose the answer.
            write_result(
                Settings().artifacts,
                self._incident_id(context),
                ANSWERS,
                answer_name(self.task_id),
                answer,
            )
            context["ti"].xcom_push(key="response", value=answer.xcom())
        return super().execute_complete(context, event)


def human_gates(defaults: Mapping[str, HumanGateDefault]) -> Iterator[HumanGate]:
    """One gate per grade (decision.yaml ``human_gate``): its default choice and timeout are the grade's;
    the decision branches to the incident's grade, the other grades' gates are skipped."""
    for grade, default in defaults.items():
        yield HumanGate(
            task_id=T.in_group(T.human_gate(grade)),
            subject=f"Incident {{{{ run_id }}}}: the canary decision needs you ({grade})",
            body="{{ ti.xcom_pull(task_ids='" + T.DECIDE + "', key='markdown') }}",
            options=list(GATE_OPTIONS.values()),
            defaults=HUMAN_OPTIONS[default.choice.value],
            options_mapping={label: T.human_choice(c) for c, label in GATE_OPTIONS.items()},
            response_timeout=timedelta(seconds=default.timeout_s),
            doc_md=f"{grade}: nobody answering within {default.timeout_s:g} s means "
            f"'{HUMAN_OPTIONS[default.choice.value]}'.",
        )
