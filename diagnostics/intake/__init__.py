"""Alert intake: Alertmanager webhook deliveries -> validated, journaled, graded, deduplicated incident runs.

Pure library (no Airflow import): payload models (``payload``), grading (``grading``), run ids
(``runid``), the durable journal (``journal``, its schema in ``schema``, its typed records in
``records``, what an incident holds in ``members``), the decisions as pure functions (``decide``:
including correlation across alert groups and when an incident closes), the delivery path
(``service``: read, decide, write, then side effects), runs and notes in Airflow (``runs``), the
reconciler (``reconcile``), the webhook as a FastAPI app (``app``) and the ``triage24 intake``
commands (``cli``). The Airflow plugin in
``plugins/triage24_plugin.py`` mounts the app and supplies the run backend.
"""
