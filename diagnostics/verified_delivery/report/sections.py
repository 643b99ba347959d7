"""The report's content, section by section, as plain data for the templates.

Each builder takes already-masked artifacts (:mod:`diagnostics.verified_delivery.report.load`) and
returns dictionaries
of display-ready strings (numbers formatted here, once, for both the HTML page and the Markdown
summary) plus the charts as SVG strings. Builders are defensive about shape — a valid JSON file may
still miss a key or hold a list where an object was expected — because the report is written at the
end of an incident whose phases may have failed half-way; what cannot be shown is said, not raised.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from diagnostics.verified_delivery.report import svg
from diagnostics.verified_delivery.report.load import Artifact, as_dict, as_list, as_num, as_str
from diagnostics.verified_delivery.report.timeline import format_duration

VERSION_ORDER = ("stable", "canary")
CHANNEL_ORDER = ("text", "image", "audio", "router")
QUANTILES = ("p50", "p99", "p99.9", "p99.99")
STATUS_ORDER = ("failed", "degraded", "insufficient_evidence", "ok")
# Figures the report draws or tabulates on their own: not repeated as a line of numbers.
OWN_DISPLAY = frozenset({"matched_cosine", "mismatched_hist", "hist_edges", "feature_sets", "per_clip"})
MAX_INLINE = 16
MAX_TEXT = 600


# --- formatting ---------------------------------------------------------------------------------------


def fmt_num(value: Any, digits: int = 4) -> str:
    """A number as people read evidence: integers plain, others to ``digits`` significant places."""
    v = as_num(value)
    if v is None:
        return "n/a" if value is None else clip(as_str(value))
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    text = f"{v:.{digits}g}"
    return text if "e" not in text else f"{v:.{digits}f}"


def fmt_pct(value: Any) -> str:
    v = as_num(value)
    return "n/a" if v is None else f"{v:.2%}"


def fmt_ms(value: Any) -> str:
    v = as_num(value)
    if v is None:
        return "n/a"
    return f"{v:.0f} ms" if abs(v) >= 10 else f"{v:.1f} ms"


def fmt_s(value: Any) -> str:
    v = as_num(value)
    return "n/a" if v is None else format_duration(v)


def fmt_ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "n/a"


def clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def value_text(value: Any) -> str:
    """Any JSON value in one readable line (long lists and maps shortened, with the count)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return fmt_num(value)
    if isinstance(value, str):
        return clip(value)
    if isinstance(value, list):
        if not value:
            return "none"
        if all(not isinstance(v, dict | list) for v in value):
            shown = ", ".join(value_text(v) for v in value[:MAX_INLINE])
            more = len(value) - MAX_INLINE
            return clip(shown + (f", … ({more} more)" if more > 0 else ""))
    if isinstance(value, dict):
        if not value:
            return "none"
        if all(not isinstance(v, dict | list) for v in value.values()):
            items = list(value.items())
            shown = ", ".join(f"{k} {value_text(v)}" for k, v in items[:MAX_INLINE])
            more = len(items) - MAX_INLINE
            return clip(shown + (f", … ({more} more)" if more > 0 else ""))
    return clip(json.dumps(value, ensure_ascii=False, sort_keys=True, default=str))


def status_of(value: Any) -> str:
    text = as_str(value)
    return text if text in STATUS_ORDER else (text or "unknown")


def _ordered(keys: Iterable[str], order: Sequence[str]) -> list[str]:
    known = [k for k in order if k in keys]
    return known + sorted(k for k in keys if k not in order)


# --- findings and checks -------------------------------------------------------------------------------


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
    for version in _ordered(versions.keys(), VERSION_ORDER):
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


# --- decision and response -----------------------------------------------------------------------------


