"""An incident's title for a person at 3 a.m.: what is broken, where, in one line.

``<target> <version> · <lead problem> on <its component>`` once findings exist (``testbed canary ·
model_not_loaded on embedding``); before them ``<target> <version> · <alert name>`` (``testbed canary ·
Http5xxBurst``, ``+N`` when more alerts fire); a run started by hand without an alert says
``manual investigation``. The version is left out where none is known. The same title is shown in the
Incidents view (list and page), the Airflow run's note and the notifications.

Pure: no I/O. The lead is whatever names a problem and the component it was found on (a check's
:class:`~diagnostics.incident.results.Finding`, the view's ranked finding, a decision's finding brief).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from diagnostics.incident.model import Incident

__all__ = [
    "MAX_TITLE_CHARS",
    "SEPARATOR",
    "Lead",
    "conf_alert_names",
    "incident_title",
    "title_of",
    "title_of_conf",
]

SEPARATOR = " · "
MAX_TITLE_CHARS = 140
MANUAL = "manual investigation"


class Lead(Protocol):
    """The lead finding: the problem (a priority-matrix id, or a check's own) and where it was found."""

    @property
    def problem(self) -> str: ...

    @property
    def component(self) -> str | None: ...


def _clean(text: object) -> str:
    """One line, no runs of blanks (labels and alert names are external input)."""
    return " ".join(str(text).split()) if text is not None else ""


def _alerts(names: Iterable[str]) -> str:
    unique = list(dict.fromkeys(n for n in (_clean(x) for x in names) if n))
    if not unique:
        return ""
    return unique[0] + (f" +{len(unique) - 1}" if len(unique) > 1 else "")


def incident_title(
    target: str | None,
    version: str | None = None,
    alert_names: Sequence[str] = (),
    lead: Lead | None = None,
) -> str:
    """The title from its parts (see the module docstring); never empty, at most MAX_TITLE_CHARS."""
    where = " ".join(p for p in (_clean(target) or "unknown target", _clean(version)) if p)
    if lead is not None and _clean(lead.problem):
        component = _clean(lead.component)
        what = _clean(lead.problem) + (f" on {component}" if component else "")
    else:
        what = _alerts(alert_names) or MANUAL
    title = f"{where}{SEPARATOR}{what}"
    return title if len(title) <= MAX_TITLE_CHARS else title[: MAX_TITLE_CHARS - 1] + "…"


def title_of(incident: Incident, lead: Lead | None = None) -> str:
    """The incident's title: its target, the version it suspects, its alerts (or the lead finding)."""
    return incident_title(incident.target, incident.suspected_version, incident.alert_names, lead)


def conf_alert_names(conf: Mapping[str, Any]) -> list[str]:
    """The firing alerts' names in a run's conf as the intake writes it (sorted, each once); read
    leniently: a conf the run will reject still gets a title."""
    alerts = conf.get("alerts")
    names = set()
    for alert in alerts if isinstance(alerts, list) else []:
        if not isinstance(alert, Mapping) or alert.get("status", "firing") != "firing":
            continue
        labels = alert.get("labels")
        if isinstance(labels, Mapping) and isinstance(labels.get("alertname"), str):
            names.add(labels["alertname"])
    return sorted(names)


def title_of_conf(conf: Mapping[str, Any], default_target: str | None = None) -> str:
    """The title before any finding, from a run's conf (the intake's or the trigger form's): ``target``
    and ``version`` (the alert group's labels) and the firing alerts' names."""
    target = conf.get("target") if isinstance(conf.get("target"), str) else None
    version = conf.get("version") if isinstance(conf.get("version"), str) else None
    return incident_title(target or default_target, version, conf_alert_names(conf))
