"""Answer an Airflow human-in-the-loop task from a test, as an on-call engineer would.

``dag.test()`` leaves a HITL task parked in ``awaiting_input`` until a response is recorded from
outside. This helper records it through the HITL REST API's own handler function (the code behind
``PATCH …/taskInstances/{task_id}/-1/hitlDetails``), called in-process on the same metadata DB, from
a thread while ``dag.test()`` waits. The end-to-end stack test answers over real HTTP instead.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Responder:
    """Answers the first awaiting HITL task of ``dag_id`` with ``option``; records what it answered."""

    dag_id: str
    option: str
    timeout_s: float = 120.0
    params: dict[str, Any] = field(default_factory=dict)  # the answer's params_input
    answered: list[tuple[str, str]] = field(default_factory=list)  # (run id, task id)
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    def _find(self) -> tuple[str, str] | None:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState

        with create_session() as session:
            ti = (
                session.query(TaskInstance)
                .filter(
                    TaskInstance.dag_id == self.dag_id,
                    TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                )
                .first()
            )
            return (ti.run_id, ti.task_id) if ti is not None else None

    def _answer(self, run_id: str, task_id: str) -> None:
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
        from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
        from airflow.utils.session import create_session

        with create_session() as session:
            update_hitl_detail(
                dag_id=self.dag_id,
                dag_run_id=run_id,
                task_id=task_id,
                update_hitl_detail_payload=UpdateHITLDetailPayload(
                    chosen_options=[self.option], params_input=self.params
                ),
                user=SimpleAuthManagerUser(username="oncall-test", role="admin"),
                session=session,
                map_index=-1,
            )

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        try:
            while time.monotonic() < deadline:
                found = self._find()
                if found:
                    self._answer(*found)
                    self.answered.append(found)
                    return
                time.sleep(0.5)
        except BaseException as exc:  # surfaced by the test through .error
            self.error = exc

    def start(self) -> Responder:
        self._thread = threading.Thread(target=self._run, name="hitl-responder", daemon=True)
        self._thread.start()
        return self

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=5)
