"""The regression history (``<artifacts>/regression/history.jsonl``, one line per suite run) as frames,
and the trends per channel and per case that the incident report shows.

:func:`read_history` validates every line (:class:`HistoryLine`) and never raises for the file's
content: a line that is not JSON, not an object or not a run record is skipped, counted and named by
its line number (``History.skipped``, and one warning in the log). A missing file is an empty history.
The frames (pandas):

- ``History.channels``: one row per run × channel (``line``, ``at``, ``target``, ``version``,
  ``trigger``, ``run_status``, ``channel``, ``status``, ``failing`` = that channel's failing cases,
  ``seconds``);
- ``History.cases``: one row per run × failing case (``line``, ``at``, ``version``, ``case``,
  ``channel``).

Trends are over each version's last ``last`` runs (runs of stable and of canary are not mixed):

- per version and channel (:func:`channel_trends`): the pass rate (``ok`` or ``degraded`` among the
  judged runs; ``insufficient_evidence`` is not judged), the latest and previous status, and the
  failing cases now, in the previous run, their median over the window and the change against both;
- per version and failing case (:func:`case_trends`): in how many of the version's judged runs of the
  window it failed, whether it fails in the latest, and for how many runs in a row up to the latest.
  The history names failing cases only, so a case that never failed in the window is not listed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from diagnostics.incident.results import Status

log = logging.getLogger("triage24.regression")

DEFAULT_LAST = 10
JUDGED = (Status.OK.value, Status.DEGRADED.value, Status.FAILED.value)
PASSED = (Status.OK.value, Status.DEGRADED.value)
# The channel of a case, from its id's prefix (suite.build_cases names them "<prefix>:<golden id>").
CASE_CHANNEL = {
    "chat": "text",
    "text_embedding": "text",
    "image_embedding": "image",
    "transcription": "audio",
    "router_text": "router",
    "router_image_text": "router",
    "router_audio": "router",
}
CHANNEL_COLUMNS = (
    "line",
    "at",
    "target",
    "version",
    "trigger",
    "run_status",
    "channel",
    "status",
    "failing",
    "seconds",
)
CASE_COLUMNS = ("line", "at", "target", "version", "case", "channel")


def channel_of_case(case: str) -> str:
    """``router_audio:clip-3`` -> ``router``; ``unknown`` for an id no suite case has."""
    return CASE_CHANNEL.get(case.split(":", 1)[0], "unknown")


class HistoryLine(BaseModel):
    """One run as ``suite.append_history`` writes it (fields it may add later are ignored)."""

    model_config = ConfigDict(extra="ignore")

    at: AwareDatetime
    target: str = Field(min_length=1)
    version: str = Field(min_length=1)
    trigger: str = ""
    status: Status
    channels: dict[str, Status] = Field(default_factory=dict)
    failing: list[str] = Field(default_factory=list)
    seconds: float | None = Field(default=None, ge=0)


@dataclass(frozen=True)
class History:
    channels: pd.DataFrame
    cases: pd.DataFrame
    runs: int = 0
    skipped: list[str] = field(default_factory=list)


def _problem(raw: bytes) -> tuple[HistoryLine | None, str]:
    """The line as a run, or why it is not one."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 ({exc.reason})"
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(data, dict):
        return None, f"a JSON {type(data).__name__}, not an object"
    try:
        return HistoryLine.model_validate(data), ""
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "line"
        return None, f"{where}: {first['msg']}"


def read_history(path: Path, target: str | None = None) -> History:
    """The runs of ``path`` (of ``target`` only, when given) as frames; malformed lines skipped."""
    empty = History(pd.DataFrame(columns=list(CHANNEL_COLUMNS)), pd.DataFrame(columns=list(CASE_COLUMNS)))
    try:
        raw_lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return empty
    except OSError as exc:
        reason = f"{path.name}: cannot be read ({exc.strerror or exc})"
        log.warning("regression history %s", reason)
        return History(empty.channels, empty.cases, skipped=[reason])
    channels: list[dict[str, object]] = []
    cases: list[dict[str, object]] = []
    skipped: list[str] = []
    runs = 0
    for number, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        run, problem = _problem(raw)
        if run is None:
            skipped.append(f"line {number}: {problem}")
            continue
        if target is not None and run.target != target:
            continue
        runs += 1
        at = pd.Timestamp(run.at).tz_convert("UTC")
        base = {"line": number, "at": at, "target": run.target, "version": run.version}
        failing = [channel_of_case(c) for c in run.failing]
        for channel, status in run.channels.items():
            channels.append(
                {
                    **base,
                    "trigger": run.trigger,
                    "run_status": run.status.value,
                    "channel": channel,
                    "status": status.value,
                    "failing": failing.count(channel),
                    "seconds": run.seconds,
                }
            )
        cases += [{**base, "case": c, "channel": ch} for c, ch in zip(run.failing, failing, strict=True)]
    if skipped:
        log.warning(
            "regression history %s: %d malformed line(s) skipped: %s",
            path,
            len(skipped),
            "; ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""),
        )
    return History(
        pd.DataFrame(channels, columns=list(CHANNEL_COLUMNS)),
        pd.DataFrame(cases, columns=list(CASE_COLUMNS)),
        runs=runs,
        skipped=skipped,
    )


