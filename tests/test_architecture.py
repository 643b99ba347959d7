"""The layout's rules, checked on the import graph: the library imports no Airflow, no testbed and no
harness (any import statement counts, inside functions and under TYPE_CHECKING too), and no module
imports one that imports it back at run time (imports inside functions count; an import under
``if TYPE_CHECKING:`` is for annotations only and does not make a cycle)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("diagnostics", "harness", "testbed")
MAX_MODULE_LINES = 600


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Ids of the import nodes under ``if TYPE_CHECKING:``."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            ids.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return ids


def _imports(name: str, path: Path, *, runtime_only: bool = False) -> Iterator[str]:
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_only(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(parent[: len(parent) - node.level + 1] + ([base] if base else []))
            yield base
            # "from pkg import module" imports the module
            yield from (f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)


def _graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports at run time (the deepest module each import names)."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets = set()
        for imported in _imports(name, path, runtime_only=True):
            while imported and imported not in MODULES:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def _external(name: str) -> set[str]:
    return {i.split(".")[0] for i in _imports(name, MODULES[name])}


@pytest.mark.parametrize("forbidden", ["airflow", "testbed", "harness"])
def test_the_library_imports_no_airflow_no_testbed_no_harness(forbidden: str) -> None:
    offenders = sorted(n for n in MODULES if n.split(".")[0] == "diagnostics" and forbidden in _external(n))
    assert offenders == [], f"diagnostics must not import {forbidden}: {offenders}"


def test_the_testbed_does_not_depend_on_the_harness() -> None:
    offenders = sorted(n for n in MODULES if n.startswith("testbed") and "harness" in _external(n))
    assert offenders == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    # A package's __init__ that re-exports its submodules is not a cycle of modules: leave the
    # package itself out of its own submodules' edges.
    graph = {n: {t for t in ts if not n.startswith(t + ".")} for n, ts in _graph().items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("folder", ["diagnostics", "dags", "plugins", "testbed", "harness"])
def test_no_module_over_the_size_limit(folder: str) -> None:
    sizes = {
        str(p.relative_to(REPO)): len(p.read_text(encoding="utf-8").splitlines())
        for p in (REPO / folder).rglob("*.py")
    }
    assert {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES} == {}
