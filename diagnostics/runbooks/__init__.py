"""Runbooks as validated data: ``load_runbooks()`` reads every file in ``runbooks/`` and checks them
against each other. Problems from all files are reported together."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from diagnostics.runbooks.decision import DecisionPolicy
from diagnostics.runbooks.grading import Grading
from diagnostics.runbooks.loader import Problem, RunbookError, load_yaml_model
from diagnostics.runbooks.notifications import NotificationsFile
from diagnostics.runbooks.pii import PiiPolicy
from diagnostics.runbooks.regression import RegressionFile
from diagnostics.runbooks.schemas import PriorityMatrix, Sop, Targets, Thresholds

__all__ = ["FILES", "Problem", "RunbookError", "Runbooks", "load_runbooks"]

RunbookModel = (
    Sop
    | PriorityMatrix
    | Thresholds
    | Targets
    | Grading
    | DecisionPolicy
    | PiiPolicy
    | NotificationsFile
    | RegressionFile
)
FILES: dict[str, type[RunbookModel]] = {
    "sop.yaml": Sop,
    "priority_matrix.yaml": PriorityMatrix,
    "thresholds.yaml": Thresholds,
    "targets.yaml": Targets,
    "grading.yaml": Grading,  # alert intake: L1-L4 grades and escalation
    "decision.yaml": DecisionPolicy,  # the canary decision: risk, precedence, stages, human gate
    "pii.yaml": PiiPolicy,  # the audit bundle: mask or hash each kind of personal data
    "notifications.yaml": NotificationsFile,  # state changes to webhook, Apprise, PagerDuty
    "regression.yaml": RegressionFile,  # phase 3 and the scheduled runs: the golden regression suite
}


@dataclass(frozen=True)
class Runbooks:
    directory: Path
    sop: Sop
    priority_matrix: PriorityMatrix
    thresholds: Thresholds
    targets: Targets
    decision: DecisionPolicy
    pii: PiiPolicy
    notifications: NotificationsFile
    regression: RegressionFile

    def markdown(self, name: str) -> str:
        """The text of a Markdown runbook (for DAG and task docs)."""
        return (self.directory / name).read_text(encoding="utf-8")


# One process reads the runbooks many times (every task of a run, every check of a phase): a load is
# reused while the directory's files and the environment they are expanded with are unchanged.
_LOADED: dict[tuple[object, ...], Runbooks] = {}


def _signature(directory: Path, environ: Mapping[str, str] | None) -> tuple[object, ...]:
    files = tuple(
        (p.name, st.st_mtime_ns, st.st_size)
        for p in sorted(directory.glob("*"))
        if p.is_file() and (st := p.stat())
    )
    env = os.environ if environ is None else environ
    return (str(directory.resolve()), files, tuple(sorted(env.items())))


def load_runbooks(directory: Path | None = None, environ: Mapping[str, str] | None = None) -> Runbooks:
    """Every runbook file of ``directory`` (default: the settings' ``runbooks/``), validated and
    cross-checked; all problems of all files in one :class:`RunbookError`."""
    if directory is None:
        from diagnostics.config import Settings

        directory = Settings().runbooks_dir
    key = _signature(directory, environ) if directory.is_dir() else None
    if key is not None and key in _LOADED:
        return _LOADED[key]
    books = _load(directory, environ)
    if key is not None:
        if len(_LOADED) > 8:  # tests load many directories; a process normally has one
            _LOADED.clear()
        _LOADED[key] = books
    return books


def _load(directory: Path, environ: Mapping[str, str] | None) -> Runbooks:
    loaded: dict[str, object] = {}
    problems: list[Problem] = []
    for name, model in FILES.items():
        try:
            loaded[name] = load_yaml_model(directory / name, model, environ)
        except RunbookError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RunbookError(problems)
    books = Runbooks(
        directory=directory,
        sop=loaded["sop.yaml"],  # type: ignore[arg-type]
        priority_matrix=loaded["priority_matrix.yaml"],  # type: ignore[arg-type]
        thresholds=loaded["thresholds.yaml"],  # type: ignore[arg-type]
        targets=loaded["targets.yaml"],  # type: ignore[arg-type]
        decision=loaded["decision.yaml"],  # type: ignore[arg-type]
        pii=loaded["pii.yaml"],  # type: ignore[arg-type]
        notifications=loaded["notifications.yaml"],  # type: ignore[arg-type]
        regression=loaded["regression.yaml"],  # type: ignore[arg-type]
    )
    _cross_check(books)
    return books


def _cross_check(books: Runbooks) -> None:
    """References between files: Markdown runbooks exist, overrides name real targets, the decision's
    required checks are checks of the golden window."""
    problems: list[Problem] = []
    d = books.directory
    for i, phase in enumerate(books.sop.phases):
        if phase.doc and not (d / phase.doc).is_file():
            problems.append(Problem(d / "sop.yaml", None, f"phases[{i}].doc", f"no file {phase.doc} in {d}"))
    for i, problem in enumerate(books.priority_matrix.problems):
        if problem.runbook and not (d / problem.runbook).is_file():
            problems.append(
                Problem(
                    d / "priority_matrix.yaml",
                    None,
                    f"problems[{i}].runbook",
                    f"no file {problem.runbook} in {d}",
                )
            )
    known = {t.name for t in books.targets.targets}
    for name in books.thresholds.target_overrides:
        if name not in known:
            problems.append(
                Problem(
                    d / "thresholds.yaml",
                    None,
                    f"target_overrides.{name}",
                    f"unknown target; targets.yaml defines: {', '.join(sorted(known))}",
                )
            )
    golden = next((p for p in books.sop.phases if p.id == "golden_window"), None)
    phase1 = set(golden.checks) if golden else set()
    for i, check in enumerate(books.decision.evidence.required_checks):
        if check not in phase1:
            problems.append(
                Problem(
                    d / "decision.yaml",
                    None,
                    f"evidence.required_checks[{i}]",
                    f"{check} is not a golden_window check in sop.yaml ({', '.join(sorted(phase1))})",
                )
            )
    deep = next((p for p in books.sop.phases if p.id == "deep_diagnosis"), None)
    by_phase = {"phase1": phase1, "phase2": set(deep.checks) if deep else set()}
    required = books.decision.required_evidence
    for outcome, needs in (("continue", required.continue_), ("promote", required.promote)):
        for which, listed in (("phase1", needs.phase1), ("phase2", needs.phase2)):
            for i, check in enumerate(listed):
                if check not in by_phase[which]:
                    sop_phase = "golden_window" if which == "phase1" else "deep_diagnosis"
                    problems.append(
                        Problem(
                            d / "decision.yaml",
                            None,
                            f"required_evidence.{outcome}.{which}[{i}]",
                            f"{check} is not a {sop_phase} check in sop.yaml "
                            f"({', '.join(sorted(by_phase[which]))})",
                        )
                    )
    if problems:
        raise RunbookError(problems)
