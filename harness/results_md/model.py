"""The machinery of ``benchmarks/RESULTS.md``: a results file's JSON with the keys a spec reads
recorded, formatters, declarative figure tables, templated prose, the section header (command,
commits, machine, date, load) and the generic section of a file no spec covers.

Every number the Markdown shows is read from the JSON (or computed from it, and said so); a spec's
own text holds none (``static_digits`` finds one that does, for the tests)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

META_KEYS = ("benchmark", "command", "python", "date", "machine", "commit", "commits", "wall_s")


class _Missing:
    """A key the spec reads that the file does not have."""

    def __format__(self, spec: str) -> str:
        return "(not in the file)"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Data:
    """One results file's JSON. ``get`` takes a ``/``-separated path (a list segment is an index, or
    the element whose ``scenario``/``name``/``id`` it names) and records the top-level keys read and
    the paths that were absent, so a section can say what it left out and what it looked for in vain."""

    def __init__(
        self, name: str, raw: dict[str, Any], others: dict[str, dict[str, Any]] | None = None
    ) -> None:
        self.name = name
        self.raw = raw
        self.others = others or {}  # the other results files, by name (for a cross-reference)
        self.used: set[str] = set()
        self.absent: list[str] = []

    def get(self, path: str) -> Any:
        parts = path.split("/")
        self.used.add(parts[0])
        cur: Any = self.raw
        for part in parts:
            cur = _step(cur, part)
            if cur is MISSING:
                if path not in self.absent:
                    self.absent.append(path)
                return MISSING
        return cur

    def has(self, path: str) -> bool:
        """Whether ``path`` is in the file, without counting it as read or absent."""
        cur: Any = self.raw
        for part in path.split("/"):
            cur = _step(cur, part)
            if cur is MISSING:
                return False
        return True

    def fill(self, template: str) -> str:
        """``template`` with each ``{path}`` or ``{path:format}`` replaced by the file's value
        (``format``: a name in ``FORMATS`` or a Python format spec)."""

        def one(m: re.Match[str]) -> str:
            value = self.get(m.group(1))
            spec = m.group(2) or ""
            if value is MISSING:
                return format(value)
            if spec in FORMATS:
                return FORMATS[spec](value)
            if value is None:
                return "not recorded"
            return format(value, spec)

        return _FIELD.sub(one, template)


_FIELD = re.compile(r"\{([^{}:]+)(?::([^{}]+))?\}")


def _step(cur: Any, part: str) -> Any:
    if isinstance(cur, dict):
        return cur.get(part, MISSING)
    if isinstance(cur, list):
        if part.isdigit():
            return cur[int(part)] if int(part) < len(cur) else MISSING
        for item in cur:
            if isinstance(item, dict) and part in (item.get("scenario"), item.get("name"), item.get("id")):
                return item
    return MISSING


# Names with digits that are no figure: the project, percentiles, 5xx, dtypes, SOP phases, drift levels.
_NAMES = re.compile(
    r"Triage24|\bp\d+(?:\.\d+)*\b|\b5xx\b|float(?:32|64)|\b[Pp]hase[ -][123]\b|\blevel-\d\b|all-MiniLM-L6-v2"
)


def static_digits(template: str) -> list[str]:
    """The digits of a spec's own text: outside ``{fields}``, ``code`` and names (``_NAMES``). A figure
    belongs in the JSON, so the tests want this empty."""
    stripped = _NAMES.sub("", _FIELD.sub("", re.sub(r"`[^`]*`", "", template)))
    return re.findall(r"\S*\d\S*", stripped)


# --- formatters: a value of the JSON as a table cell or in prose ---

Fmt = Callable[[Any], str]


def _none(value: Any, none: str) -> str | None:
    if value is MISSING:
        return "–"
    if value is None:
        return none
    return None


def num(digits: int = 1, *, unit: str = "", none: str = "–", sep: bool = False, half: bool = False) -> Fmt:
    """``digits`` decimals; ``half``: one more where the value ends in a half (a median of an even
    number of counts), rather than rounding it away."""

    def f(value: Any) -> str:
        if (special := _none(value, none)) is not None:
            return special
        if isinstance(value, bool) or not isinstance(value, int | float):
            return str(value)
        places = digits + 1 if half and (value * 10**digits) % 1 == 0.5 else digits
        text = f"{value:,.{places}f}" if sep else f"{value:.{places}f}"
        return text + (f" {unit}" if unit else "")

    return f


def pct(digits: int = 1, *, none: str = "–") -> Fmt:
    def f(value: Any) -> str:
        if (special := _none(value, none)) is not None:
            return special
        return f"{value * 100:.{digits}f} %"

    return f


def times(digits: int = 1) -> Fmt:
    def f(value: Any) -> str:
        if (special := _none(value, "–")) is not None:
            return special
        return f"{value:.{digits}f}×"

    return f


def sci(digits: int = 1) -> Fmt:
    def f(value: Any) -> str:
        if (special := _none(value, "–")) is not None:
            return special
        return "0" if value == 0 else f"{value:.{digits}e}"

    return f


def text(value: Any) -> str:
    if (special := _none(value, "–")) is not None:
        return special
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


def span(fmt: Fmt) -> Fmt:
    """``[low, high]`` as ``low – high``."""

    def f(value: Any) -> str:
        if not isinstance(value, list) or len(value) != 2:
            return text(value)
        return f"{fmt(value[0])} – {fmt(value[1])}"

    return f


def each(fmt: Fmt, joiner: str = " / ") -> Fmt:
    def f(value: Any) -> str:
        if not isinstance(value, list):
            return fmt(value)
        return joiner.join(fmt(v) for v in value)

    return f


FORMATS: dict[str, Fmt] = {
    "n0": num(0),
    "n1": num(1),
    "n2": num(2),
    "n3": num(3),
    "count": num(0, sep=True),
    "pct0": pct(0),
    "pct1": pct(1),
    "pct2": pct(2),
    "x1": times(1),
    "x2": times(2),
    "sci1": sci(1),
    "span1": span(num(1)),
    "span2": span(num(2)),
    "text": text,
}


# --- Markdown ---


def cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """A GitHub Markdown table; ``right``: the columns aligned right (figures)."""
    align = ["---:" if i in right else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def code(value: Any) -> str:
    return f"`{value}`"


# --- blocks: what a section is made of; each renders one Markdown block from the file ---

Block = Callable[[Data], str]


@dataclass(frozen=True)
class Fig:
    """One row of a figure table: ``label`` (may hold ``{fields}``), one path per value column, how
    to format them, and optionally the goal (a path into the file, or a number the spec states) and
    the range (a path to ``[low, high]``, shown after the first value)."""

    label: str
    paths: tuple[str, ...]
    fmt: Fmt = field(default_factory=lambda: num(1))
    goal: str | float | None = None
    op: str = "≤"
    range: str | None = None
    bold: bool = False


def fig(label: str, *paths: str, **kw: Any) -> Fig:
    return Fig(label, paths, **kw)


def _met(value: Any, goal: Any, op: str) -> str:
    if not isinstance(value, int | float) or not isinstance(goal, int | float) or isinstance(value, bool):
        return ""
    ok = {"≤": value <= goal, "≥": value >= goal, "=": value == goal, "<": value < goal}[op]
    return " — met" if ok else " — **not met**"


@dataclass(frozen=True)
class Figures:
    """A table of figures: ``figure | <columns> | goal`` (no goal column when no row has one)."""

    rows: tuple[Fig, ...]
    columns: tuple[str, ...] = ("value",)
    first: str = "figure"

    def __call__(self, d: Data) -> str:
        with_goal = any(r.goal is not None for r in self.rows)
        literal = False
        out = []
        for r in self.rows:
            values = [d.get(p) if p else MISSING for p in r.paths]
            cells = [r.fmt(v) for v in values]
            if r.range is not None:
                cells[0] += f" ({span(r.fmt)(d.get(r.range))})"
            if r.bold and values and values[0] not in (MISSING, None):
                cells[0] = f"**{cells[0]}**"
            row = [d.fill(r.label), *cells]
            if with_goal:
                if r.goal is None:
                    row.append("–")
                else:
                    goal = d.get(r.goal) if isinstance(r.goal, str) else r.goal
                    literal = literal or not isinstance(r.goal, str)
                    row.append(f"{r.op} {r.fmt(goal)}{_met(values[0], goal, r.op)}")
            out.append(row)
        headers = [self.first, *self.columns, *(["goal"] if with_goal else [])]
        table = md_table(headers, out, right=range(1, len(headers) - (1 if with_goal else 0)))
        if literal:
            table += (
                "\n\nA goal the file does not record is the project's, as the spec in "
                "`harness/results_md/` states it."
            )
        return table


@dataclass(frozen=True)
class Prose:
    """A paragraph (or, ``bullets``, a list) of the spec's text with ``{fields}`` read from the file."""

    templates: tuple[str, ...]
    bullets: bool = False

    def __call__(self, d: Data) -> str:
        if self.bullets:
            return "\n".join(f"- {d.fill(t)}" for t in self.templates)
        return " ".join(d.fill(t) for t in self.templates)


