"""Scenario suite: scripted incidents on the local stack, scored against what a correct pipeline concludes.

A scenario (``benchmarks/scenarios/*.yaml``, format in ``benchmarks/README.md``) injects testbed faults,
drives traffic, optionally takes a dependency down for a while, waits for the alert-driven (or
manually opened) incident run, and scores each expectation with the value it observed.

- :mod:`diagnostics.scenario.schema`: the YAML format, validated with ``file:line: field: message``;
- :mod:`diagnostics.scenario.observe`: what a finished run left behind (artifacts, timings, PII leaks);
- :mod:`diagnostics.scenario.scoring`: expectations vs observations, and the suite's figures (pure);
- :mod:`diagnostics.scenario.control`: the testbed, Prometheus/Alertmanager and process controls;
- :mod:`diagnostics.scenario.runner`: runs scenarios end to end, bounded, cleaning up after itself;
- :mod:`diagnostics.scenario.cli`: ``triage24 scenario run <file|dir>``.
"""
