"""The report's content, section by section, as plain data for the templates.

Each builder takes already-masked artifacts (:mod:`diagnostics.verified_delivery.report.load`) and
returns dictionaries of display-ready strings (numbers formatted once, in :mod:`.formatting`, for both
the HTML page and the Markdown summary) plus the charts as SVG strings. Builders are defensive about
shape — a valid JSON file may still miss a key or hold a list where an object was expected — because
the report is written at the end of an incident whose phases may have failed half-way; what cannot be
shown is said, not raised. One module per group of sections: :mod:`.evidence` (phases and checks),
:mod:`.response` (decisions and actions), :mod:`.regression` (the suite's diff), :mod:`.plots`
(the charts).
"""
