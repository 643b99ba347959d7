"""The check registry: every phase-2 check declares itself here (the way Evidently registers stattests).

A check is one module with a thresholds model (its defaults), a measurement model, and two pure-ish
functions: ``measure(ctx, version, thresholds)`` (talks to the service and the reference encoders)
and ``judge(ctx, version, measurement, baseline, thresholds)`` (numbers only). It registers a
:class:`CheckSpec` at import. ``runbooks/sop.yaml`` lists the checks of a phase by name;
:func:`resolve` finds a name in the registry or imports ``diagnostics.deep_diagnosis.<name>`` (which
registers it), so a new modality is a new module plus a line in the runbook — no DAG change.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from diagnostics.deep_diagnosis.base import DeepContext, VersionOutcome
    from diagnostics.runbooks import Runbooks

T = TypeVar("T", bound=BaseModel)
M = TypeVar("M", bound=BaseModel)

PACKAGE = "diagnostics.deep_diagnosis"


class CheckNotFound(KeyError):
    pass


@dataclass(frozen=True)
class CheckSpec(Generic[T, M]):
    """One registered check: what it is, what it needs, its default thresholds and its two steps."""

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
    same = existing is not None and (existing.measure, existing.judge) == (spec.measure, spec.judge)
    if existing is not None and not same:
        raise ValueError(f"check {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def resolve(name: str) -> CheckSpec[Any, Any]:
    """The spec of ``name``, importing ``diagnostics.deep_diagnosis.<name>`` on first use."""
    if name not in _REGISTRY:
        try:
            importlib.import_module(f"{PACKAGE}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{PACKAGE}.{name}":
                raise
            raise CheckNotFound(
                f"no check {name!r}: add a module {PACKAGE}.{name} that registers it, "
                "or fix runbooks/sop.yaml "
                f"(registered: {', '.join(sorted(_REGISTRY)) or 'none'})"
            ) from None
    if name not in _REGISTRY:
        raise CheckNotFound(f"module {PACKAGE}.{name} was imported but registered no check {name!r}")
    return _REGISTRY[name]


def registered() -> dict[str, CheckSpec[Any, Any]]:
    return dict(_REGISTRY)


def checks_of_phase(books: Runbooks, phase: str = "deep_diagnosis") -> list[CheckSpec[Any, Any]]:
    """The specs of the checks ``runbooks/sop.yaml`` lists for ``phase``, in its order."""
    return [resolve(name) for name in books.sop.phase(phase).checks]
