"""The check registry: every check of both phases declares itself here (the way Evidently registers
stattests), and ``runbooks/sop.yaml`` lists the checks of a phase by name.

- A phase-1 check (golden window) is one step, ``run(ctx) -> CheckResult``, fed by the phase's
  evidence sources; :mod:`diagnostics.golden_window.phase` registers the four of them.
- A phase-2 check (deep diagnosis) is one module with a thresholds model (its defaults), a measurement
  model, and two pure-ish functions: ``measure(ctx, version, thresholds)`` (talks to the service and
  the reference encoders) and ``judge(ctx, version, measurement, baseline, thresholds)`` (numbers
  only). It registers a :class:`CheckSpec` at import.

:func:`resolve` finds a name in the registry or imports the module that registers it
(``diagnostics.deep_diagnosis.<name>`` for phase 2), so a new modality is a new module plus a line in
the runbook — no DAG change.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from diagnostics.deep_diagnosis.base import DeepContext, VersionOutcome
    from diagnostics.incident.results import CheckResult
    from diagnostics.runbooks import Runbooks

T = TypeVar("T", bound=BaseModel)
M = TypeVar("M", bound=BaseModel)

PACKAGE = "diagnostics.deep_diagnosis"
PHASE2 = "deep_diagnosis"
# Where a phase's checks register: phase 2 one module per check, phase 1 all in its phase module.
REGISTERING_MODULE: dict[str, str] = {
    "golden_window": "diagnostics.golden_window.phase",
    PHASE2: PACKAGE + ".{name}",
}


class CheckNotFound(KeyError):
    pass


@dataclass(frozen=True)
class CheckSpec(Generic[T, M]):
    """One registered check: what it is, what it needs, and its steps — ``run`` (phase 1: one step)
    or ``measure`` + ``judge`` with default thresholds (phase 2)."""

    name: str
    modality: str = ""  # image-text, audio, embedding, timing, latency, ...
    phase: str = "deep_diagnosis"
    inputs: tuple[str, ...] = ()  # what it reads: service, golden.images, reference.clip, baseline, logs ...
    thresholds: type[T] = BaseModel  # type: ignore[assignment]
    measurement: type[M] = BaseModel  # type: ignore[assignment]
    measure: Callable[[DeepContext, str, T], M] | None = None
    judge: Callable[[DeepContext, str, M, M | None, T], VersionOutcome] | None = None
    gpu: bool = False  # heavy reference-model work: a GPU pod in kubernetes mode
    doc: str = ""
    run: Callable[[Any], CheckResult] | None = None  # a one-step (phase-1) check

    def thresholds_from(self, books: Runbooks) -> T:
        """This check's thresholds: ``thresholds.yaml`` ``deep.<name>`` over the model's defaults."""
        raw: dict[str, Any] = dict(books.thresholds.deep.get(self.name, {}))
        try:
            return self.thresholds.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(
                f"runbooks/thresholds.yaml: deep.{self.name}.{where}: {first['msg']} "
                f"(fields: {', '.join(self.thresholds.model_fields)})"
            ) from None


_REGISTRY: dict[str, CheckSpec[Any, Any]] = {}


def register(spec: CheckSpec[T, M]) -> CheckSpec[T, M]:
    """Add a check; registering the same name twice (a module imported under two names) is an error."""
    existing = _REGISTRY.get(spec.name)
    steps = (spec.measure, spec.judge, spec.run)
    same = existing is not None and (existing.measure, existing.judge, existing.run) == steps
    if existing is not None and not same:
        raise ValueError(f"check {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def resolve(name: str, phase: str = PHASE2) -> CheckSpec[Any, Any]:
    """The spec of ``name``, importing the module that registers it on first use."""
    module = REGISTERING_MODULE.get(phase, PACKAGE + ".{name}").format(name=name)
    if name not in _REGISTRY:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            raise CheckNotFound(
                f"no check {name!r}: add a module {module} that registers it, "
                "or fix runbooks/sop.yaml "
                f"(registered: {', '.join(sorted(_REGISTRY)) or 'none'})"
            ) from None
    if name not in _REGISTRY:
        raise CheckNotFound(f"module {module} was imported but registered no check {name!r}")
    return _REGISTRY[name]


def registered(phase: str | None = None) -> dict[str, CheckSpec[Any, Any]]:
    """Every registered check (of ``phase``, when given), by name."""
    return {n: s for n, s in _REGISTRY.items() if phase is None or s.phase == phase}


def checks_of_phase(books: Runbooks, phase: str = PHASE2) -> list[CheckSpec[Any, Any]]:
    """The specs of the checks ``runbooks/sop.yaml`` lists for ``phase``, in its order."""
    specs = [resolve(name, phase) for name in books.sop.phase(phase).checks]
    wrong = [s.name for s in specs if s.phase != phase]
    if wrong:
        raise ValueError(
            f"runbooks/sop.yaml: {', '.join(wrong)} listed under {phase} but registered for another phase"
        )
    return specs
