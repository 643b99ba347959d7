"""The embedded local stack: Airflow 3.3, Prometheus, Alertmanager and the testbed on loopback."""

from harness.stack.manager import ComponentStatus, Stack, StackError

__all__ = ["ComponentStatus", "Stack", "StackError"]