def decision_view(label: str, art: Artifact, *, collapsed: bool = False) -> dict[str, Any]:
    """A stored decision: outcome, rule, reasons, risks and the trace of every rule. ``collapsed``: shown
    folded (the fast-path decision, when the full one follows it and repeats most of it)."""
    view: dict[str, Any] = {
        "label": label,
        "rel": art.rel,
        "state": art.state,
        "note": art.note(),
        "collapsed": collapsed,
        "outcome": "",
        "rule": "",
    }
    if not art.ok:
        return view
    d = art.data
    gate = as_dict(d.get("human_gate"))
    thresholds = as_dict(d.get("thresholds"))
    risk_params = as_dict(thresholds.get("risk"))
    risks = []
    for r in as_list(d.get("risks")):
        rd = as_dict(r)
        canary, stable = as_dict(rd.get("canary")), as_dict(rd.get("stable"))
        risks.append(
            {
                "channel": as_str(rd.get("channel"), "?"),
                "kind": as_str(rd.get("kind"), "?"),
                "risk": fmt_num(rd.get("risk")),
                "threshold": fmt_num(rd.get("threshold")),
                "margin": fmt_num(rd.get("margin")),
                "canary": f"{fmt_num(canary.get('failures'), 4)}/{fmt_num(canary.get('requests'), 4)}",
                "stable": f"{fmt_num(stable.get('failures'), 4)}/{fmt_num(stable.get('requests'), 4)}",
                "verdict": as_str(rd.get("verdict"), "unknown"),
                "reason": clip(as_str(rd.get("reason"))),
            }
        )
    view.update(
        {
            "outcome": as_str(d.get("outcome"), "unknown"),
            "rule": as_str(d.get("rule"), "unknown"),
            "rule_description": as_str(d.get("rule_description")),
            "summary": clip(as_str(d.get("summary"))),
            "fast_path": d.get("fast_path") is True,
            "needs_human": d.get("needs_human") is True,
            "human_gate": (
                f"default {as_str(gate.get('choice'), '?')} after {fmt_s(gate.get('timeout_s'))}"
                + (", escalates" if gate.get("escalate") is True else "")
                if gate
                else ""
            ),
            "promote_to": value_text(d.get("promote_to")) if d.get("promote_to") is not None else "",
            "max_risk": fmt_num(d.get("max_risk")),
            "reasons": [clip(as_str(r)) for r in as_list(d.get("reasons"))],
            "trace": [
                {
                    "rule": as_str(as_dict(t).get("rule"), "?"),
                    "outcome": as_str(as_dict(t).get("outcome")),
                    "matched": as_dict(t).get("matched") is True,
                    "reasons": [clip(as_str(x)) for x in as_list(as_dict(t).get("reasons"))],
                }
                for t in as_list(d.get("trace"))
            ],
            "risks": risks,
            "risk_params": [{"name": k, "value": value_text(v)} for k, v in sorted(risk_params.items())],
        }
    )
    if "outcome" not in d:
        view["note"] = f"{art.rel} has no outcome"
    return view


def _state_text(value: Any) -> str:
    d = as_dict(value)
    return ", ".join(f"{k} {value_text(v)}" for k, v in sorted(d.items())) if d else value_text(value)


def action_view(name: str, art: Artifact) -> dict[str, Any]:
    """One response result: a rollback / promotion, the recovery verification, a hold, or another."""
    view: dict[str, Any] = {"name": name, "rel": art.rel, "state": art.state, "note": art.note(), "facts": []}
    if not art.ok:
        return view
    d = art.data
    view["status"] = status_of(d.get("status"))
    view["summary"] = clip(as_str(d.get("summary")))
    facts: list[dict[str, str]] = []

    def fact(label: str, value: str) -> None:
        facts.append({"name": label, "value": value})

    if (
        "outcome" in d and "method" in d
    ):  # a rollback or promotion (diagnostics.response.rollback ActionResult)
        fact("action", as_str(d.get("action"), name))
        fact("outcome", as_str(d.get("outcome")))
        fact("method", as_str(d.get("method")))
        fact("before", _state_text(d.get("before")))
        fact("after", _state_text(d.get("after")))
        fact("changed", value_text(d.get("changed")))
        fact("dry run", value_text(d.get("dry_run")))
        fact("decided by", as_str(as_dict(d.get("details")).get("decided_by"), "n/a"))
        fact("started", as_str(d.get("started_at"), "n/a"))
        fact("finished", as_str(d.get("finished_at"), "n/a"))
        if d.get("error"):
            fact("error", clip(as_str(d.get("error"))))
    elif "recovered" in d:  # the recovery verification
        fact("recovered", value_text(d.get("recovered")))
        fact("time to recover", fmt_s(d.get("time_to_recover_s")))
        fact("confirmed after", fmt_s(d.get("confirmed_after_s")))
        fact(
            "samples",
            f"{fmt_num(d.get('samples_total'))} taken, "
            f"{fmt_num(d.get('required_consecutive'))} good in a row needed, "
            f"every {fmt_s(d.get('interval_s'))} (timeout {fmt_s(d.get('timeout_s'))})",
        )
        fact("escalate", value_text(d.get("escalate")))
        samples = [as_dict(s) for s in as_list(d.get("samples"))]
        if samples:
            last = samples[-1]
            parts = [as_dict(p) for p in as_list(last.get("parts"))]
            fact(
                "last sample",
                clip(
                    "; ".join(
                        f"{as_str(p.get('name'))} {as_str(p.get('state'))}"
                        + (f" ({as_str(p.get('detail'))})" if p.get("detail") else "")
                        for p in parts
                    )
                ),
            )
    else:
        for k, v in sorted(as_dict(d.get("details")).items()):
            fact(k, value_text(v))
    view["facts"] = facts
    return view


