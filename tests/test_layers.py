"""The layers of DESIGN.md, checked on the source: which package may import which.

An AST walk of daemon/xenkeep (every import statement, also those under
``if TYPE_CHECKING:`` and inside functions, relative ones resolved) fails
when

(a) a module of ``xenkeep.web`` imports ``xenkeep.store`` (handlers reach
    services, never the database);
(b) ``xenkeep.xapi`` imports, even through other modules, ``xenkeep.store``
    or ``xenkeep.pools`` (it is a pure client; the pools room uses it);
(c) ``xenkeep.formats`` imports anything of xenkeep outside itself (pure
    codecs);
(d) a module of ``xenkeep.web`` imports ``xenkeep.xapi`` (handlers never
    talk XAPI; the services do).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "daemon" / "xenkeep"


def _module_name(path: Path) -> str:
    parts = ["xenkeep", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    # A module's "." is its package; a package's "." is itself.
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_in(module: str, is_package: bool, source: str) -> frozenset[str]:
    """The xenkeep modules the source of ``module`` imports directly."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            found.add(target)
            # ``from xenkeep import store`` imports the module xenkeep.store.
            found.update(
                f"{target}.{alias.name}"
                for alias in node.names
                if f"{target}.{alias.name}" in modules()
            )
    return frozenset(m for m in found if m == "xenkeep" or m.startswith("xenkeep."))


@cache
def imports_of(module: str) -> frozenset[str]:
    """The xenkeep modules ``module`` imports directly."""
    path = modules()[module]
    return imports_in(module, path.name == "__init__.py", path.read_text(encoding="utf-8"))


def closure(module: str) -> set[str]:
    """Every xenkeep module ``module`` imports, directly or through others."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for target in imports_of(todo.pop()):
            # ``import xenkeep.a.b`` runs xenkeep/__init__ and xenkeep.a too.
            parts = target.split(".")
            for n in range(1, len(parts) + 1):
                name = ".".join(parts[:n])
                if name in modules() and name not in seen:
                    seen.add(name)
                    todo.append(name)
    return seen


def within(module: str, package: str) -> bool:
    """True when ``module`` is ``package`` or inside it."""
    return module == package or module.startswith(package + ".")


def members(package: str) -> list[str]:
    """The modules of a subpackage."""
    found = [m for m in modules() if within(m, package)]
    assert found, f"no module in {package}: is the walk looking at the right tree?"
    return found


def violations(package: str, forbidden: tuple[str, ...], *, transitive: bool = False) -> list[str]:
    out = []
    for module in members(package):
        reached = closure(module) if transitive else imports_of(module)
        out += [
            f"{module} imports {target}"
            for target in sorted(reached)
            if any(within(target, f) for f in forbidden)
        ]
    return out


def test_the_walk_sees_imports() -> None:
    # The rules below would pass vacuously on a walk that finds nothing.
    assert "xenkeep.xapi.client" in imports_of("xenkeep.pools.manager")
    assert "xenkeep.store" in imports_of("xenkeep.pools.registry")
    assert "xenkeep.web.keys" in imports_of("xenkeep.web.views")
    assert "xenkeep.store" in closure("xenkeep.pools.manager")


def test_web_imports_no_database_code() -> None:
    assert violations("xenkeep.web", ("xenkeep.store",)) == []


def test_xapi_client_imports_no_database_nor_pools() -> None:
    found = violations("xenkeep.xapi", ("xenkeep.store", "xenkeep.pools"), transitive=True)
    assert found == []


def test_formats_import_nothing_else_of_xenkeep() -> None:
    found = [
        f"{module} imports {target}"
        for module in members("xenkeep.formats")
        for target in sorted(imports_of(module))
        if not within(target, "xenkeep.formats")
    ]
    assert found == []


def test_web_handlers_never_import_the_xapi_client() -> None:
    assert violations("xenkeep.web", ("xenkeep.xapi",)) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from xenkeep import store", {"xenkeep", "xenkeep.store"}),
        ("from ..store import Database", {"xenkeep.store"}),
        ("from . import keys", {"xenkeep.web", "xenkeep.web.keys"}),
        ("if TYPE_CHECKING:\n    from xenkeep.store import Database", {"xenkeep.store"}),
        ("def f() -> None:\n    import xenkeep.store.db", {"xenkeep.store.db"}),
        ("import aiohttp\nfrom typing import Any", set()),
    ],
)
def test_the_walk_resolves_every_import_form(source: str, expected: set[str]) -> None:
    assert set(imports_in("xenkeep.web.views", False, source)) == expected
