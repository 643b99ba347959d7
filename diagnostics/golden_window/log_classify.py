"""Priority-matrix classification of log lines, and the paths of failing requests by trace id.

Which lines are classified: WARNING and above, plus any line reporting an HTTP status ≥ 500.
INFO lines describe normal operation; matching keywords there (a user's chat text that says
"timeout", a routing change) would only produce false alarms.

A line counts for **every** problem whose keywords it matches: a gateway line ``upstream error:
… Connection refused`` is evidence of both a 5xx burst and an unreachable service. The root cause
is usually the more specific problem, which the matrix lists first; the findings are ranked by
severity, then matrix order, and the trace paths show which module failed first.

Trace paths ("cross-modal route backtrace"): lines are grouped by ``trace_id`` (the gateway and the
service log the same one, see testbed/README.md "Traces"); a request failed when one of its lines
is ERROR or above or reports a status ≥ 500. Its path reads gateway → version:path → the module
that served it → the modules its route dispatched to, up to the one that failed, then the HTTP
status and the first error's headline::

    gateway -> canary:/v1/router -> multimodal_router -> embedding (HTTP 500: embedding dimension mismatch)
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from diagnostics.incident.results import SEVERITY_RANK
from diagnostics.pii import mask_pii
from diagnostics.runbooks.schemas import Component, PriorityMatrix, Problem, Severity
from diagnostics.sources.logs.records import LEVELS, LogRecord

__all__ = [
    "LogClassification",
    "ProblemHits",
    "TracePath",
    "UnclassifiedErrors",
    "classify_logs",
    "format_sample",
    "headline",
]

_ERROR = LEVELS["ERROR"]
_SAMPLE_CHARS = 300
_GATEWAY = "gateway"
_PROXIED = re.compile(r"^proxied (\S+) (\S+) -> (\S+) HTTP (\d{3})")
_UPSTREAM = re.compile(r"^upstream (?:error|timeout): (\S+) (\S+) on (\S+?):")
_HTTP_PREFIX = re.compile(r"^(?:request failed: )?HTTP \d{3}\s*")
_HEADLINE_CUT = re.compile(r": |\. | \(|\n")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProblemHits(_Model):
    """A priority-matrix problem seen in the logs, with its matrix entry and the numbers."""

    id: str
    title: str
    severity: Severity
    first_component: Component
    action: str
    runbook: str | None
    count: int
    first_seen: datetime
    last_seen: datetime
    versions: dict[str, int] = Field(description="lines per version (gateway included)")
    channels: dict[str, int] = Field(description="lines per channel ('-' outside requests)")
    where: dict[str, int] = Field(description="lines per 'version/channel'")
    served_by: dict[str, int] = Field(
        description="lines per service version, gateway lines counted for the upstream they name"
    )
    modules: dict[str, int] = Field(
        default_factory=dict, description="lines per logging module (the lines' 'module' field, if any)"
    )
    samples: list[str] = Field(description="up to N example lines, PII-masked")

    def logged_by(self) -> Component | None:
        """The module that logged most of the problem's lines, if it is a known component: where the
        problem happened, a better lead than the matrix's first component to look at (a CUDA OOM
        logged by the image encoder is the encoder's, whatever the matrix says first)."""
        if not self.modules:
            return None
        module, n = next(iter(sorted(self.modules.items(), key=lambda kv: -kv[1])))
        try:
            component = Component(module)
        except ValueError:
            return None
        return component if n * 2 > sum(self.modules.values()) else None


class UnclassifiedErrors(_Model):
    """ERROR lines (or status ≥ 500) that match no problem of the matrix."""

    count: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    versions: dict[str, int] = Field(default_factory=dict)
    samples: list[str] = Field(default_factory=list)


class TracePath(_Model):
    """One failing request path and how many failing traces took it."""

    path: str
    count: int
    status: int | None
    failing_module: str | None
    cause: str | None
    versions: dict[str, int]
    example_trace_id: str
    first_seen: datetime
    last_seen: datetime


