"""The Airflow adapter the DAG files import (kept out of DAG parsing by ``dags/.airflowignore``).

What only Airflow knows, turned into the library's typed inputs: Connections -> evidence sources and
secrets (``connections``), the run's conf + the trigger form's Params -> the incident, and who
answered the human gate (``runs``), the human-gate operator (``gate``), the canary watch's
deferrable operator (``canary_watch``; its trigger is ``plugins/triage24_triggers.py``). The
runbooks are loaded once per process (``runs.books``). The DAG files themselves only wire tasks and
branches.
"""
