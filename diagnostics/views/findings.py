"""An incident's findings from its phase summaries, ranked by severity, each with its runbook action."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diagnostics.runbooks.schemas import Sop
from diagnostics.views.artifacts import RunArtifacts
from diagnostics.views.models import LeadFinding, RankedFinding
from diagnostics.views.runbooks import RUNBOOK_NAME
from diagnostics.views.values import as_list, as_str

_SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def _runbook_ref(name: Any, runbooks_dir: Path | None) -> tuple[str | None, str | None]:
    """(the runbook to link, a runbook named but absent)."""
    if not isinstance(name, str) or not name:
        return None, None
    if not RUNBOOK_NAME.fullmatch(name):
        return None, name
    if runbooks_dir is not None and not (runbooks_dir / name).is_file():
        return None, name
    return name, None


def ranked_findings(
    art: RunArtifacts, sop: Sop, runbooks_dir: Path | None
) -> tuple[list[RankedFinding], dict[str, str]]:
    order = {p.id: i for i, p in enumerate(sop.phases)}
    collected: list[tuple[tuple[int, int, int], dict[str, Any], str]] = []
    summaries: dict[str, str] = {}
    for phase in sop.phases:
        if not phase.checks:
            continue
        summary = art.json(phase.id, "summary.json")
        if summary is None:
            continue
        if as_str(summary.get("summary")):
            summaries[phase.id] = str(summary["summary"])
        items = as_list(summary.get("findings"))
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not as_str(item.get("problem")):
                continue
            severity = str(item.get("severity") or "low").lower()
            key = (_SEVERITY_RANK.get(severity, len(_SEVERITY_RANK)), order[phase.id], i)
            collected.append((key, item, phase.id))
    collected.sort(key=lambda entry: entry[0])
    ranked = []
    for rank, (_, item, phase_id) in enumerate(collected, start=1):
        runbook, missing = _runbook_ref(item.get("runbook"), runbooks_dir)
        ranked.append(
            RankedFinding(
                rank=rank,
                phase=phase_id,
                severity=str(item.get("severity") or "low").lower(),
                check=as_str(item.get("check")),
                problem=str(item["problem"]),
                title=as_str(item.get("title")) or str(item["problem"]),
                component=as_str(item.get("component")),
                version=as_str(item.get("version")),
                channel=as_str(item.get("channel")),
                evidence=as_str(item.get("evidence")) or "",
                action=as_str(item.get("action")) or "",
                runbook=runbook,
                runbook_missing=missing,
            )
        )
    return ranked, summaries


def lead_finding(findings: list[RankedFinding]) -> LeadFinding | None:
    """The first of the ranked findings: the most severe, phase 1's before phase 2's at equal severity."""
    if not findings:
        return None
    top = findings[0]
    return LeadFinding(
        severity=top.severity,
        problem=top.problem,
        component=top.component,
        version=top.version,
        title=top.title,
        phase=top.phase,
    )
