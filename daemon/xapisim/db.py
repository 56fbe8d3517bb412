"""The simulator's object database, its event generations and persistence.

Every object lives in one table per class, keyed by its opaque reference.
Each change bumps a global generation counter; ``event.from`` compares
object generations with the client's token. Derived ``ref set`` fields
(``SR.VDIs``, ``VM.VBDs``...) are not stored but computed when a record is
read, as XAPI does, and a change of a pointer touches the object pointed to
so watchers see the derived field change.

The database is saved as one JSON document, written to a temporary file,
fsynced and renamed over ``db.json`` so a crash never leaves half a state.
Sessions and tasks are not persisted: a restart invalidates them, as on a
real pool after a toolstack restart.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import HANDLE_INVALID, XapiError
from .schema import CLASSES, DERIVED, NULL_REF, XDateTime

Record = dict[str, Any]

_VOLATILE = frozenset({"session", "task"})
_MAX_DELETED = 10_000
FORMAT_VERSION = 1
RESTART_GENERATION_JUMP = 1_000_000


def now(skew: float = 0.0) -> XDateTime:
    """The current time as an XAPI datetime (``skew`` seconds off, for a host
    whose clock is wrong)."""
    return XDateTime(time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime(time.time() + skew)))


def new_ref() -> str:
    """A fresh opaque reference."""
    return f"OpaqueRef:{uuidlib.uuid4()}"


class Database:
    """Tables of records plus the generation bookkeeping ``event.from`` needs."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.tables: dict[str, dict[str, Record]] = {name: {} for name in CLASSES}
        self.cls_of: dict[str, str] = {}
        self.by_uuid: dict[str, str] = {}
        self.gen = 1
        self.created: dict[str, int] = {}
        self.modified: dict[str, int] = {}
        self.deleted: list[tuple[int, str, str]] = []
        self.oldest_deleted_gen = 0
        self.sim: dict[str, Any] = {}
        self._changed: asyncio.Event | None = None
        self.dirty = False

    # -- generations ---------------------------------------------------
    def _bump(self, cls: str | None = None) -> int:
        self.gen += 1
        if cls not in _VOLATILE:
            self.dirty = True
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        return self.gen

    def touch(self, ref: str) -> None:
        """Mark an object modified (for event watchers)."""
        cls = self.cls_of.get(ref)
        if cls is not None:
            self.modified[ref] = self._bump(cls)

    async def wait_change(self, seconds: float) -> None:
        """Wait until something changes or ``seconds`` pass."""
        if self._changed is None:
            self._changed = asyncio.Event()
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            return

    # -- objects -------------------------------------------------------
    def create(self, cls: str, fields: Record, ref: str | None = None) -> str:
        """Create an object, filling every field the caller left out."""
        info = CLASSES[cls]
        ref = ref or new_ref()
        record: Record = {}
        for name, field in info.fields.items():
            if (cls, name) in DERIVED:
                continue
            record[name] = copy.deepcopy(fields[name]) if name in fields else field.zero()
        if not record.get("uuid"):
            record["uuid"] = str(uuidlib.uuid4())
        self.tables[cls][ref] = record
        self.cls_of[ref] = cls
        self.by_uuid[record["uuid"]] = ref
        gen = self._bump(cls)
        self.created[ref] = gen
        self.modified[ref] = gen
        self._touch_pointees(cls, record)
        return ref

    def _touch_pointees(self, cls: str, record: Record) -> None:
        for (_parent_cls, _pfield), (child_cls, child_field) in DERIVED.items():
            if child_cls == cls:
                target = record.get(child_field, NULL_REF)
                if target != NULL_REF:
                    self.touch(target)

    def exists(self, cls: str, ref: str) -> bool:
        return ref in self.tables[cls]

    def get(self, cls: str, ref: Any) -> Record:
        """The stored record (mutable); HANDLE_INVALID if absent."""
        if not isinstance(ref, str) or ref not in self.tables[cls]:
            raise XapiError(HANDLE_INVALID, cls, ref)
        return self.tables[cls][ref]

    def record(self, cls: str, ref: str) -> Record:
        """A copy of the full record as XAPI returns it (derived fields included)."""
        stored = self.get(cls, ref)
        out: Record = {}
        for name in CLASSES[cls].fields:
            derived = DERIVED.get((cls, name))
            if derived is not None:
                child_cls, child_field = derived
                out[name] = [
                    r for r, rec in self.tables[child_cls].items() if rec.get(child_field) == ref
                ]
            else:
                out[name] = copy.deepcopy(stored[name])
        return out

    def set(self, cls: str, ref: str, **fields: Any) -> None:
        """Update stored fields of an object and notify watchers."""
        stored = self.get(cls, ref)
        for name, value in fields.items():
            old = stored.get(name)
            if isinstance(old, str) and old.startswith("OpaqueRef:") and old != value:
                self.touch(old)
            stored[name] = value
            if isinstance(value, str) and value.startswith("OpaqueRef:"):
                self.touch(value)
        self.touch(ref)

    def destroy(self, cls: str, ref: str) -> None:
        """Remove an object."""
        record = self.get(cls, ref)
        del self.tables[cls][ref]
        del self.cls_of[ref]
        self.by_uuid.pop(record["uuid"], None)
        self.created.pop(ref, None)
        self.modified.pop(ref, None)
        self.deleted.append((self._bump(cls), cls, ref))
        if len(self.deleted) > _MAX_DELETED:
            dropped = self.deleted[: len(self.deleted) - _MAX_DELETED]
            self.oldest_deleted_gen = dropped[-1][0]
            del self.deleted[: len(dropped)]
        self._touch_pointees(cls, record)

    def find(self, cls: str, **match: Any) -> list[str]:
        """References of the objects whose stored fields equal ``match``."""
        return [
            ref
            for ref, rec in self.tables[cls].items()
            if all(rec.get(k) == v for k, v in match.items())
        ]

    def refs(self, cls: str) -> list[str]:
        return list(self.tables[cls])

    def items(self, cls: str) -> Iterator[tuple[str, Record]]:
        yield from list(self.tables[cls].items())

    # -- persistence ---------------------------------------------------
    def save(self) -> None:
        """Write the database atomically."""
        if self.path is None:
            return
        doc = {
            "format": FORMAT_VERSION,
            "gen": self.gen,
            "sim": self.sim,
            "tables": {c: t for c, t in self.tables.items() if c not in _VOLATILE},
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self.dirty = False

    def load(self) -> bool:
        """Read the saved database; False when there is none."""
        if self.path is None or not self.path.exists():
            return False
        doc = json.loads(self.path.read_text(encoding="utf-8"))
        if doc.get("format") != FORMAT_VERSION:
            raise ValueError(f"{self.path}: unknown format {doc.get('format')!r}")
        # Changes made after the last save (tasks, sessions, the final 0.2 s)
        # may have handed out higher tokens: jump well past them so a client
        # resuming event.from with an old token sees every object again.
        self.gen = int(doc["gen"]) + RESTART_GENERATION_JUMP
        self.sim = doc.get("sim", {})
        for cls, table in doc["tables"].items():
            info = CLASSES[cls]
            for ref, rec in table.items():
                for name in info.datetime_fields:
                    if name in rec:
                        rec[name] = XDateTime(rec[name])
                for name, field in info.fields.items():
                    if name not in rec and (cls, name) not in DERIVED:
                        rec[name] = field.zero()
                self.tables[cls][ref] = rec
                self.cls_of[ref] = cls
                self.by_uuid[rec["uuid"]] = ref
                self.created[ref] = self.gen
                self.modified[ref] = self.gen
        self.dirty = False
        return True
