"""The check registry both phases register with (``registry``): every check of runbooks/sop.yaml is a
:class:`~diagnostics.checks.registry.CheckSpec`, found by name, whatever its phase."""
