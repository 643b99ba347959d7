"""One incident run's facts for the metrics, read from its folder under the artifact root.

Every run of ``incident_response`` (an intake incident, a re-evaluation, a manual investigation) keeps
its evidence in ``<artifact root>/<run id>/`` (:mod:`diagnostics.incident.store`); what the metrics
need is in a handful of its files:

- ``incident.json``: the grade and when the alert started (``alert_started_at``), time zero;
- ``decision/fast_decision.json`` (a rollback the fast path made alone), ``decision/decision.json``
  (the full decision; ``needs_human`` and ``human_gate.timeout_s``) and ``decision/human_gate_<grade>.json``
  (the gate's answer, written the moment it arrives: who, when, which option; ``by`` null when the
  timeout chose). A decision has no time stamp inside: when it was stored is its file's modification
  time;
- ``response/rollback.json`` (method, outcome, ``finished_at``) and the other actions
  (``promotion``, ``hold``, ``superseded``), any of which means the gate was answered;
- ``deep_diagnosis/evidence.json`` (which phase-2 checks crashed) and ``verified_delivery/summary.json``
  (phase 3 ran: the run got past every gate).

A file that is missing or unreadable is left out (a half-written file is never fatal); the folder is
re-read only when one of these files changed (:class:`RunCache`), so a scrape of a few hundred
incidents is mostly ``stat`` calls.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from diagnostics.runbooks.decision import GATE_OPTIONS, Outcome

INCIDENT = "incident.json"
FULL = ("decision", "decision.json")
FAST = ("decision", "fast_decision.json")
ROLLBACK = ("response", "rollback.json")
ACTIONS = (
    ROLLBACK,
    ("response", "promotion.json"),
    ("response", "hold.json"),
    ("response", "superseded.json"),
)
EVIDENCE = ("deep_diagnosis", "evidence.json")
PHASE3 = ("verified_delivery", "summary.json")
ANSWER_PREFIX = "human_gate_"

_FILES = ((INCIDENT,), FULL, FAST, *ACTIONS, EVIDENCE, PHASE3)
_GRADE = re.compile(r"^L[1-4]$")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_CHOICE_OF_OPTION = {label: choice for choice, label in GATE_OPTIONS.items()}
OUTCOMES = frozenset({*(o.value for o in Outcome), *GATE_OPTIONS})  # a policy's or a human's


def grade_label(value: Any) -> str:
    """``L1``..``L4``, ``ungraded`` (a manual investigation), or ``other`` (never free text as a label)."""
    if value is None or value == "":
        return "ungraded"
    return value if isinstance(value, str) and _GRADE.match(value) else "other"


def name_label(value: Any) -> str:
    """A method or check name as a label value: the name when it is a plain name, else ``other``."""
    return value if isinstance(value, str) and _NAME.match(value) else "other"


def epoch(value: Any) -> float | None:
    """An ISO-8601 time (``Z`` or an offset; naive is UTC) as unix seconds, else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


@dataclass(frozen=True)
class Decided:
    """How the run was decided: ``outcome`` (a policy outcome, or the gate's choice), by whom
    (``fast_path``, ``policy``, ``human``, ``timeout``), and when (unix seconds; None: unknown)."""

    outcome: str
    by: str
    at: float | None


@dataclass(frozen=True)
class GateWait:
    """A human gate still waiting: asked when the decision was stored, with the grade's timeout."""

    asked_at: float
    timeout_s: float | None


@dataclass(frozen=True)
class RolledBack:
    method: str
    result: str  # the action's outcome: applied, noop, already_applied, dry_run, rate_limited, ...
    finished_at: float | None

    @property
    def mitigated(self) -> bool:
        """The rollback is in effect (``already_applied``: a retry found it applied; its time is the
        retry's, an upper bound)."""
        return self.result in ("applied", "already_applied")


@dataclass(frozen=True)
class RunFacts:
    run_id: str
    grade: str
    alert_started_at: float | None
    decided: Decided | None
    gate: GateWait | None
    rollback: RolledBack | None
    phase2_checks: tuple[str, ...]  # the checks phase 2's evidence holds
    crashed_checks: tuple[str, ...]  # of those, the ones that crashed
    finished: bool

    @property
    def time_to_decision_s(self) -> float | None:
        return _since(self.alert_started_at, self.decided.at if self.decided else None)

    @property
    def time_to_mitigation_s(self) -> float | None:
        if self.rollback is None or not self.rollback.mitigated:
            return None
        return _since(self.alert_started_at, self.rollback.finished_at)


def _since(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, end - start)


# --- reading one folder -----------------------------------------------------------------------------


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _answers(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in (folder / "decision").glob(f"{ANSWER_PREFIX}*.json") if p.is_file())
    except OSError:
        return []


