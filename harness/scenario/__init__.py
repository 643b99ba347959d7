"""Scenario suite: scripted incidents on the local stack, scored against what a correct pipeline concludes.

A scenario (``benchmarks/scenarios/*.yaml``, format in ``benchmarks/README.md``) injects testbed faults,
drives traffic, optionally takes a dependency down for a while, waits for the alert-driven (or
manually opened) incident run, and scores each expectation with the value it observed.

- :mod:`harness.scenario.schema`: the YAML format, validated with ``file:line: field: message``;
- :mod:`harness.scenario.observe`: what a finished run left behind (artifacts, timings, PII leaks);
- :mod:`harness.scenario.scoring`: expectations vs observations, and the suite's figures (pure);
- :mod:`harness.scenario.control`: the testbed, Prometheus/Alertmanager and process controls;
- :mod:`harness.scenario.runner`: runs scenarios end to end, bounded, cleaning up after itself, from
  its phases: :mod:`~harness.scenario.suite_stack` (the stack), :mod:`~harness.scenario.stage` (settle,
  warm up, clean up), :mod:`~harness.scenario.timeline` (faults, outages, runs),
  :mod:`~harness.scenario.runs` (Airflow runs, the human gate), :mod:`~harness.scenario.collect` (what
  the runs left) and :mod:`~harness.scenario.results` (the JSON files, the summary, rescoring);
- :mod:`harness.scenario.cli`: ``triage24 scenario run <file|dir>``.
"""
