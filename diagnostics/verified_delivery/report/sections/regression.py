"""Regression section of the report: the phase-3 suite's diff of each case against its baseline."""

from __future__ import annotations

from typing import Any

from diagnostics.verified_delivery.report.load import Artifact, as_dict, as_list, as_num, as_str
from diagnostics.verified_delivery.report.sections.formatting import (
    STATUS_ORDER,
    channel_key,
    clip,
    fmt_num,
    status_of,
    value_text,
)


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
        for k, v in sorted(as_dict(d.get("channels")).items(), key=lambda kv: channel_key(kv[0]))
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
