"""Chart sections of the report: latency, image–text similarity, WER per clip and drift, as inline SVG."""

from __future__ import annotations

from typing import Any

from diagnostics.verified_delivery.report import svg
from diagnostics.verified_delivery.report.load import Artifact, as_dict, as_list, as_num, as_str
from diagnostics.verified_delivery.report.sections.formatting import (
    QUANTILES,
    VERSION_ORDER,
    channel_key,
    clip,
    fmt_ms,
    fmt_num,
    ordered,
)


def latency_plots(metrics: Artifact) -> tuple[list[dict[str, str]], list[str]]:
    """Latency quantiles, stable vs canary, one chart per channel that had traffic (metrics_sla)."""
    if not metrics.ok:
        return [], [f"latency: {metrics.note()}"]
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for c in as_list(metrics.data.get("channels")):
        cd = as_dict(c)
        by.setdefault(as_str(cd.get("channel"), "?"), {})[as_str(cd.get("version"), "?")] = cd
    plots, notes = [], []
    for channel in sorted(by, key=channel_key):
        versions = by[channel]
        order = ordered(versions.keys(), VERSION_ORDER)
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
    order = ordered(versions.keys(), VERSION_ORDER)
    levels_by = {v: as_dict(as_dict(as_dict(versions[v]).get("figures")).get("levels")) for v in order}
    channels = sorted({c for lv in levels_by.values() for c in lv}, key=channel_key)
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
    for v in ordered(versions.keys(), VERSION_ORDER):
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
    order = ordered(versions.keys(), VERSION_ORDER)
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