def _answered(paths: list[Path]) -> Decided | None:
    """The first answer a gate of this run received (a run asks one gate: its grade's)."""
    found: list[Decided] = []
    for path in paths:
        answer = _json(path)
        if answer is None:
            continue
        chosen = answer.get("chosen")
        option = chosen[0] if isinstance(chosen, list) and chosen and isinstance(chosen[0], str) else ""
        outcome = _CHOICE_OF_OPTION.get(option, "other")
        by = "human" if answer.get("by") else "timeout"
        found.append(Decided(outcome, by, epoch(answer.get("at")) or _mtime(path)))
    return min(found, key=lambda d: d.at or float("inf")) if found else None


def _decided(folder: Path, fast: dict[str, Any] | None, full: dict[str, Any] | None) -> Decided | None:
    """The run's decision: the fast path's rollback when phase 1 alone rolled back (it stands,
    whatever the full decision says later); else a gate's answer; else the full decision when it
    acts without a human. None while undecided (a gate waits, or no decision yet)."""
    if fast is not None and fast.get("outcome") == Outcome.ROLLBACK.value and not fast.get("needs_human"):
        return Decided(Outcome.ROLLBACK.value, "fast_path", _mtime(folder.joinpath(*FAST)))
    answered = _answered(_answers(folder))
    if answered is not None:
        return answered
    if full is None or not isinstance(full.get("outcome"), str) or full.get("needs_human"):
        return None
    outcome = full["outcome"] if full["outcome"] in OUTCOMES else "other"
    return Decided(outcome, "policy", _mtime(folder.joinpath(*FULL)))


def _gate(
    folder: Path, full: dict[str, Any] | None, decided: Decided | None, finished: bool
) -> GateWait | None:
    """The gate this run waits at: the full decision asked a human, nobody answered, nothing acted."""
    if full is None or not full.get("needs_human") or decided is not None or finished:
        return None
    if any(folder.joinpath(*action).exists() for action in ACTIONS):
        return None
    asked = _mtime(folder.joinpath(*FULL))
    if asked is None:
        return None
    gate = full.get("human_gate")
    timeout = gate.get("timeout_s") if isinstance(gate, dict) else None
    if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
        return GateWait(asked, float(timeout))
    return GateWait(asked, None)


def _rollback(folder: Path) -> RolledBack | None:
    data = _json(folder.joinpath(*ROLLBACK))
    if data is None or not isinstance(data.get("outcome"), str):
        return None
    return RolledBack(
        name_label(data.get("method")), name_label(data["outcome"]), epoch(data.get("finished_at"))
    )


def _phase2(folder: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(every check phase 2's evidence holds, the ones that crashed)."""
    evidence = _json(folder.joinpath(*EVIDENCE))
    checks = evidence.get("checks") if evidence else None
    if not isinstance(checks, dict):
        return (), ()
    crashed = (name_label(n) for n, c in checks.items() if isinstance(c, dict) and c.get("crashed"))
    return tuple(sorted(name_label(n) for n in checks)), tuple(sorted(crashed))


def read_run(folder: Path) -> RunFacts:
    """The facts of the run whose artifacts are in ``folder`` (named by its run id)."""
    incident = _json(folder / INCIDENT) or {}
    fast, full = _json(folder.joinpath(*FAST)), _json(folder.joinpath(*FULL))
    finished = folder.joinpath(*PHASE3).exists()
    decided = _decided(folder, fast, full)
    checks, crashed = _phase2(folder)
    return RunFacts(
        run_id=folder.name,
        grade=grade_label(incident.get("grade")),
        alert_started_at=epoch(incident.get("alert_started_at")),
        decided=decided,
        gate=_gate(folder, full, decided, finished),
        rollback=_rollback(folder),
        phase2_checks=checks,
        crashed_checks=crashed,
        finished=finished,
    )


# --- every run, re-read only where something changed ------------------------------------------------

Signature = tuple[tuple[str, int, int], ...]


def signature(folder: Path) -> Signature:
    """What identifies the state of the files :func:`read_run` reads: name, mtime, size of each."""
    found: list[tuple[str, int, int]] = []
    for parts in _FILES:
        try:
            st = os.stat(folder.joinpath(*parts))
        except OSError:
            continue
        found.append(("/".join(parts), st.st_mtime_ns, st.st_size))
    for path in _answers(folder):
        try:
            st = path.stat()
        except OSError:
            continue
        found.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(found)


class RunCache:
    """The facts of every run under the artifact root, keeping each folder's until its files change."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._known: dict[str, tuple[Signature, RunFacts]] = {}

    def read(self) -> list[RunFacts]:
        """Every run folder (a folder with ``incident.json``); an absent root is no runs yet.
        OSError when the root exists but cannot be listed."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            self._known.clear()
            return []
        out: list[RunFacts] = []
        seen: set[str] = set()
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            folder = Path(entry.path)
            sig = signature(folder)
            if not sig or sig[0][0] != INCIDENT:  # not a run: audit/, regression/, ...
                continue
            seen.add(entry.name)
            cached = self._known.get(entry.name)
            if cached is None or cached[0] != sig:
                cached = (sig, read_run(folder))
                self._known[entry.name] = cached
            out.append(cached[1])
        for gone in set(self._known) - seen:
            del self._known[gone]
        return out