def prose(*templates: str) -> Prose:
    return Prose(templates)


def bullets(*templates: str) -> Prose:
    return Prose(templates, bullets=True)


@dataclass(frozen=True)
class When:
    """``block`` only when the file has ``path``."""

    path: str
    block: Block

    def __call__(self, d: Data) -> str:
        return self.block(d) if d.has(self.path) else ""


def when(path: str, block: Block) -> When:
    return When(path, block)


def spec_texts(blocks: Sequence[Block]) -> list[str]:
    """The spec's own text in ``blocks`` (paragraphs, figure labels), for ``static_digits``."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Prose):
            out += b.templates
        elif isinstance(b, Figures):
            out += [r.label for r in b.rows]
        elif isinstance(b, When):
            out += spec_texts([b.block])
    return out


@dataclass(frozen=True)
class Section:
    """How one results file becomes Markdown: a title, paragraphs about what it measures (``{fields}``
    read from the file, no figure of their own), and the blocks (tables, templated notes)."""

    name: str
    title: str
    about: tuple[str, ...] = ()
    blocks: tuple[Block, ...] = ()
    load: Callable[[Data], str] | None = None
    also: tuple[str, ...] = ()  # further file names (stems) the same spec renders


# --- the section header and the generic section ---


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def commits_of(raw: dict[str, Any]) -> tuple[list[str], Counter[str]]:
    """The commits a file records (its own, its parts', its results'), in order of appearance, and
    how many results each gave."""
    seen: list[str] = []

    def add(c: Any) -> None:
        if isinstance(c, str) and c and c not in seen:
            seen.append(c)

    add(raw.get("commit"))
    for key in ("runs", "parts"):
        for part in _list(raw.get(key)):
            if isinstance(part, dict):
                add(part.get("commit"))
    for c in _list(raw.get("commits")):
        add(c)
    per_result: Counter[str] = Counter()
    for r in _list(raw.get("results")):
        if isinstance(r, dict) and isinstance(r.get("commit"), str):
            add(r["commit"])
            per_result[r["commit"]] += 1
    return seen, per_result


def commit_line(raw: dict[str, Any]) -> str:
    commits, per_result = commits_of(raw)
    if not commits:
        return "**commit**: not recorded in the file"
    if len(commits) == 1:
        return f"**commit**: `{commits[0]}`"
    counts = ", ".join(f"{n} from `{c}`" for c, n in per_result.most_common())
    return (
        f"**commits: {', '.join(f'`{c}`' for c in commits)} — figures stitched from runs on different "
        "commits**" + (f" (results: {counts})" if counts else "") + ". This is not one run of one commit: "
        "rerun every part on one commit and join them with `triage24 scenario merge`."
    )


def _loads(value: Any) -> str:
    return " / ".join(f"{x:g}" for x in value) if isinstance(value, list) else str(value)


def load_line(d: Data) -> str:
    """The load the file records, in the shapes the benchmarks write."""
    raw = d.raw
    la1 = raw.get("load_average_1m")
    if isinstance(la1, dict):
        d.used.add("load_average_1m")
        return "1-min load average " + ", ".join(f"{k} {v:g}" for k, v in la1.items())
    la = raw.get("load_average")
    if isinstance(la, dict) and {"start", "end"} <= la.keys():
        d.used.add("load_average")
        return f"load average (1/5/15 min) {_loads(la['start'])} at the start, {_loads(la['end'])} at the end"
    if isinstance(la, dict) and la:
        d.used.add("load_average")
        return "per part: " + "; ".join(
            f"{k}: {_loads(v.get('start'))} → {_loads(v.get('end'))}"
            for k, v in la.items()
            if isinstance(v, dict)
        )
    before, after = raw.get("load_avg_before"), raw.get("load_avg_after")
    if isinstance(before, list) and isinstance(after, list):
        d.used.update(("load_avg_before", "load_avg_after"))
        return f"load average (1/5/15 min) {_loads(before)} at the start, {_loads(after)} at the end"
    return "not recorded in the file"


def header(d: Data, *, load: Callable[[Data], str] | None = None) -> str:
    raw = d.raw
    d.used.update(k for k in META_KEYS if k in raw)
    lines = [
        f"- **command**: `{raw['command']}`"
        if "command" in raw
        else "- **command**: not recorded in the file",
    ]
    if "python" in raw:
        lines.append(f"- **python**: `{raw['python']}`")
    lines += [
        f"- {commit_line(raw)}",
        f"- **machine**: {raw.get('machine', 'not recorded in the file')}",
        f"- **date**: {raw.get('date', 'not recorded in the file')}",
        f"- **load**: {(load or load_line)(d)}",
    ]
    if isinstance(raw.get("wall_s"), int | float):
        lines.append(f"- **wall time**: {raw['wall_s']:g} s")
    return "\n".join(lines)


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return f"an object of {len(value)} keys"
    return "a value"


def footer(d: Data) -> str:
    """What the file holds that the section does not show, and what it looked for and missed."""
    left = [k for k in d.raw if k not in d.used]
    lines = []
    if left:
        lines.append(
            "Also in the file, not shown here: "
            + ", ".join(f"`{k}` ({_describe(d.raw[k])})" for k in left)
            + "."
        )
    if d.absent:
        lines.append(
            "Read by this section but absent from the file: " + ", ".join(code(p) for p in d.absent) + "."
        )
    return "\n\n".join(lines)


def generic_blocks(d: Data) -> str:
    """The figures of a file no spec covers: every top-level scalar, in file order."""
    rows = []
    for k, v in d.raw.items():
        if k in META_KEYS or isinstance(v, dict | list):
            continue
        d.used.add(k)
        rows.append([code(k), text(v) if not isinstance(v, float) else f"{v:g}"])
    intro = "No spec in `harness/results_md/specs.py` covers this file: its top-level figures as recorded."
    return intro + ("\n\n" + md_table(["key", "value"], rows, right=[1]) if rows else "")
