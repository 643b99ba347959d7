"""Evidence sections of the report: each phase's summary and checks, with findings, figures and gates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from diagnostics.verified_delivery.report.load import Artifact, as_dict, as_list, as_num, as_str
from diagnostics.verified_delivery.report.sections.formatting import (
    CHANNEL_ORDER,
    QUANTILES,
    STATUS_ORDER,
    VERSION_ORDER,
    clip,
    fmt_ms,
    fmt_num,
    fmt_pct,
    ordered,
    status_of,
    value_text,
)

# Figures the report draws or tabulates on their own: not repeated as a line of numbers.
OWN_DISPLAY = frozenset({"matched_cosine", "mismatched_hist", "hist_edges", "feature_sets", "per_clip"})


def finding_view(raw: Any) -> dict[str, str]:
    f = as_dict(raw)
    where = "/".join(x for x in (as_str(f.get("version")), as_str(f.get("channel"))) if x)
    return {
        "severity": as_str(f.get("severity"), "unknown"),
        "problem": as_str(f.get("problem"), "unknown"),
        "title": as_str(f.get("title")),
        "component": as_str(f.get("component")),
        "check": as_str(f.get("check")),
        "where": where,
        "evidence": clip(as_str(f.get("evidence"))),
        "action": clip(as_str(f.get("action"))),
        "runbook": as_str(f.get("runbook")),
    }


def figures_view(figures: dict[str, Any]) -> list[dict[str, str]]:
    """The numbers behind a version's verdict, one line per figure, except those drawn or tabulated."""
    return [{"name": k, "value": value_text(v)} for k, v in sorted(figures.items()) if k not in OWN_DISPLAY]


