"""Phase 1, the 0-2 h golden window: the phase (``phase``: which checks run, how each is fed, where
results go) and its checks, one module each: ``health``, ``model_integrity``, ``metrics_sla`` (with
the SOP's dynamic ``thresholds`` and the ``canary_gate``) and ``logs_check`` (with the priority
matrix, ``log_classify``)."""
