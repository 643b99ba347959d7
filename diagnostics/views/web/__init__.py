"""The Incidents view's web pages as FastAPI routers, without Airflow: ``plugins/triage24_ui.py`` wires
them into one app with Airflow's authentication and run records."""
