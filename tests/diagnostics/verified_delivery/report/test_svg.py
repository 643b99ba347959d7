"""The report's SVG charts: one mark per value, missing values shown as missing, text escaped, valid XML."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from diagnostics.verified_delivery.report import svg
from tests.diagnostics.verified_delivery.report.conftest import well_formed


def heights(doc: str, cls: str) -> list[float]:
    return [float(h) for h in re.findall(rf'<rect class="{cls}"[^>]*height="([0-9.]+)"', doc)]


def test_grouped_bars_one_bar_per_value_and_none_is_not_zero() -> None:
    doc = svg.grouped_bars(
        ["p50", "p99", "p99.9"],
        [("stable", [10.0, 100.0, None]), ("canary", [20.0, 400.0, 800.0])],
        title="text latency",
        unit="ms",
        limit=500.0,
    )
    well_formed(doc)
    assert doc.count('class="bar s0"') == 2 and doc.count('class="bar s1"') == 3
    assert doc.count('class="na"') == 1  # stable p99.9: no data, no bar
    canary = heights(doc, "bar s1")
    assert canary[2] == pytest.approx(2 * canary[1], rel=0.01)  # heights proportional to the values
    assert "<title>canary p99.9: 800 ms</title>" in doc
    assert 'class="limit"' in doc and "limit 500" in doc


def test_a_limit_far_above_the_data_is_written_not_drawn() -> None:
    doc = svg.bar_chart(
        ["p50", "p99"], [20.0, 40.0], title="router", unit="ms", limit=6000.0, limit_label="SLA"
    )
    assert 'class="limit"' not in doc and "SLA 6000 ms: far above every bar" in doc
    # the bars use the height, not a sliver under a 6 s axis
    assert max(heights(doc, "bar s0")) > 100


def test_mismatched_lengths_are_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="2 values for 3 groups"):
        svg.grouped_bars(["a", "b", "c"], [("s", [1.0, 2.0])], title="t")
    with pytest.raises(ValueError, match="3 counts for 2 bins"):
        svg.histogram_pair([0, 1, 2], ("a", [1, 2]), ("b", [1, 2, 3]), title="t")


def test_text_is_escaped() -> None:
    doc = svg.bar_chart(['<script>alert("x")</script>', "a&b"], [1.0, 2.0], title="t <b>")
    well_formed(doc)
    assert "<script>" not in doc and "&lt;script&gt;" in doc and "a&amp;b" in doc


def test_histogram_pair_draws_every_bin_of_both_series_as_shares() -> None:
    edges = [-1.0, -0.5, 0.0, 0.5, 1.0]
    doc = svg.histogram_pair(edges, ("matched", [0, 0, 1, 3]), ("mismatched", [10, 50, 30, 10]), title="cos")
    well_formed(doc)
    assert doc.count('class="bin s0"') == doc.count('class="bin s1"') == 4
    matched, mismatched = heights(doc, "bin s0"), heights(doc, "bin s1")
    # normalised: 3/4 of 64 matched vs 10/100 mismatched in the last bin
    assert matched[3] / mismatched[3] == pytest.approx(0.75 / 0.10, rel=0.02)
    assert "matched (n=4)" in doc and "mismatched (n=100)" in doc
    assert "<title>mismatched [0.5, 1): 10 (10.0%)</title>" in doc


@given(
    st.lists(st.floats(-1.5, 1.5, allow_nan=False), max_size=200),
    st.integers(2, 25),
)
def test_histogram_counts_bins_like_numpy(values: list[float], bins: int) -> None:
    edges = [round(x, 6) for x in np.linspace(-1, 1, bins + 1)]
    inside = [v for v in values if -1 <= v <= 1]
    expected = np.histogram(inside, bins=np.asarray(edges))[0].tolist()
    assert svg.histogram_counts(values, edges) == expected


def test_level_strip_cells_by_level_and_untested_grey() -> None:
    doc = svg.level_strip(
        [("stable", [0, 1, None]), ("canary", [2, None, 0])],
        ["text", "image", "audio"],
        title="drift",
        notes=[["top W/σ 0.01", "", ""], ["top W/σ 0.9", "", ""]],
    )
    well_formed(doc)
    classes = re.findall(r'<rect class="cell (level-[0-9na]+)"', doc)
    assert classes == ["level-0", "level-1", "level-na", "level-2", "level-na", "level-0"]
    assert f'fill="{svg.LEVEL_COLOURS[2]}"' in doc and "top W/σ 0.9" in doc
    assert "<title>canary text: L2 — top W/σ 0.9</title>" in doc
    with pytest.raises(ValueError, match="2 levels for 3 columns"):
        svg.level_strip([("stable", [0, 1])], ["a", "b", "c"], title="t")


def test_no_external_reference_and_no_pii_looking_digit_runs() -> None:
    doc = svg.grouped_bars(
        [f"g{i}" for i in range(30)], [("s", [float(i * 37 % 101) for i in range(30)])], title="many"
    )
    assert "http" not in doc and "href" not in doc
    # numbers are separated by quotes and letters: nothing a phone/card pattern would take
    assert not re.search(r"\d{7,}", doc)


def test_a_zero_is_a_stub_not_a_gap() -> None:
    doc = svg.bar_chart(["en-cancel", "zh-stock"], [0.0, 0.4286], title="WER")
    zero, high = heights(doc, "bar s0")
    assert zero == 1.0 and high > 100
    assert 'class="na"' not in doc and "<title>WER en-cancel: 0</title>" in doc


def _points(doc: str, cls: str) -> list[list[tuple[float, float]]]:
    return [
        [(float(x), float(y)) for x, y in (p.split(",") for p in pts.split())]
        for pts in re.findall(rf'<polyline class="{cls}" points="([^"]+)"', doc)
    ]


def test_line_panels_break_lines_at_gaps_and_draw_the_bound() -> None:
    panels = [
        svg.Panel(
            "p99",
            "ms",
            [("stable", [100.0, 200.0, None, None, 100.0]), ("canary", [None, 900.0, 1500.0, None, 3000.0])],
            limit=1200.0,
            limit_label="gate",
        ),
        svg.Panel(
            "error rate", "%", [("stable", [0.0, 0.0, 0.0, 0.0, 0.0]), ("canary", [None] * 5)], limit=1.0
        ),
    ]
    doc = svg.line_panels(["a", "b", "c", "d", "e"], panels, title="image <x>", name="t")
    well_formed(doc)
    assert "image &lt;x&gt;" in doc
    # p99: stable a-b, then e alone (a dot); canary b-c, then e alone; errors: stable one line, canary none
    assert len(_points(doc, "line s0")) == 2 and len(_points(doc, "line s1")) == 1
    assert doc.count('class="dot s0"') == 1 and doc.count('class="dot s1"') == 1
    assert re.findall(r'class="limit" data-limit="([^"]+)"', doc) == ["1200", "1"]
    assert "gate 1200 ms" in doc and "canary: 3 point(s), max 3000 ms, mean 1800 ms" in doc
    stable_p99 = _points(doc, "line s0")[0]
    assert stable_p99[0][0] < stable_p99[1][0]  # time runs left to right
    assert stable_p99[0][1] > stable_p99[1][1]  # 100 ms is drawn below 200 ms
    # the axis reaches the larger of the data (3000) and the bound: 5000; the bound sits at 1200 / 5000
    top, bottom = 40.0, 170.0
    limit_y = float(re.search(r'class="limit" data-limit="1200" x1="[^"]+" y1="([^"]+)"', doc).group(1))  # type: ignore[union-attr]
    assert limit_y == pytest.approx(bottom - (bottom - top) * 1200 / 5000, abs=0.05)
    with pytest.raises(ValueError, match="has 2 values for 5 times"):
        svg.line_panels(list("abcde"), [svg.Panel("p", "", [("s", [1.0, 2.0])])], title="t")
