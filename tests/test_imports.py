"""The package's import graph: data flows one way, so no module may import its way back to itself."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "gateway"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.AST, modules: set[str]) -> set[str]:
    """Every gateway module this source imports, at any depth in the file (a lazy import still closes a circle)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def import_graph() -> dict[str, set[str]]:
    sources = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(sources)
    return {name: _imported(ast.parse(path.read_text()), modules) - {name} for name, path in sources.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_gateway_has_no_import_circle() -> None:
    graph = import_graph()
    # A package's __init__ is imported with each of its modules: an edge into a package is an edge into it.
    cycle = _cycle({name: {dep for dep in deps if not name.startswith(f"{dep}.")} for name, deps in graph.items()})
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_import_circle_is_detected() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_route_modules_are_imported_by_the_app_alone() -> None:
    graph = import_graph()
    route_modules = {"gateway.api.routes", "gateway.api.compat", "gateway.api.ui"}
    importers = {name for name, deps in graph.items() if deps & route_modules}
    assert importers <= {"gateway.app", "gateway.api"}, f"route modules imported by {sorted(importers)}"
