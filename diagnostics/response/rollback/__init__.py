"""Rollback and promotion actions (gateway weight, Kubernetes Deployment, Argo Rollout) and the
verification that the service recovered afterwards; no Airflow import.

``apply`` (in :mod:`diagnostics.response.rollback.base`) is the one entry point that changes a service; the
method modules only read and change state. :mod:`diagnostics.response.verify` is imported on its own
(it pulls in the Prometheus client).
"""

from diagnostics.response.rollback.base import ActionError, ActionResult, AuditRecord, apply, audit_records

__all__ = ["ActionError", "ActionResult", "AuditRecord", "apply", "audit_records"]
