"""Alert intake: Alertmanager webhook deliveries -> validated, journaled, graded, deduplicated incident runs.

Pure library (no Airflow import): payload models (``payload``), grading (``grading``), run ids
(``runid``), the durable journal (``journal``), the decisions and the reconciler (``service``), the
webhook as a FastAPI app (``app``) and the ``triage24 intake`` commands (``cli``). The Airflow plugin
in ``plugins/triage24_plugin.py`` mounts the app and supplies the run backend.
"""
