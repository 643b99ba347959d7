"""Evidence sources, shared by every phase: Prometheus (``prometheus``), service logs from files or
Elasticsearch (``logs``) and the reachability probes of the pipeline's dependencies (``probes``).
Pure library: no Airflow import; ``sources.logs.elasticsearch`` (elasticsearch-py) is imported only
where that source is used."""
