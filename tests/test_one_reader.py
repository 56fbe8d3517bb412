"""No read of the backup storage trusts unchecked bytes: stored blocks are read
through ``xenkeep.repo.reader`` alone, which checks each one against its
checksum (docs/repository.md, "Reading").

An AST walk of daemon/xenkeep fails when code outside the reader

(a) names the random-access VHD readers of ``xenkeep.formats.vhd``
    (``VhdFile``, ``VhdChain``), or calls their block reads
    (``.read_block``, ``.read_own``, ``.iter_blocks``, ``.write_raw``);
(b) reads files with ``os.pread``/``os.preadv``/``mmap`` (the few places
    that read metadata, not blocks, are listed below with the reason);
(c) builds the path of a stored VHD or checksum file (``vhd_path``,
    ``sums_path``) other than to write, rename or delete it;
(d) reads a checksum file (``read_sums``) other than to carry entries over
    in a merge, or changes a VHD in place (``VhdUpdater``) outside the merge.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "daemon" / "xenkeep"
READER = "xenkeep.repo.reader"
#: The codecs define the readers; the checked reader is built on them.
CODECS = "xenkeep.formats"

BLOCK_READERS = frozenset({"VhdFile", "VhdChain"})
BLOCK_READS = frozenset({"read_block", "read_own", "iter_blocks", "write_raw"})
FILE_READS = frozenset({("os", "pread"), ("os", "preadv"), ("mmap", "mmap")})
#: (module, function) reading bytes that are not block data, and why that is fine.
METADATA_READS = {
    ("xenkeep.repo.lock", "_read_fd"): "the lock file's holder record",
    ("xenkeep.repo.fsutil", "copy_range"): "moves bytes a caller checked (merge)",
    ("xenkeep.repo.fsutil", "probe_reflink"): "its own scratch files",
    ("xenkeep.repo.merge", "repair_tail"): "VHD footers",
    ("xenkeep.repo.merge", "_trim"): "VHD footers",
    ("xenkeep.repo.merge", "set_vhd_uuid"): "VHD footers",
}
#: Who may name stored files: the layout defines the names, the writer
#: creates files, the merge rewrites, renames and deletes them.
PATH_USERS = frozenset({"xenkeep.repo.layout", READER, "xenkeep.repo.writer", "xenkeep.repo.merge"})
SUMS_READERS = frozenset({"xenkeep.repo.sums", READER, "xenkeep.repo.merge"})
UPDATERS = frozenset({"xenkeep.repo.merge"})


@dataclass(frozen=True)
class Use:
    module: str
    function: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} ({self.function or 'module'}) {self.what}"


def _module_name(path: Path) -> str:
    parts = ["xenkeep", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class _Walker(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module = module
        self.stack: list[str] = []
        self.found: list[Use] = []

    def _add(self, node: ast.AST, what: str) -> None:
        self.found.append(Use(self.module, ".".join(self.stack), getattr(node, "lineno", 0), what))

    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    visit_FunctionDef = _scoped
    visit_AsyncFunctionDef = _scoped
    visit_ClassDef = _scoped

    def visit_Name(self, node: ast.Name) -> None:
        self._add(node, f"name {node.id}")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        base = node.value.id if isinstance(node.value, ast.Name) else ""
        self._add(node, f"attribute {base}.{node.attr}" if base else f"attribute .{node.attr}")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            self._add(node, f"name {alias.name}")


def uses_in(module: str, source: str) -> list[Use]:
    walker = _Walker(module)
    walker.visit(ast.parse(source))
    return walker.found


@functools.cache
def all_uses() -> tuple[Use, ...]:
    found: list[Use] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += uses_in(_module_name(path), path.read_text(encoding="utf-8"))
    return tuple(found)


def _outside(module: str, allowed: frozenset[str]) -> bool:
    return module not in allowed and not module.startswith(CODECS + ".")


def violations(uses: list[Use]) -> list[str]:
    out = []
    for use in uses:
        kind, _, name = use.what.partition(" ")
        attr = name.rsplit(".", 1)[-1]
        base = name.split(".", 1)[0] if "." in name else ""
        outside = _outside(use.module, frozenset({READER}))
        if kind == "name" and name in BLOCK_READERS and outside:
            out.append(f"{use}: a stored VHD is read through xenkeep.repo.reader")
        if kind == "attribute" and attr in BLOCK_READS and outside:
            out.append(f"{use}: stored blocks are read through xenkeep.repo.reader")
        if kind == "attribute" and (base, attr) in FILE_READS:
            top = use.function.split(".", 1)[0]
            if outside and (use.module, top) not in METADATA_READS:
                out.append(f"{use}: reads file bytes outside the reader")
        if attr in ("vhd_path", "sums_path") and _outside(use.module, PATH_USERS):
            out.append(f"{use}: names a stored file; read it through xenkeep.repo.reader")
        if kind == "name" and name == "read_sums" and _outside(use.module, SUMS_READERS):
            out.append(f"{use}: checksum files are read by the reader")
        if kind == "name" and name == "VhdUpdater" and _outside(use.module, UPDATERS):
            out.append(f"{use}: only the merge changes stored VHDs in place")
    return out


def test_nothing_outside_the_reader_reads_stored_blocks() -> None:
    assert violations(list(all_uses())) == []


def test_the_walk_sees_what_it_checks() -> None:
    # The rule above would pass vacuously on a walk that finds nothing.
    uses = {(u.module, u.what) for u in all_uses()}
    assert (READER, "name VhdChain") in uses
    assert (READER, "attribute .read_block") in uses
    assert ("xenkeep.repo.merge", "attribute os.pread") in uses
    assert ("xenkeep.backup.restore", "attribute datastore.open_point_disk") in uses
    for module, function in METADATA_READS:
        assert any(
            u.module == module and u.function.split(".", 1)[0] == function for u in all_uses()
        ), f"{module}.{function} no longer exists: drop it from METADATA_READS"


@pytest.mark.parametrize(
    "source",
    [
        "from xenkeep.formats.vhd import VhdFile\nVhdFile.open('x.vhd')",
        "def f(chain):\n    return chain.read_block(3)",
        "import os\ndef f(fd):\n    return os.pread(fd, 512, 0)",
        "def f(vmdir):\n    return vmdir.vhd_path('0', 'u').read_bytes()",
        "from xenkeep.repo.sums import read_sums",
        "from xenkeep.formats.vhd import VhdUpdater",
    ],
)
def test_each_way_round_the_reader_is_caught(source: str) -> None:
    assert violations(uses_in("xenkeep.backup.restore", source))


def test_the_reader_itself_may_read() -> None:
    source = "from xenkeep.formats.vhd import VhdFile\ndef f(v):\n    return v.read_block(0)"
    assert violations(uses_in(READER, source)) == []
