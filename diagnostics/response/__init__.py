"""The response: apply what the decision chose (``rollback``: gateway weight, Kubernetes Deployment,
Argo Rollout; promotion; hold) and verify that the service recovered (``verify``); ``phase`` is how the
incident DAG runs them. No Airflow import."""