def response_headline(actions: Sequence[dict[str, Any]], arts: dict[str, Artifact]) -> dict[str, str]:
    """The action taken and the time to recover, for the top of the report."""
    taken = [a for a in actions if a.get("state") == "present" and a["name"] in ("rollback", "promote")]
    held = arts.get("hold")
    if taken:
        d = arts[taken[0]["name"]].data
        action = f"{as_str(d.get('action'), taken[0]['name'])}: {as_str(d.get('outcome'), '?')}"
    elif held is not None and held.ok:
        action = "hold: " + clip(as_str(held.data.get("summary")), 200)
    elif actions:
        action = "none applied"
    else:
        action = "none recorded"
    recovery = arts.get("recovery_verification")
    if recovery is not None and recovery.ok:
        ttr = as_num(recovery.data.get("time_to_recover_s"))
        recovered = recovery.data.get("recovered") is True
        ttr_text = (
            format_duration(ttr)
            if ttr is not None and recovered
            else "not recovered" + (" (escalated)" if recovery.data.get("escalate") is True else "")
        )
    elif recovery is not None and recovery.state == "malformed":
        ttr_text = "unknown: " + recovery.note()
    else:
        ttr_text = "not verified (no recovery_verification.json)"
    return {"action": action, "time_to_recover": ttr_text}


# --- regression suite ----------------------------------------------------------------------------------


def regression_view(art: Artifact) -> dict[str, Any]:
    """The phase-3 regression suite's diff: each case's value against its baseline and tolerance."""
    view: dict[str, Any] = {
        "rel": art.rel,
        "state": art.state,
        "note": art.note(),
        "cases": [],
        "channels": [],
    }
    if not art.ok:
        return view
    d = art.data
    cases: list[dict[str, Any]] = []
    for c in as_list(d.get("cases")):
        cd = as_dict(c)
        value, base, tol = as_num(cd.get("value")), as_num(cd.get("baseline")), as_num(cd.get("tolerance"))
        delta = value - base if value is not None and base is not None else None
        cases.append(
            {
                "case": as_str(cd.get("case"), "?"),
                "channel": as_str(cd.get("channel")),
                "version": as_str(cd.get("version")),
                "status": status_of(cd.get("status")),
                "metric": as_str(cd.get("metric")),
                "value": value_text(cd.get("value")),
                "baseline": value_text(cd.get("baseline")),
                "tolerance": value_text(cd.get("tolerance")),
                "delta": ("+" if delta is not None and delta > 0 else "") + fmt_num(delta)
                if delta is not None
                else "n/a",
                "outside": delta is not None and tol is not None and abs(delta) > tol,
                "detail": clip(as_str(cd.get("detail")), 300),
            }
        )
    cases.sort(
        key=lambda c: (STATUS_ORDER.index(c["status"]) if c["status"] in STATUS_ORDER else 9, c["case"])
    )
    channels = [
        {"channel": str(k), "status": status_of(v)}
        for k, v in sorted(as_dict(d.get("channels")).items(), key=lambda kv: _channel_key(kv[0]))
    ]
    counts: dict[str, int] = {}
    for c in cases:
        counts[c["status"]] = counts.get(c["status"], 0) + 1
    view.update(
        {
            "status": status_of(d.get("status")) if "status" in d else "",
            "summary": clip(as_str(d.get("summary"))),
            "version": as_str(d.get("version")),
            "trigger": as_str(d.get("trigger")),
            "cases": cases,
            "channels": channels,
            "counts": counts,
        }
    )
    if not cases and not channels:
        view["note"] = f"{art.rel} lists no cases and no channels"
    return view


