"""Phase 3, the 12-24 h verified delivery: the regression suite (``regression``), the diff report
(``report``), the audit bundle (``audit``) and the SOP deadlines (``deadlines``); ``phase`` is how the
incident DAG runs them. No Airflow import."""
