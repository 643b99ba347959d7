"""``benchmarks/RESULTS.md`` generated from ``benchmarks/results/*.json`` (issue 22 §4), so that no
figure in it can drift from its file.

- :mod:`harness.results_md.model`: a file's JSON with the keys read recorded, formatters, figure
  tables, templated prose, the section header (command, commits, machine, date, load), the generic
  section of a file no spec covers;
- :mod:`harness.results_md.live`, :mod:`~harness.results_md.offline`, :mod:`~harness.results_md.suite`:
  one declarative spec per results file;
- :mod:`harness.results_md.render`: the whole Markdown, and the check against the committed file;
- :mod:`harness.results_md.cli`: ``triage24 results render [--check]``.
"""