class LogClassification(_Model):
    lines: int = Field(description="lines classified (all levels)")
    error_lines: int
    warning_lines: int
    first_ts: datetime | None
    last_ts: datetime | None
    levels: dict[str, int]
    versions: dict[str, int]
    problems: list[ProblemHits] = Field(description="detected problems, most severe first, then matrix order")
    unclassified: UnclassifiedErrors
    traces: int = Field(description="distinct trace ids seen")
    failing_traces: int
    trace_paths: list[TracePath] = Field(description="the most common failing paths, most frequent first")
    failing_modules: dict[str, dict[str, int]] = Field(
        description="version -> failing module -> failing traces"
    )
    top_failing_module: dict[str, str] = Field(description="version -> its most common failing module")


def headline(message: str, limit: int = 80) -> str:
    """The gist of an error message: without an ``HTTP 500`` prefix, cut at the first ``: ``/``. ``/`` (``.

    ``embedding dimension mismatch: image encoder returned …`` -> ``embedding dimension mismatch``.
    PII-masked (before cutting, so a number is never half-masked).
    """
    text = _HTTP_PREFIX.sub("", mask_pii(message).strip(), count=1)
    m = _HEADLINE_CUT.search(text)
    if m and m.start() > 0:
        text = text[: m.start()]
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_sample(record: LogRecord) -> str:
    """``12:00:01.123 canary/image ERROR message`` — PII-masked, then cut to 300 characters."""
    when = record.ts.strftime("%H:%M:%S.%f")[:-3]
    where = f"{record.version or '-'}/{record.channel or '-'}"
    text = f"{when} {where} {record.level} {mask_pii(record.message)}"
    return text if len(text) <= _SAMPLE_CHARS else text[: _SAMPLE_CHARS - 1] + "…"


class _Hop(NamedTuple):
    """The parts of a line a trace path needs (kept small: every traced line is held until the end)."""

    ts: datetime
    version: str | None
    level_no: int
    status: int | None
    module: str | None
    route: str | None
    path: str | None
    message: str


@dataclass
class _ProblemAcc:
    problem: Problem
    pattern: re.Pattern[str]
    count: int = 0
    first: datetime | None = None
    last: datetime | None = None
    versions: Counter[str] = field(default_factory=Counter)
    channels: Counter[str] = field(default_factory=Counter)
    where: Counter[str] = field(default_factory=Counter)
    served_by: Counter[str] = field(default_factory=Counter)
    modules: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    sample_keys: set[str] = field(default_factory=set)


def _compile(problem: Problem) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{kw})" for kw in problem.keywords), re.IGNORECASE)


def _add_sample(samples: list[str], keys: set[str], record: LogRecord, limit: int) -> None:
    # Distinct messages make better examples than three copies of the same line.
    if len(samples) >= limit:
        return
    key = re.sub(r"\d+", "#", record.message)[:200]
    if key in keys:
        return
    keys.add(key)
    samples.append(format_sample(record))


