"""Small inline-SVG charts for the incident report: pure functions from numbers to an ``<svg>`` string.

The report is one self-contained HTML page that ends up in the audit bundle, read years later and
offline, so the charts are plain SVG written here — no plotting library, no script, no external
stylesheet or font. Each function returns one ``<svg>`` element whose marks carry a class a test (or
a reader's stylesheet) can count: ``bar`` for a bar, ``bin`` for a histogram bin, ``cell`` for a
level-strip cell, with ``s<i>`` naming the series. Every value also has a ``<title>`` (the browser's
tooltip), so the number behind a bar is one hover away. A missing value (``None``) draws no mark
but an ``n/a`` label: missing data is shown as missing, never as zero.

Text is escaped here; callers pass labels that are already PII-masked. Coordinates are written with
one decimal and attributes separated by quotes, so no run of digits in the output can look like a
phone or card number to the PII masker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = [
    "LEVEL_COLOURS",
    "SERIES_COLOURS",
    "Panel",
    "bar_chart",
    "grouped_bars",
    "histogram_counts",
    "histogram_pair",
    "level_strip",
    "line_panels",
]

#: one colour per series (stable, canary, a third for anything else), readable by colour-blind people
SERIES_COLOURS: tuple[str, ...] = ("#4477aa", "#ee6677", "#228833", "#ccbb44")
#: drift level 0 (none), 1 (watch), 2 (act); ``None`` (not tested) is grey
LEVEL_COLOURS: dict[int | None, str] = {0: "#5aae61", 1: "#f1a340", 2: "#d7301f", None: "#bbbbbb"}

_FONT = 'font-family="sans-serif" font-size="11"'


def _f(x: float) -> str:
    """A coordinate: one decimal, no exponent."""
    return f"{x:.1f}"


def _num(v: float) -> str:
    """A value for a label or a tooltip: short but exact enough to read the evidence."""
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    a = abs(v)
    if a >= 1000:
        return f"{v:.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.4f}".rstrip("0").rstrip(".")


def _nice_max(v: float) -> float:
    """The axis top: the next 1, 2 or 5 × 10^k at or above ``v`` (1 when there is nothing to show)."""
    if not math.isfinite(v) or v <= 0:
        return 1.0
    exp = math.floor(math.log10(v))
    for m in (1.0, 2.0, 5.0, 10.0):
        top = m * 10.0**exp
        if top >= v * (1 - 1e-9):
            return top
    return 10.0 ** (exp + 1)


def _open(kind: str, name: str, width: int, height: int, title: str) -> list[str]:
    return [
        f'<svg class="plot plot-{escape(kind)}" '
        f'data-plot="{escape(name)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{_f(width / 2)}" y="14" text-anchor="middle" {_FONT} font-weight="bold">'
        f"{escape(title)}</text>",
    ]


def _y_axis(
    out: list[str], left: float, top: float, plot_h: float, plot_w: float, y_max: float, unit: str
) -> None:
    for i in range(5):
        v = y_max * i / 4
        y = top + plot_h - plot_h * i / 4
        out.append(
            f'<line x1="{_f(left)}" y1="{_f(y)}" x2="{_f(left + plot_w)}" y2="{_f(y)}" '
            'stroke="#dddddd" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{_f(left - 4)}" y="{_f(y + 4)}" text-anchor="end" {_FONT}>{escape(f"{v:.4g}")}</text>'
        )
    if unit:
        out.append(
            f'<text x="{_f(left - 4)}" y="{_f(top - 6)}" text-anchor="end" {_FONT} fill="#555555">'
            f"{escape(unit)}</text>"
        )


def _legend(out: list[str], names: Sequence[str], x: float, y: float) -> None:
    for i, name in enumerate(names):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        xi = x + i * 110
        out.append(f'<rect x="{_f(xi)}" y="{_f(y - 9)}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{_f(xi + 14)}" y="{_f(y)}" {_FONT}>{escape(name)}</text>')


def grouped_bars(
    groups: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    title: str,
    unit: str = "",
    name: str = "",
    limit: float | None = None,
    limit_label: str = "limit",
    width: int = 560,
    height: int = 240,
) -> str:
    """Bars of several series side by side per group (e.g. stable vs canary per latency quantile).

    ``series`` is ``[(name, values)]`` with one value per group; ``None`` is "no data". ``limit``
    draws a dashed horizontal line (an SLA or a gate) so a bar over it is seen at once. Bars are
    ``<rect class="bar s<i>">`` with a ``<title>`` holding the series, group and value.
    """
    for sname, values in series:
        if len(values) != len(groups):
            raise ValueError(f"series {sname!r} has {len(values)} values for {len(groups)} groups")
    left, right, top, bottom = 56.0, 12.0, 34.0, 46.0
    plot_w, plot_h = width - left - right, height - top - bottom
    finite = [v for _, vs in series for v in vs if v is not None and math.isfinite(v)]
    y_max = _nice_max(max(finite, default=0.0))
    # A limit far above the data (a 6 s SLA over 25 ms bars) would flatten every bar: it is then
    # written as text instead of drawn; a limit near the data is drawn, the axis stretched to it.
    limit_off_scale = limit is not None and math.isfinite(limit) and limit > 1.5 * y_max
    if limit is not None and math.isfinite(limit) and not limit_off_scale:
        y_max = _nice_max(max(y_max, limit))
    out = _open("bars", name or title, width, height, title)
    _y_axis(out, left, top, plot_h, plot_w, y_max, unit)
    n_groups, n_series = max(len(groups), 1), max(len(series), 1)
    group_w = plot_w / n_groups
    bar_w = max(group_w * 0.8 / n_series, 1.0)
    base_y = top + plot_h
    for g, group in enumerate(groups):
        gx = left + g * group_w + group_w * 0.1
        for s, (sname, values) in enumerate(series):
            v = values[g]
            x = gx + s * bar_w
            colour = SERIES_COLOURS[s % len(SERIES_COLOURS)]
            if v is None or not math.isfinite(v):
                out.append(
                    f'<text class="na" x="{_f(x + bar_w / 2)}" y="{_f(base_y - 3)}" text-anchor="middle" '
                    f'{_FONT} fill="#888888">n/a</text>'
                )
                continue
            # a zero is a value, not a gap: a 1-px stub tells it from "n/a"
            h = max(plot_h * max(v, 0.0) / y_max, 1.0)
            out.append(
                f'<rect class="bar s{s}" x="{_f(x)}" y="{_f(base_y - h)}" width="{_f(bar_w * 0.92)}" '
                f'height="{_f(h)}" fill="{colour}"><title>{escape(sname)} {escape(group)}: '
                f"{escape(_num(v))}{(' ' + escape(unit)) if unit else ''}</title></rect>"
            )
        label_y = base_y + 13
        out.append(
            f'<text x="{_f(left + g * group_w + group_w / 2)}" y="{_f(label_y)}" text-anchor="middle" '
            f"{_FONT}>{escape(group)}</text>"
        )
    if limit is not None and limit_off_scale:
        out.append(
            f'<text class="limit-note" x="{_f(left + plot_w)}" y="{_f(top - 6)}" text-anchor="end" {_FONT}>'
            f"{escape(limit_label)} {escape(_num(limit))}{(' ' + escape(unit)) if unit else ''}: "
            "far above every bar</text>"
        )
    elif limit is not None and math.isfinite(limit):
        y = base_y - plot_h * min(limit / y_max, 1.0)
        out.append(
            f'<line class="limit" x1="{_f(left)}" y1="{_f(y)}" x2="{_f(left + plot_w)}" y2="{_f(y)}" '
            'stroke="#333333" stroke-width="1.2" stroke-dasharray="5,3"/>'
        )
        out.append(
            f'<text x="{_f(left + 4)}" y="{_f(y - 3)}" text-anchor="start" {_FONT}>'
            f"{escape(limit_label)} {escape(_num(limit))}</text>"
        )
    if len(series) > 1:
        _legend(out, [s for s, _ in series], left, height - 8)
    out.append(
        f'<line x1="{_f(left)}" y1="{_f(base_y)}" x2="{_f(left + plot_w)}" y2="{_f(base_y)}" '
        'stroke="#333333" stroke-width="1"/>'
    )
    out.append("</svg>")
    return "".join(out)


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    title: str,
    unit: str = "",
    name: str = "",
    limit: float | None = None,
    limit_label: str = "limit",
    width: int = 560,
    height: int = 220,
) -> str:
    """One bar per label (a single series of :func:`grouped_bars`)."""
    return grouped_bars(
        labels,
        [(title, values)],
        title=title,
        unit=unit,
        name=name,
        limit=limit,
        limit_label=limit_label,
        width=width,
        height=height,
    )


def histogram_counts(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    """Counts of ``values`` in the bins ``[edges[i], edges[i+1])``, the last bin closed (numpy's rule),
    values outside the edges left out — the same binning the check used for ``mismatched_hist``."""
    if len(edges) < 2:
        return []
    counts = [0] * (len(edges) - 1)
    lo, hi = edges[0], edges[-1]
    for v in values:
        if not math.isfinite(v) or v < lo or v > hi:
            continue
        if v == hi:
            counts[-1] += 1
            continue
        # edges are few (tens): a linear scan keeps this obviously right
        for i in range(len(counts)):
            if edges[i] <= v < edges[i + 1]:
                counts[i] += 1
                break
    return counts


def histogram_pair(
    edges: Sequence[float],
    first: tuple[str, Sequence[int]],
    second: tuple[str, Sequence[int]],
    *,
    title: str,
    name: str = "",
    normalise: bool = True,
    width: int = 560,
    height: int = 220,
) -> str:
    """Two histograms over the same bins, side by side in each bin (e.g. matched vs mismatched pair
    cosines). ``normalise`` draws each as a share of its own total, so 64 matched pairs and 4000
    mismatched ones are comparable; the tooltip keeps the count. Bins are ``<rect class="bin s<i>">``,
    one per bin and series, drawn even when empty (height 0) so the bin count is the edges'."""
    n_bins = len(edges) - 1
    for sname, counts in (first, second):
        if len(counts) != n_bins:
            raise ValueError(f"{sname!r} has {len(counts)} counts for {n_bins} bins")
    left, right, top, bottom = 56.0, 12.0, 34.0, 46.0
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [max(sum(first[1]), 0), max(sum(second[1]), 0)]
    heights: list[list[float]] = []
    for (_, counts), total in zip((first, second), totals, strict=True):
        heights.append([c / total if normalise and total else float(c) for c in counts])
    y_max = _nice_max(max((h for hs in heights for h in hs), default=0.0))
    out = _open("histogram", name or title, width, height, title)
    _y_axis(out, left, top, plot_h, plot_w, y_max, "share" if normalise else "count")
    bin_w = plot_w / max(n_bins, 1)
    base_y = top + plot_h
    for s, ((sname, counts), hs) in enumerate(zip((first, second), heights, strict=True)):
        colour = SERIES_COLOURS[s % len(SERIES_COLOURS)]
        for i in range(n_bins):
            h = plot_h * hs[i] / y_max
            x = left + i * bin_w + s * bin_w / 2
            out.append(
                f'<rect class="bin s{s}" x="{_f(x)}" y="{_f(base_y - h)}" width="{_f(bin_w / 2 * 0.95)}" '
                f'height="{_f(h)}" fill="{colour}"><title>{escape(sname)} '
                f"[{escape(_num(edges[i]))}, {escape(_num(edges[i + 1]))}): {counts[i]}"
                f"{f' ({hs[i]:.1%})' if normalise and totals[s] else ''}</title></rect>"
            )
    step = max(1, n_bins // 5)
    for i in range(0, n_bins + 1, step):
        out.append(
            f'<text x="{_f(left + i * bin_w)}" y="{_f(base_y + 13)}" text-anchor="middle" {_FONT}>'
            f"{escape(_num(edges[i]))}</text>"
        )
    _legend(out, [f"{first[0]} (n={totals[0]})", f"{second[0]} (n={totals[1]})"], left, height - 8)
    out.append(
        f'<line x1="{_f(left)}" y1="{_f(base_y)}" x2="{_f(left + plot_w)}" y2="{_f(base_y)}" '
        'stroke="#333333" stroke-width="1"/>'
    )
    out.append("</svg>")
    return "".join(out)


def level_strip(
    rows: Sequence[tuple[str, Sequence[int | None]]],
    columns: Sequence[str],
    *,
    title: str,
    notes: Sequence[Sequence[str]] | None = None,
    name: str = "",
    cell_w: int = 120,
) -> str:
    """A heat strip: one row per version, one cell per channel, coloured by level (0 none, 1 watch,
    2 act, ``None`` not tested). ``notes[r][c]`` is a second line in the cell (e.g. the top W).
    Cells are ``<rect class="cell level-<n>">`` (``level-na`` when not tested)."""
    for rname, levels in rows:
        if len(levels) != len(columns):
            raise ValueError(f"row {rname!r} has {len(levels)} levels for {len(columns)} columns")
    left, top, cell_h = 70, 40, 38
    width = max(left + cell_w * max(len(columns), 1) + 10, left + 4 * 90 + 20)  # room for the legend
    height = top + cell_h * max(len(rows), 1) + 30
    out = _open("levels", name or title, width, height, title)
    for c, col in enumerate(columns):
        out.append(
            f'<text x="{_f(left + c * cell_w + cell_w / 2)}" y="{_f(top - 6)}" text-anchor="middle" '
            f"{_FONT}>{escape(col)}</text>"
        )
    for r, (rname, levels) in enumerate(rows):
        y = top + r * cell_h
        out.append(
            f'<text x="{_f(left - 6)}" y="{_f(y + cell_h / 2 + 4)}" text-anchor="end" {_FONT}>'
            f"{escape(rname)}</text>"
        )
        for c, level in enumerate(levels):
            known = level if level in LEVEL_COLOURS else None
            x = left + c * cell_w
            label = f"L{level}" if level is not None else "not tested"
            note = notes[r][c] if notes is not None and r < len(notes) and c < len(notes[r]) else ""
            out.append(
                f'<rect class="cell level-{level if level is not None else "na"}" x="{_f(x + 1)}" '
                f'y="{_f(y + 1)}" width="{_f(cell_w - 2)}" height="{_f(cell_h - 2)}" '
                f'fill="{LEVEL_COLOURS[known]}"><title>{escape(rname)} {escape(columns[c])}: '
                f"{escape(label)}{(' — ' + escape(note)) if note else ''}</title></rect>"
            )
            out.append(
                f'<text x="{_f(x + cell_w / 2)}" y="{_f(y + (15 if note else 23))}" text-anchor="middle" '
                f'{_FONT} font-weight="bold">{escape(label)}</text>'
            )
            if note:
                out.append(
                    f'<text x="{_f(x + cell_w / 2)}" y="{_f(y + 29)}" text-anchor="middle" {_FONT}>'
                    f"{escape(note)}</text>"
                )
    legend_y = top + cell_h * max(len(rows), 1) + 18
    for i, (lv, text) in enumerate(((0, "L0 none"), (1, "L1 watch"), (2, "L2 act"), (None, "not tested"))):
        x = left + i * 90
        out.append(f'<rect x="{x}" y="{legend_y - 9}" width="10" height="10" fill="{LEVEL_COLOURS[lv]}"/>')
        out.append(f'<text x="{x + 14}" y="{legend_y}" {_FONT}>{text}</text>')
    out.append("</svg>")
    return "".join(out)


@dataclass(frozen=True)
class Panel:
    """One panel of :func:`line_panels`: series over the shared x labels, a unit and a bound."""

    label: str
    unit: str
    series: Sequence[tuple[str, Sequence[float | None]]]
    limit: float | None = None
    limit_label: str = "limit"


def _runs(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """The stretches of consecutive finite values: a gap (None) ends a line, it is never bridged."""
    runs: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            if current:
                runs.append(current)
            current = []
        else:
            current.append((i, v))
    if current:
        runs.append(current)
    return runs


def _panel(out: list[str], panel: Panel, n: int, box: tuple[float, float, float, float]) -> None:
    """Draw one panel in ``box`` = (left, top, width, height)."""
    left, top, plot_w, plot_h = box
    finite = [v for _, vs in panel.series for v in vs if v is not None and math.isfinite(v)]
    drawn_limit = panel.limit is not None and math.isfinite(panel.limit)
    limits = [panel.limit] if drawn_limit and panel.limit is not None else []
    y_max = _nice_max(max([*finite, *limits], default=0.0))
    _y_axis(out, left, top, plot_h, plot_w, y_max, panel.unit)
    out.append(
        f'<text x="{_f(left + 4)}" y="{_f(top - 6)}" {_FONT} font-weight="bold">{escape(panel.label)}</text>'
    )
    base_y = top + plot_h

    def xy(i: int, v: float) -> str:
        x = left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)
        return f"{_f(x)},{_f(base_y - plot_h * min(max(v, 0.0), y_max) / y_max)}"

    unit = f" {panel.unit}" if panel.unit else ""
    for s, (sname, values) in enumerate(panel.series):
        colour = SERIES_COLOURS[s % len(SERIES_COLOURS)]
        known = [v for v in values if v is not None and math.isfinite(v)]
        tip = f"{sname}: {len(known)} point(s)" + (
            f", max {_num(max(known))}{unit}, mean {_num(sum(known) / len(known))}{unit}"
            if known
            else ", no data"
        )
        for run in _runs(values):
            if len(run) == 1:
                cx, cy = xy(*run[0]).split(",")
                out.append(
                    f'<circle class="dot s{s}" cx="{cx}" cy="{cy}" r="2.5" fill="{colour}">'
                    f"<title>{escape(tip)}</title></circle>"
                )
                continue
            points = " ".join(xy(i, v) for i, v in run)
            out.append(
                f'<polyline class="line s{s}" points="{points}" fill="none" stroke="{colour}" '
                f'stroke-width="1.6"><title>{escape(tip)}</title></polyline>'
            )
    if drawn_limit and panel.limit is not None:
        y = base_y - plot_h * min(panel.limit / y_max, 1.0)
        out.append(
            f'<line class="limit" data-limit="{escape(_num(panel.limit))}" x1="{_f(left)}" y1="{_f(y)}" '
            f'x2="{_f(left + plot_w)}" y2="{_f(y)}" stroke="#333333" stroke-width="1.2" '
            'stroke-dasharray="5,3"/>'
        )
        out.append(
            f'<text x="{_f(left + plot_w - 4)}" y="{_f(y - 3)}" text-anchor="end" {_FONT}>'
            f"{escape(panel.limit_label)} {escape(_num(panel.limit))}{escape(unit)}</text>"
        )
    out.append(
        f'<line x1="{_f(left)}" y1="{_f(base_y)}" x2="{_f(left + plot_w)}" y2="{_f(base_y)}" '
        'stroke="#333333" stroke-width="1"/>'
    )


def line_panels(
    x_labels: Sequence[str],
    panels: Sequence[Panel],
    *,
    title: str,
    name: str = "",
    width: int = 560,
    panel_h: int = 130,
    ticks: int = 5,
) -> str:
    """Line charts stacked over one time axis (e.g. a channel's p99 and error rate, stable vs canary).

    Every series has one value per x label; ``None`` is no data and breaks the line (a lone point
    between gaps is a dot). Lines are ``<polyline class="line s<i>">``, a panel's bound a dashed
    ``<line class="limit" data-limit="<value>">``, drawn even above the data (the axis reaches it).
    Series are named in a legend from the first panel's names; ``ticks`` x labels are written.
    """
    n = len(x_labels)
    for panel in panels:
        for sname, values in panel.series:
            if len(values) != n:
                raise ValueError(
                    f"series {sname!r} of {panel.label!r} has {len(values)} values for {n} times"
                )
    left, right, top, gap, bottom = 56.0, 12.0, 40.0, 34.0, 44.0
    plot_w = width - left - right
    height = int(top + len(panels) * panel_h + (len(panels) - 1) * gap + bottom)
    out = _open("lines", name or title, width, height, title)
    for p, panel in enumerate(panels):
        _panel(out, panel, n, (left, top + p * (panel_h + gap), plot_w, panel_h))
    base_y = top + len(panels) * panel_h + (len(panels) - 1) * gap
    shown = sorted({round(i * (n - 1) / max(ticks - 1, 1)) for i in range(ticks)}) if n > 1 else [0] * n
    for i in shown:
        x = left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)
        anchor = "end" if n > 1 and i == n - 1 else "start" if n > 1 and i == 0 else "middle"
        label = escape(x_labels[i])
        out.append(f'<text x="{_f(x)}" y="{_f(base_y + 13)}" text-anchor="{anchor}" {_FONT}>{label}</text>')
    if panels and len(panels[0].series) > 1:
        _legend(out, [s for s, _ in panels[0].series], left, height - 8)
    out.append("</svg>")
    return "".join(out)
