"""The report's regression trend: the history beside the incident as tables, one chart per version,
its malformed lines among the problems, PII masked."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from diagnostics.verified_delivery.report import build_report
from tests.diagnostics.verified_delivery.regression.test_history import ALL_OK, LINES, run
from tests.diagnostics.verified_delivery.report.conftest import (
    HEALTHY,
    HEALTHY_ALERT,
    HEALTHY_TIMES,
    copy_incident,
    svgs,
    text_of,
    well_formed,
)

NOW = HEALTHY_ALERT + timedelta(hours=3)


def _row(html: str, cls: str, **data: str) -> str:
    """The text of the first table row of ``cls`` whose data attributes are ``data``."""
    attrs = "".join(f' data-{k}="{v}"' for k, v in data.items())
    match = re.search(rf'<tr class="{cls}"{attrs}>(.*?)</tr>', html, re.S)
    assert match, f"no {cls} row {data}"
    return " ".join(text_of(match.group(1)).split())


def test_the_trend_of_the_incidents_target_from_the_history_beside_it(tmp_path: Path) -> None:
    incident = copy_incident(HEALTHY, tmp_path, HEALTHY_ALERT, HEALTHY_TIMES)
    history = tmp_path / "regression" / "history.jsonl"
    history.parent.mkdir()
    pii = run("2026-12-07T09:00:00+00:00", "stable", ALL_OK, ["chat:alice@example.com"])
    history.write_text("\n".join([pii, *LINES]) + "\n", encoding="utf-8")  # the test_history lines, one down
    result = build_report(incident, now=NOW)
    html, md = result.html.read_text(encoding="utf-8"), result.markdown.read_text(encoding="utf-8")

    # canary router over its 4 runs: failing 0, 2, 1, 2 -> latest 2, previous 1, median 1.5; 1 of 4 passed
    assert _row(html, "trend", version="canary", channel="router") == (
        "canary router 4 (4 judged) 25% failed failed 2 +1 1.5 +0.5 2026-12-07 14:00:00 UTC"
    )
    assert _row(html, "trend", version="stable", channel="text") == (
        "stable text 3 (3 judged) 100% ok ok 0 0 0 0 2026-12-07 14:00:00 UTC"
    )
    assert _row(html, "trend-case", version="canary") == (
        "canary router_image_text:img-000 router 3 of 4 75% failing 3 2026-12-07 14:00:00 UTC"
    )
    assert "| canary | router | 4 (4 judged) | 25% | failed | failed | 2 | +1 | 1.5 | +0.5 |" in md

    charts = svgs(html)
    assert {"trend-stable", "trend-canary"} <= set(charts)
    assert result.plots == len(charts) == 5 + 2  # the healthy incident's five, one trend per version
    canary = charts["trend-canary"]
    well_formed(canary)
    assert canary.count('class="bar ') == 4 * 4  # four runs x four channels, zeros included
    assert "<title>router 12-07 14:00: 2 cases</title>" in canary

    # line numbers are the file's: the PII line first, so test_history's line 4 is line 5 here
    assert (
        "regression/history.jsonl: 3 malformed line(s) skipped (line 5: not JSON (Unterminated string"
        in " ".join(result.problems)
    )
    assert "line 11: a JSON list, not an object" in text_of(html)
    for page in (html, md):
        assert "alice@example.com" not in page
    assert "chat:[email]" in html


def test_without_a_history_the_section_says_so(tmp_path: Path) -> None:
    incident = copy_incident(HEALTHY, tmp_path, HEALTHY_ALERT, HEALTHY_TIMES)
    result = build_report(incident, now=NOW)
    html = result.html.read_text(encoding="utf-8")
    assert "no judged regression run of testbed in regression/history.jsonl" in text_of(html)
    assert not any("history" in p for p in result.problems)
    assert not any(name.startswith("trend-") for name in svgs(html))


def test_another_history_file_can_be_given(tmp_path: Path) -> None:
    incident = copy_incident(HEALTHY, tmp_path, HEALTHY_ALERT, HEALTHY_TIMES)
    other = tmp_path / "elsewhere.jsonl"
    other.write_text(LINES[1] + "\n", encoding="utf-8")  # one stable run, all ok
    html = build_report(incident, now=NOW, history=other).html.read_text(encoding="utf-8")
    assert _row(html, "trend", version="stable", channel="audio") == (
        "stable audio 1 (1 judged) 100% ok n/a 0 n/a 0 0 2026-12-07 10:00:00 UTC"
    )
    assert "no case failed in these runs" in text_of(html)