def _metrics_rows(data: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    channels = [as_dict(c) for c in as_list(data.get("channels"))]
    channels.sort(
        key=lambda c: (
            CHANNEL_ORDER.index(as_str(c.get("channel")))
            if as_str(c.get("channel")) in CHANNEL_ORDER
            else 99,
            VERSION_ORDER.index(as_str(c.get("version"))) if as_str(c.get("version")) in VERSION_ORDER else 9,
        )
    )
    for c in channels:
        cur = as_dict(c.get("current"))
        lat = as_dict(cur.get("latency_ms"))
        q = as_num(c.get("sla_quantile"))
        qlabel = f"p{q * 100:g}" if q is not None else "?"
        rows.append(
            {
                "channel": as_str(c.get("channel"), "?"),
                "version": as_str(c.get("version"), "?"),
                "requests": fmt_num(cur.get("requests"), 4),
                "rate_rps": fmt_num(cur.get("rate_rps"), 3),
                "error_rate": fmt_pct(cur.get("error_rate")),
                "rate_5xx": fmt_pct(cur.get("rate_5xx")),
                **{qn.replace(".", "_"): fmt_ms(lat.get(qn)) for qn in QUANTILES},
                "sla": f"{qlabel} ≤ {fmt_ms(c.get('sla_latency_ms'))}, "
                f"errors ≤ {fmt_pct(c.get('sla_error_rate'))}",
                "breaches": ", ".join(as_str(b) for b in as_list(c.get("breaches"))) or "none",
            }
        )
    return rows


def _gate_value(gate: str, value: Any) -> str:
    return fmt_ms(value) if gate.endswith("_ms") else fmt_pct(value)


def _gate_view(data: dict[str, Any]) -> dict[str, Any] | None:
    gate = as_dict(data.get("gate"))
    if not gate:
        return None
    channels = []
    for c in as_list(gate.get("channels")):
        cd = as_dict(c)
        gates = []
        for g in as_list(cd.get("gates")):
            gd = as_dict(g)
            name = as_str(gd.get("gate"))
            gates.append(
                {
                    "gate": name,
                    "verdict": as_str(gd.get("verdict"), "unknown"),
                    "value": _gate_value(name, gd.get("value")),
                    "recent_value": _gate_value(name, gd.get("recent_value")),
                    "limit": _gate_value(name, gd.get("limit")),
                    "stable_value": _gate_value(name, gd.get("stable_value")),
                    "reason": as_str(gd.get("reason")),
                }
            )
        channels.append(
            {
                "channel": as_str(cd.get("channel"), "?"),
                "verdict": as_str(cd.get("verdict"), "unknown"),
                "requests": fmt_num(cd.get("requests"), 4),
                "reason": as_str(cd.get("reason")),
                "gates": gates,
            }
        )
    return {
        "verdict": as_str(gate.get("verdict"), "unknown"),
        "reason": as_str(gate.get("reason")),
        "sustained_s": fmt_num(gate.get("sustained_s")),
        "min_requests": fmt_num(gate.get("min_requests")),
        "channels": channels,
    }


def _feature_sets(figures: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for name, fs in sorted(as_dict(figures.get("feature_sets")).items()):
        fd = as_dict(fs)
        top = [as_dict(t) for t in as_list(fd.get("top"))]
        lead = top[0] if top else {}
        rows.append(
            {
                "set": name,
                "level": value_text(fd.get("level")),
                "status": status_of(fd.get("status")),
                "top_feature": as_str(lead.get("feature"), "none"),
                "ks": fmt_num(lead.get("ks_statistic")) if lead else "n/a",
                "p_corrected": fmt_num(lead.get("ks_pvalue_corrected")) if lead else "n/a",
                "w": fmt_num(lead.get("wasserstein")) if lead else "n/a",
                "w_norm": fmt_num(lead.get("wasserstein_normalised")) if lead else "n/a",
                "insufficient": value_text(fd.get("insufficient")) if fd.get("insufficient") else "",
                "summary": clip(as_str(fd.get("summary"))),
            }
        )
    return rows


def check_view(name: str, art: Artifact) -> dict[str, Any]:
    """One check: its status, summary and findings; per version for phase-2 checks (with figures)."""
    view: dict[str, Any] = {
        "name": name,
        "rel": art.rel,
        "state": art.state,
        "note": art.note(),
        "status": art.state if not art.ok else status_of(art.data.get("status")),
        "summary": clip(as_str(art.data.get("summary"))),
        "findings": [],
        "versions": [],
        "metrics": [],
        "gate": None,
    }
    if not art.ok:
        return view
    data = art.data
    if "status" not in data:
        view["note"] = f"{art.rel} has no status: shown as far as it goes"
    versions = as_dict(data.get("versions"))
    for version in ordered(versions.keys(), VERSION_ORDER):
        outcome = as_dict(versions[version])
        figures = as_dict(outcome.get("figures"))
        view["versions"].append(
            {
                "version": version,
                "status": status_of(outcome.get("status")),
                "summary": clip(as_str(outcome.get("summary"))),
                "figures": figures_view(figures),
                "feature_sets": _feature_sets(figures),
                "findings": [finding_view(f) for f in as_list(outcome.get("findings"))],
            }
        )
    if not view["versions"]:
        view["findings"] = [finding_view(f) for f in as_list(data.get("findings"))]
    if name == "metrics_sla":
        view["metrics"] = _metrics_rows(data)
        view["gate"] = _gate_view(data)
    return view


def phase_view(
    phase: str,
    title: str,
    checks: Sequence[str],
    artifacts: dict[str, Artifact],
    summary: Artifact,
) -> dict[str, Any]:
    """A phase's evidence: its summary (suspected component, top action) and every check."""
    views = [check_view(name, artifacts[name]) for name in checks]
    data = summary.data if summary.ok else {}
    counts = {s: sum(1 for v in views if v["status"] == s) for s in (*STATUS_ORDER, "missing", "malformed")}
    return {
        "id": phase,
        "title": title,
        "summary_note": summary.note(),
        "status": status_of(data.get("status")) if summary.ok else summary.state,
        "summary": clip(as_str(data.get("summary"))),
        "suspected_component": as_str(data.get("suspected_component")),
        "suspected_version": as_str(data.get("suspected_version")),
        "top_action": clip(as_str(data.get("top_action"))),
        "checks": views,
        "counts": {k: v for k, v in counts.items() if v},
        "ran": any(a.state != "missing" for a in artifacts.values()) or summary.state != "missing",
    }
