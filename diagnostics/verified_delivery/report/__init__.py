"""The incident diff report (phase 3): one self-contained HTML page with inline SVG plots, and a Markdown
summary, built from an incident's stored artifacts. See :func:`build_report`."""

from __future__ import annotations

from diagnostics.verified_delivery.report.build import ReportError, ReportResult, build_report
from diagnostics.verified_delivery.report.timeline import PhaseSpan

__all__ = ["PhaseSpan", "ReportError", "ReportResult", "build_report"]
