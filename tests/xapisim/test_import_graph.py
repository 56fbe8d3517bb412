"""The simulator's modules import each other without a cycle, and never import xenkeep.

Every import statement counts, wherever it is: at module level, inside a
function, under ``if TYPE_CHECKING:``. A cycle dodged by moving an import
into a function is still a cycle (the modules still need each other), so the
walk reads the whole syntax tree, not only the top of each file.

The implicit edge from a submodule to its package (importing ``a.b`` first
runs ``a/__init__.py``) is not counted: Python initialises the package before
the submodule, so a package re-exporting its submodules (``vhdio``,
``xvaio``) is not a loop.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import xapisim

PACKAGE = "xapisim"
ROOT = Path(xapisim.__file__).parent


def module_names(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package is its ``__init__``)."""
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _target(name: str, modules: Iterable[str]) -> str | None:
    """The module of ours that a dotted name lands in (its longest known prefix)."""
    known = set(modules)
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, source: str, modules: Iterable[str], is_package: bool) -> set[str]:
    """The modules of ours that ``source`` imports, at any depth of its syntax tree."""
    known = set(modules)
    here = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _target(alias.name, known)
                if target is not None:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = here.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                # ``from . import storage`` imports the submodule, not the package.
                sub = f"{base}.{alias.name}"
                target = sub if sub in known else _target(base, known)
                if target is not None:
                    found.add(target)
    found.discard(module)
    return found


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    return {
        name: imports_of(name, path.read_text(), modules, path.name == "__init__.py")
        for name, path in modules.items()
    }


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path back to its start) per strongly connected group of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graph is small
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_path_through(sorted(group), graph) for group in groups]


def _path_through(group: list[str], graph: Mapping[str, set[str]]) -> list[str]:
    """The shortest cycle through the group's first module: start -> ... -> start."""
    members = set(group)
    start = group[0]
    parents: dict[str, str | None] = {start: None}
    queue = [start]
    for node in queue:  # breadth first; the queue grows as the loop runs
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                path = [node]
                while (parent := parents[path[-1]]) is not None:
                    path.append(parent)
                return [*reversed(path), start]
            if nxt not in parents:
                parents[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"{group} is not strongly connected")


def test_the_simulator_has_no_import_cycle() -> None:
    graph = import_graph(module_names())
    # The walk sees the package: the dispatcher needs the classes and the pool.
    assert {"xapisim.pool", "xapisim.classes.vm"} <= graph["xapisim.dispatch"]
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_simulator_never_imports_xenkeep() -> None:
    # Its VHD and XVA codecs are written apart from the product's on purpose.
    offenders = []
    for name, path in module_names().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            if any(n == "xenkeep" or n.startswith("xenkeep.") for n in names):
                offenders.append(name)
    assert not offenders


def test_imports_inside_functions_and_type_checking_blocks_count() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import storage\n"
        "if TYPE_CHECKING:\n"
        "    from .pool import SimPool\n"
        "def late():\n"
        "    from .transfer.vdi import export_raw_vdi\n"
        "    import xapisim.demo\n"
    )
    modules = [
        "xapisim",
        "xapisim.storage",
        "xapisim.pool",
        "xapisim.demo",
        "xapisim.transfer",
        "xapisim.transfer.vdi",
    ]
    found = imports_of("xapisim.faults", source, modules, is_package=False)
    assert found == {"xapisim.storage", "xapisim.pool", "xapisim.transfer.vdi", "xapisim.demo"}


def test_a_cycle_is_reported_as_a_path() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