def _channel_key(channel: str) -> tuple[int, str]:
    return (CHANNEL_ORDER.index(channel) if channel in CHANNEL_ORDER else 99, channel)


# --- plots ---------------------------------------------------------------------------------------------


def latency_plots(metrics: Artifact) -> tuple[list[dict[str, str]], list[str]]:
    """Latency quantiles, stable vs canary, one chart per channel that had traffic (metrics_sla)."""
    if not metrics.ok:
        return [], [f"latency: {metrics.note()}"]
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for c in as_list(metrics.data.get("channels")):
        cd = as_dict(c)
        by.setdefault(as_str(cd.get("channel"), "?"), {})[as_str(cd.get("version"), "?")] = cd
    plots, notes = [], []
    for channel in sorted(by, key=_channel_key):
        versions = by[channel]
        order = _ordered(versions.keys(), VERSION_ORDER)
        series: list[tuple[str, list[float | None]]] = []
        for v in order:
            lat = as_dict(as_dict(versions[v].get("current")).get("latency_ms"))
            series.append((v, [as_num(lat.get(q)) for q in QUANTILES]))
        if not any(x is not None for _, values in series for x in values):
            notes.append(f"latency {channel}: no latency data in the window for {', '.join(order)}")
            continue
        any_version = next(iter(versions.values()))
        sla = as_num(any_version.get("sla_latency_ms"))
        q = as_num(any_version.get("sla_quantile"))
        label = f"SLA p{q * 100:g}" if q is not None else "SLA"
        bars = sum(1 for _, values in series for x in values if x is not None)
        plots.append(
            {
                "id": f"latency-{channel}",
                "title": f"{channel}: latency quantiles, {' vs '.join(order)}",
                "caption": "; ".join(
                    f"{v} " + ", ".join(f"{qn} {fmt_ms(x)}" for qn, x in zip(QUANTILES, values, strict=True))
                    for v, values in series
                ),
                "marks": str(bars),
                "svg": svg.grouped_bars(
                    list(QUANTILES),
                    series,
                    title=f"{channel} latency (current window)",
                    unit="ms",
                    name=f"latency-{channel}",
                    limit=sla,
                    limit_label=label,
                ),
            }
        )
    return plots, notes


def _top_w(figures: dict[str, Any], channel: str) -> float | None:
    """The largest normalised Wasserstein distance (W/σ_ref) among a channel's top drift features."""
    sets = as_dict(figures.get("feature_sets"))
    values: list[float] = []
    for t in as_list(as_dict(sets.get(f"{channel}_embedding")).get("top")):
        w = as_num(as_dict(t).get("wasserstein_normalised"))
        if w is not None:
            values.append(w)
    for t in as_list(as_dict(sets.get("latency")).get("top")):
        td = as_dict(t)
        w = as_num(td.get("wasserstein_normalised"))
        if w is not None and as_str(td.get("feature")) == channel:
            values.append(w)
    return max(values) if values else None


def drift_plots(drift: Artifact) -> tuple[list[dict[str, str]], list[str]]:
    """Drift level per channel and version (deep drift), with the top W/σ_ref in each cell."""
    if not drift.ok:
        return [], [f"drift: {drift.note()}"]
    versions = as_dict(drift.data.get("versions"))
    order = _ordered(versions.keys(), VERSION_ORDER)
    levels_by = {v: as_dict(as_dict(as_dict(versions[v]).get("figures")).get("levels")) for v in order}
    channels = sorted({c for lv in levels_by.values() for c in lv}, key=_channel_key)
    if not channels:
        return [], ["drift: no channel levels in the result: " + clip(as_str(drift.data.get("summary")), 300)]
    rows: list[tuple[str, list[int | None]]] = []
    notes: list[list[str]] = []
    for v in order:
        figures = as_dict(as_dict(versions[v]).get("figures"))
        row: list[int | None] = []
        row_notes: list[str] = []
        for c in channels:
            raw = as_num(levels_by[v].get(c))
            row.append(int(raw) if raw is not None and raw in (0.0, 1.0, 2.0) else None)
            w = _top_w(figures, c)
            row_notes.append(f"top W/σ {fmt_num(w, 3)}" if w is not None else "")
        rows.append((v, row))
        notes.append(row_notes)
    caption = "; ".join(
        f"{v}: "
        + ", ".join(
            f"{c} " + (f"L{lv}" if lv is not None else "n/a") for c, lv in zip(channels, r, strict=True)
        )
        for v, r in rows
    )
    return [
        {
            "id": "drift-levels",
            "title": "drift level per channel (0 none, 1 watch, 2 act)",
            "caption": caption,
            "marks": str(len(rows) * len(channels)),
            "svg": svg.level_strip(
                rows, channels, title="drift level per channel", notes=notes, name="drift-levels"
            ),
        }
    ], []


