"""Rollback and promotion actions (gateway weight, Kubernetes Deployment, Argo Rollout) and the
verification that the service recovered afterwards; no Airflow import.

``apply`` (in :mod:`diagnostics.response.rollback.base`) is the one entry point that changes a service; the
method modules only read and change state. Dependencies run one way: ``base`` → ``registry`` (method →
driver) → the drivers (``gateway``, ``kubernetes``, ``argo``) → ``contracts``.
:mod:`diagnostics.response.verify` is imported on its own (it pulls in the Prometheus client).
"""

from diagnostics.response.rollback.base import apply, audit_records
from diagnostics.response.rollback.contracts import ActionError, ActionResult, AuditRecord

__all__ = ["ActionError", "ActionResult", "AuditRecord", "apply", "audit_records"]