@dataclass
class _Tally:
    """What one pass over the records counts besides the problems: lines, levels, traces, the rest."""

    unclassified: UnclassifiedErrors = field(default_factory=UnclassifiedErrors)
    unclassified_keys: set[str] = field(default_factory=set)
    levels: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    traces: dict[str, list[_Hop]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    lines: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None

    def add(self, rec: LogRecord, status: int | None, is_failure: bool) -> None:
        """Count every line, and hold each traced one for the failing paths."""
        self.lines += 1
        self.levels[rec.level] += 1
        self.versions[rec.version or "-"] += 1
        self.first_ts = rec.ts if self.first_ts is None or rec.ts < self.first_ts else self.first_ts
        self.last_ts = rec.ts if self.last_ts is None or rec.ts > self.last_ts else self.last_ts
        if rec.trace_id:
            self.traces.setdefault(rec.trace_id, []).append(
                _Hop(
                    rec.ts,
                    rec.version,
                    rec.level_no,
                    status,
                    rec.field_str("module"),
                    rec.field_str("route"),
                    rec.path,
                    rec.message,
                )
            )
            if is_failure:
                self.failing.add(rec.trace_id)

    def add_unclassified(self, rec: LogRecord, samples: int) -> None:
        u = self.unclassified
        u.count += 1
        u.first_seen = rec.ts if u.first_seen is None or rec.ts < u.first_seen else u.first_seen
        u.last_seen = rec.ts if u.last_seen is None or rec.ts > u.last_seen else u.last_seen
        u.versions[rec.version or "-"] = u.versions.get(rec.version or "-", 0) + 1
        _add_sample(u.samples, self.unclassified_keys, rec, samples)


def _match_problems(accs: list[_ProblemAcc], rec: LogRecord, samples: int) -> bool:
    """Count ``rec`` for every problem whose keywords it matches; whether any did."""
    text = rec.text()
    matched = False
    for acc in accs:
        if acc.pattern.search(text) is None:
            continue
        matched = True
        acc.count += 1
        acc.first = rec.ts if acc.first is None or rec.ts < acc.first else acc.first
        acc.last = rec.ts if acc.last is None or rec.ts > acc.last else acc.last
        acc.versions[rec.version or "-"] += 1
        acc.channels[rec.channel or "-"] += 1
        acc.where[f"{rec.version or '-'}/{rec.channel or '-'}"] += 1
        served = rec.field_str("upstream") if rec.version == _GATEWAY else rec.version
        if served:
            acc.served_by[served] += 1
        if module := rec.field_str("module"):
            acc.modules[module] += 1
        _add_sample(acc.samples, acc.sample_keys, rec, samples)
    return matched


def _problem_hits(accs: list[_ProblemAcc], matrix: PriorityMatrix) -> list[ProblemHits]:
    """The problems seen, most severe first, then in matrix order."""
    order = {p.id: i for i, p in enumerate(matrix.problems)}
    found = sorted(
        (a for a in accs if a.count),
        key=lambda a: (SEVERITY_RANK[a.problem.severity], order[a.problem.id]),
    )
    return [
        ProblemHits(
            id=a.problem.id,
            title=a.problem.title,
            severity=a.problem.severity,
            first_component=a.problem.first_component,
            action=a.problem.action,
            runbook=a.problem.runbook,
            count=a.count,
            first_seen=a.first,  # set with the first count
            last_seen=a.last,
            versions=dict(a.versions.most_common()),
            channels=dict(a.channels.most_common()),
            where=dict(a.where.most_common()),
            served_by=dict(a.served_by.most_common()),
            modules=dict(a.modules.most_common()),
            samples=a.samples,
        )
        for a in found
    ]


def classify_logs(
    records: Iterable[LogRecord],
    matrix: PriorityMatrix,
    *,
    top_paths: int = 5,
    samples: int = 3,
    classify_level: str = "WARNING",
) -> LogClassification:
    """Count each matrix problem's lines, the unclassified errors, and the failing request paths."""
    accs = [_ProblemAcc(p, _compile(p)) for p in matrix.problems]
    floor = LEVELS.get(classify_level.upper(), LEVELS["WARNING"])
    tally = _Tally()
    for rec in records:
        status = rec.status
        is_failure = rec.level_no >= _ERROR or (status is not None and status >= 500)
        tally.add(rec, status, is_failure)
        if rec.level_no < floor and not is_failure:
            continue
        if not _match_problems(accs, rec, samples) and is_failure:
            tally.add_unclassified(rec, samples)

    levels = tally.levels
    paths, failing_modules = _trace_paths({t: tally.traces[t] for t in tally.failing}, top_paths)
    return LogClassification(
        lines=tally.lines,
        error_lines=sum(n for lvl, n in levels.items() if LEVELS.get(lvl, 20) >= _ERROR),
        warning_lines=levels.get("WARNING", 0),
        first_ts=tally.first_ts,
        last_ts=tally.last_ts,
        levels=dict(levels.most_common()),
        versions=dict(tally.versions.most_common()),
        problems=_problem_hits(accs, matrix),
        unclassified=tally.unclassified,
        traces=len(tally.traces),
        failing_traces=len(tally.failing),
        trace_paths=paths,
        failing_modules={v: dict(c.most_common()) for v, c in sorted(failing_modules.items())},
        top_failing_module={v: c.most_common(1)[0][0] for v, c in sorted(failing_modules.items())},
    )


@dataclass
class _Path:
    path: str
    status: int | None
    version: str
    failing_module: str | None
    cause: str | None


def _strip_query(path: str) -> str:
    return path.split("?", 1)[0]


def _build_path(hops: list[_Hop]) -> _Path:
    hops = sorted(hops, key=lambda h: h.ts)  # stable: equal timestamps keep the logged order
    gw = [h for h in hops if h.version == _GATEWAY]
    svc = [h for h in hops if h.version != _GATEWAY]
    # The service's per-request line carries path, status, module (and route for the router).
    req = next((h for h in svc if h.status is not None and h.path), None)
    version = req.version if req else next((h.version for h in svc if h.version), None)
    path = req.path if req else next((h.path for h in svc if h.path), None)
    for h in gw:
        m = _PROXIED.match(h.message) or _UPSTREAM.match(h.message)
        if m:
            version = version or m.group(3)
            path = path or m.group(2)
            break
    parts = [_GATEWAY] if gw else []
    version = version or "unknown"
    parts.append(f"{version}:{_strip_query(path)}" if path else version)

    modules: list[str] = []
    if req and req.module:
        modules.append(req.module)
    route = next((h.route for h in svc if h.route), None)
    if route:
        for m_name in route.split("->"):
            m_name = m_name.strip()
            if m_name and (not modules or modules[-1] != m_name):
                modules.append(m_name)
    # The first error that is not a per-request summary line (those carry a status) says why.
    cause_hop = next((h for h in svc if h.level_no >= _ERROR and h.status is None), None)
    if cause_hop is None:
        cause_hop = next((h for h in gw if h.level_no >= _ERROR and h.status is None), None)
    failing_module = cause_hop.module if cause_hop and cause_hop.module else None
    if failing_module is None and modules:
        failing_module = modules[-1]
    if failing_module is not None:
        if failing_module in modules:
            # modules after the failing one never ran
            modules = modules[: modules.index(failing_module) + 1]
        else:
            modules.append(failing_module)
    statuses = [h.status for h in hops if h.status is not None]
    status = max(statuses) if statuses else None
    cause = headline(cause_hop.message) if cause_hop else None
    text = " -> ".join(parts + modules)
    if status is not None and status >= 500:
        text += f" (HTTP {status}: {cause})" if cause else f" (HTTP {status})"
    elif cause:
        text += f" (ERROR: {cause})"
    return _Path(text, status, version, failing_module, cause)


def _trace_paths(failing: dict[str, list[_Hop]], top: int) -> tuple[list[TracePath], dict[str, Counter[str]]]:
    groups: dict[str, list[tuple[str, _Path, datetime, datetime]]] = {}
    by_version: dict[str, Counter[str]] = {}
    for trace_id, hops in failing.items():
        p = _build_path(hops)
        start = min(h.ts for h in hops)
        end = max(h.ts for h in hops)
        groups.setdefault(p.path, []).append((trace_id, p, start, end))
        by_version.setdefault(p.version, Counter())[p.failing_module or "unknown"] += 1
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:top]
    out = []
    for text, items in ranked:
        items.sort(key=lambda it: it[2])
        first = items[0][1]
        out.append(
            TracePath(
                path=text,
                count=len(items),
                status=first.status,
                failing_module=first.failing_module,
                cause=first.cause,
                versions=dict(Counter(it[1].version for it in items).most_common()),
                example_trace_id=items[0][0],
                first_seen=items[0][2],
                last_seen=max(it[3] for it in items),
            )
        )
    return out, by_version