def similarity_plots(clip_result: Artifact) -> tuple[list[dict[str, str]], list[str]]:
    """Matched vs mismatched image–text cosine histograms per version (clip_consistency)."""
    if not clip_result.ok:
        return [], [f"similarity: {clip_result.note()}"]
    versions = as_dict(clip_result.data.get("versions"))
    plots, notes = [], []
    for v in _ordered(versions.keys(), VERSION_ORDER):
        outcome = as_dict(versions[v])
        figures = as_dict(outcome.get("figures"))
        edges = [e for e in (as_num(x) for x in as_list(figures.get("hist_edges"))) if e is not None]
        mism = [int(x) for x in (as_num(y) for y in as_list(figures.get("mismatched_hist"))) if x is not None]
        matched = [
            x for x in (as_num(y) for y in as_dict(figures.get("matched_cosine")).values()) if x is not None
        ]
        if len(edges) < 2 or len(mism) != len(edges) - 1 or not matched:
            notes.append(
                f"similarity {v}: no cosine histogram "
                f"({clip(as_str(outcome.get('summary')), 300) or 'not measured'})"
            )
            continue
        recall = as_dict(figures.get("recall"))
        caption = f"{v}: margin {fmt_num(figures.get('margin'))}, " + ", ".join(
            f"{k.replace('@', ' R@')} {fmt_num(x)}" for k, x in sorted(recall.items())
        )
        if "baseline_margin" in figures:
            caption += f"; baseline margin {fmt_num(figures.get('baseline_margin'))}"
        plots.append(
            {
                "id": f"similarity-{v}",
                "title": f"{v}: image–text cosine, matched vs mismatched pairs",
                "caption": caption,
                "marks": str(2 * (len(edges) - 1)),
                "svg": svg.histogram_pair(
                    edges,
                    ("matched", svg.histogram_counts(matched, edges)),
                    ("mismatched", mism),
                    title=f"{v}: pair cosine (share of pairs per bin)",
                    name=f"similarity-{v}",
                ),
            }
        )
    return plots, notes


def wer_plots(asr: Artifact) -> tuple[list[dict[str, str]], list[str], list[dict[str, str]]]:
    """WER/CER per golden clip, stable vs canary (asr_check); also the table of the same numbers."""
    if not asr.ok:
        return [], [f"ASR: {asr.note()}"], []
    versions = as_dict(asr.data.get("versions"))
    order = _ordered(versions.keys(), VERSION_ORDER)
    per = {v: as_dict(as_dict(as_dict(versions[v]).get("figures")).get("per_clip")) for v in order}
    clips: list[str] = []
    for v in order:
        clips.extend(c for c in per[v] if c not in clips)
    if not clips:
        return (
            [],
            ["ASR: no per-clip WER/CER in the result: " + clip(as_str(asr.data.get("summary")), 300)],
            [],
        )
    series = [(v, [as_num(per[v].get(c)) for c in clips]) for v in order]
    table = [{"clip": c, **{v: fmt_num(per[v].get(c)) for v in order}} for c in clips]
    limit = as_num(as_dict(asr.data.get("thresholds")).get("max_error_rate"))
    means = ", ".join(
        f"{v} mean {fmt_num(as_dict(as_dict(versions[v]).get('figures')).get('mean_error_rate'))}"
        for v in order
    )
    bars = sum(1 for _, values in series for x in values if x is not None)
    plot = {
        "id": "wer-per-clip",
        "title": "WER (en) / CER (zh) per golden clip",
        "caption": means,
        "marks": str(bars),
        "svg": svg.grouped_bars(
            clips,
            series,
            title="WER/CER per clip",
            name="wer-per-clip",
            limit=limit,
            limit_label="max per clip",
            width=max(560, 80 * len(clips) + 70),
        ),
    }
    missing = [
        f"ASR {v}: clip {c} has no WER/CER (timed out or failed)"
        for v, values in series
        for c, x in zip(clips, values, strict=True)
        if x is None
    ]
    return [plot], missing, table
