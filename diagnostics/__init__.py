"""Triage24 diagnostics: the pure library behind the incident pipeline.

Nothing in this package imports Airflow. Every check takes typed inputs and returns a typed result
whose status is one of ``ok``, ``degraded``, ``failed`` or ``insufficient_evidence``.
"""

__version__ = "0.1.0"