class ChannelTrend(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    channel: str
    runs: int = Field(description="runs of the window that list the channel")
    judged: int = Field(description="of those, runs with a verdict (not insufficient_evidence)")
    pass_rate: float | None = Field(description="ok or degraded among the judged runs; None: none judged")
    latest_at: datetime
    latest_status: Status
    previous_status: Status | None = None
    failing_latest: int
    failing_previous: int | None = None
    failing_median: float = Field(description="median of the failing cases over the window's runs")
    change_vs_previous: int | None = None
    change_vs_median: float


class CaseTrend(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    case: str
    channel: str
    runs: int = Field(description="the version's judged runs in the window")
    failed: int = Field(description="of those, the runs it failed in")
    fail_rate: float
    failing_latest: bool
    streak: int = Field(description="runs in a row it failed, up to the latest (0: passed the latest)")
    last_failed_at: datetime


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["at", "line"], kind="stable")


def channel_trends(history: History, last: int = DEFAULT_LAST) -> list[ChannelTrend]:
    """Per version and channel, over the version's last ``last`` runs that list the channel."""
    out: list[ChannelTrend] = []
    for (version, channel), group in _ordered(history.channels).groupby(["version", "channel"], sort=True):
        window = group.tail(last)
        judged = window[window["status"].isin(JUDGED)]
        latest = window.iloc[-1]
        previous = window.iloc[-2] if len(window) > 1 else None
        median = float(window["failing"].median())
        out.append(
            ChannelTrend(
                version=str(version),
                channel=str(channel),
                runs=len(window),
                judged=len(judged),
                pass_rate=float(judged["status"].isin(PASSED).mean()) if len(judged) else None,
                latest_at=latest["at"].to_pydatetime(),
                latest_status=Status(latest["status"]),
                previous_status=Status(previous["status"]) if previous is not None else None,
                failing_latest=int(latest["failing"]),
                failing_previous=int(previous["failing"]) if previous is not None else None,
                failing_median=median,
                change_vs_previous=int(latest["failing"] - previous["failing"])
                if previous is not None
                else None,
                change_vs_median=float(latest["failing"]) - median,
            )
        )
    return out


def case_trends(history: History, last: int = DEFAULT_LAST) -> list[CaseTrend]:
    """Per version and case that failed in the version's last ``last`` judged runs; most failures first."""
    runs = _ordered(history.channels[history.channels["status"].isin(JUDGED)])
    # one row per judged run (a run has a row per channel), in order, per version
    runs = runs.drop_duplicates("line")[["line", "at", "version"]]
    out: list[CaseTrend] = []
    for version, version_runs in runs.groupby("version", sort=True):
        window = version_runs.tail(last)
        lines = list(window["line"])
        failed = history.cases[history.cases["line"].isin(lines)]
        for case, rows in failed.groupby("case", sort=True):
            hits = set(rows["line"])
            streak = 0
            for line in reversed(lines):
                if line not in hits:
                    break
                streak += 1
            out.append(
                CaseTrend(
                    version=str(version),
                    case=str(case),
                    channel=str(rows["channel"].iloc[0]),
                    runs=len(lines),
                    failed=len(hits),
                    fail_rate=len(hits) / len(lines),
                    failing_latest=lines[-1] in hits,
                    streak=streak,
                    last_failed_at=window[window["line"].isin(hits)]["at"].max().to_pydatetime(),
                )
            )
    out.sort(key=lambda t: (-t.failed, -t.streak, t.version, t.case))
    return out
