"""The XAPI methods of one simulated pool.

``SimPool.call(method, params)`` is what both RPC front ends invoke. It
checks the session, the method name and the parameter count the way XAPI
does, applies injected faults, runs ``Async.*`` variants as tasks, and
otherwise dispatches either to a specific handler (power operations,
snapshots, disks...) or to the generic accessors every class has
(``get_record``, ``get_<field>``, ``set_<field>``, ``add_to_<map>``...).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import json
import logging
import random
import re
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

from . import storage
from .db import Database, Record, now
from .errors import (
    DEVICE_ALREADY_ATTACHED,
    DEVICE_ALREADY_DETACHED,
    EVENT_FROM_TOKEN_PARSE_FAILURE,
    FIELD_TYPE_ERROR,
    HANDLE_INVALID,
    INTERNAL_ERROR,
    INVALID_VALUE,
    MAP_DUPLICATE_KEY,
    MESSAGE_METHOD_UNKNOWN,
    MESSAGE_PARAMETER_COUNT_MISMATCH,
    OPERATION_BLOCKED,
    OPERATION_NOT_ALLOWED,
    SESSION_AUTHENTICATION_FAILED,
    SESSION_INVALID,
    SESSION_NOT_REGISTERED,
    SR_FULL,
    TASK_CANCELLED,
    UUID_INVALID,
    VDI_IN_USE,
    VDI_NO_CBT_METADATA,
    VDI_READONLY,
    VDI_TOO_SMALL,
    VM_BAD_POWER_STATE,
    VM_IS_TEMPLATE,
    XapiError,
)
from .faults import Faults
from .schema import CLASSES, DERIVED, ENUMS, NULL_REF, ClassInfo, XDateTime, coerce

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]
_HANDLERS: dict[str, Handler] = {}

API_VERSION_MAJOR = 2
#: The root password of a pool started without ``--password``.
DEMO_PASSWORD = "demo"
API_VERSION_MINOR = 21

if "cbt_metadata" not in ENUMS.get("vdi_type", []):
    ENUMS.setdefault("vdi_type", []).append("cbt_metadata")

_VM_OPS_BY_STATE: dict[str, list[str]] = {
    "Halted": [
        "start",
        "start_on",
        "clone",
        "copy",
        "snapshot",
        "export",
        "destroy",
        "provision",
        "changing_VCPUs",
        "changing_memory_limits",
        "metadata_export",
    ],
    "Running": [
        "clean_shutdown",
        "hard_shutdown",
        "clean_reboot",
        "hard_reboot",
        "suspend",
        "pause",
        "snapshot",
        "checkpoint",
        "shutdown",
        "metadata_export",
    ],
    "Paused": ["unpause", "hard_shutdown", "hard_reboot", "snapshot", "shutdown"],
    "Suspended": ["resume", "resume_on", "hard_shutdown", "snapshot", "export", "shutdown"],
}
_TEMPLATE_OPS = ["clone", "copy", "export", "provision", "destroy", "metadata_export"]


def api(name: str) -> Callable[[Handler], Handler]:
    """Register a method handler under its XAPI name."""

    def deco(fn: Handler) -> Handler:
        _HANDLERS[name] = fn
        return fn

    return deco


def _arity(fn: Handler) -> tuple[int, int]:
    """(min, max) parameter counts of a handler, session excluded."""
    params = list(inspect.signature(fn).parameters.values())[2:]  # self, session
    required = sum(1 for p in params if p.default is inspect.Parameter.empty)
    return required, len(params)


def xml_value(value: Any) -> str:
    """XAPI's XML form of a task result (``<value>OpaqueRef:...</value>``)."""
    if isinstance(value, bool):
        return f"<value><boolean>{int(value)}</boolean></value>"
    if isinstance(value, int):
        return f"<value>{value}</value>"
    if isinstance(value, float):
        return f"<value><double>{value}</double></value>"
    if isinstance(value, list | tuple):
        inner = "".join(xml_value(v) for v in value)
        return f"<value><array><data>{inner}</data></array></value>"
    if isinstance(value, dict):
        members = "".join(
            f"<member><name>{escape(str(k))}</name>{xml_value(v)}</member>"
            for k, v in value.items()
        )
        return f"<value><struct>{members}</struct></value>"
    return f"<value>{escape(str(value))}</value>"


def _mac() -> str:
    octets = [0x02, *(random.randrange(256) for _ in range(5))]  # noqa: S311 - not crypto
    return ":".join(f"{o:02x}" for o in octets)


class SimPool:
    """One simulated pool: its database, disks, sessions, tasks and faults."""

    def __init__(
        self, state_dir: Path, *, password: str = DEMO_PASSWORD, user: str = "root"
    ) -> None:
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(state_dir / "db.json")
        self.faults = Faults()
        self.user = user
        self.password = password
        self.jobs: dict[str, asyncio.Task[None]] = {}
        self.registrations: dict[str, dict[str, Any]] = {}
        self._saver: asyncio.Task[None] | None = None
        self._next_domid = 1

    # -- lifecycle -----------------------------------------------------
    async def open(self, *, demo: bool = False) -> None:
        """Load the saved state, or seed a new pool."""
        if not self.db.load():
            from .demo import seed_demo, seed_minimal

            if demo:
                await seed_demo(self)
            else:
                await seed_minimal(self)
            self.db.save()
        self._saver = asyncio.create_task(self._save_loop())

    async def close(self) -> None:
        """Stop background work and save."""
        for job in list(self.jobs.values()):
            job.cancel()
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
        for job in list(self.jobs.values()):
            with contextlib.suppress(BaseException):
                await job
        self.db.save()

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            if self.db.dirty:
                self.db.save()

    @property
    def pool_ref(self) -> str:
        return self.db.refs("pool")[0]

    @property
    def master_ref(self) -> str:
        return str(self.db.get("pool", self.pool_ref)["master"])

    @property
    def name(self) -> str:
        return str(self.db.get("pool", self.pool_ref)["name_label"])

    # -- paths and accounting -------------------------------------------
    def sr_dir(self, sr_ref: str) -> Path:
        return self.state_dir / "sr" / str(self.db.get("SR", sr_ref)["uuid"])

    def vdi_path(self, vdi_ref: str) -> Path:
        vdi = self.db.get("VDI", vdi_ref)
        return self.sr_dir(vdi["SR"]) / f"{vdi['location']}.img"

    def _cbt_path(self, vdi_ref: str) -> Path:
        return self.vdi_path(vdi_ref).with_suffix(".cbt")

    def refresh_vdi(self, vdi_ref: str) -> None:
        """Recompute a VDI's physical use and its SR's totals."""
        vdi = self.db.get("VDI", vdi_ref)
        self.db.set(
            "VDI", vdi_ref, physical_utilisation=storage.allocated_bytes(self.vdi_path(vdi_ref))
        )
        self.refresh_sr(vdi["SR"])

    def refresh_sr(self, sr_ref: str) -> None:
        phys = 0
        virt = 0
        for ref, vdi in self.db.items("VDI"):
            if vdi["SR"] == sr_ref:
                phys += storage.allocated_bytes(self.vdi_path(ref))
                virt += int(vdi["virtual_size"])
        sr = self.db.get("SR", sr_ref)
        if sr["physical_utilisation"] != phys or sr["virtual_allocation"] != virt:
            self.db.set("SR", sr_ref, physical_utilisation=phys, virtual_allocation=virt)

    def check_space(self, sr_ref: str, requested: int) -> None:
        """Raise SR_FULL if ``requested`` more bytes do not fit on the SR."""
        sr = self.db.get("SR", sr_ref)
        free = int(sr["physical_size"]) - int(sr["physical_utilisation"])
        if self.faults.sr_is_full(sr_ref):
            raise XapiError(SR_FULL, requested, max(0, min(free, 0)))
        if requested > free:
            raise XapiError(SR_FULL, requested, max(free, 0))

    # -- sessions ------------------------------------------------------
    def login(self, uname: Any, pwd: Any, originator: str = "") -> str:
        if uname != self.user or pwd != self.password:
            raise XapiError(SESSION_AUTHENTICATION_FAILED, uname, "Authentication failure")
        return self.db.create(
            "session",
            {
                "this_host": self.master_ref,
                "last_active": now(),
                "validation_time": now(),
                "is_local_superuser": True,
                "auth_user_name": uname,
                "originator": originator,
                "rbac_permissions": [],
            },
        )

    def check_session(self, ref: Any) -> str:
        if not isinstance(ref, str) or not self.db.exists("session", ref):
            raise XapiError(SESSION_INVALID, ref)
        return ref

    # -- dispatch --------------------------------------------------------
    async def call(self, method: str, params: list[Any]) -> Any:
        """Run one API call and return its value or raise XapiError."""
        is_async = method.startswith("Async.")
        name = method[len("Async.") :] if is_async else method
        if name in ("session.login_with_password", "session.slave_local_login_with_password"):
            if not 2 <= len(params) <= 4:
                raise XapiError(MESSAGE_PARAMETER_COUNT_MISMATCH, method, 4, len(params))
            self._injected(name)
            originator = str(params[3]) if len(params) > 3 else ""
            return self.login(params[0], params[1], originator)
        if not params:
            handler_known = name in _HANDLERS or self._generic(name) is not None
            if not handler_known:
                raise XapiError(MESSAGE_METHOD_UNKNOWN, method)
            raise XapiError(SESSION_INVALID, "")
        session = self.check_session(params[0])
        self.db.get("session", session)["last_active"] = now()
        fn, expected = self._resolve(name, method)
        args = params[1:]
        lo, hi = expected
        if not lo <= len(args) <= hi:
            raise XapiError(MESSAGE_PARAMETER_COUNT_MISMATCH, method, hi + 1, len(params))
        args = self._coerce_args(name, args)
        if is_async:
            return self.spawn(session, name, lambda: fn(session, *args))
        self._injected(name)
        delay = self.faults.call_delay(name)
        if delay:
            await asyncio.sleep(delay)
        return await fn(session, *args)

    def _injected(self, name: str) -> None:
        error = self.faults.failing_call(name)
        if error is not None:
            raise XapiError(error[0], *error[1:])

    def _resolve(
        self, name: str, method: str
    ) -> tuple[Callable[..., Awaitable[Any]], tuple[int, int]]:
        handler = _HANDLERS.get(name)
        if handler is not None:
            bound = handler.__get__(self)

            async def call_specific(session: str, *args: Any) -> Any:
                return await bound(session, *args)

            return call_specific, _arity(handler)
        generic = self._generic(name)
        if generic is not None:
            return generic
        cls, _, op = name.partition(".")
        if cls in CLASSES and op in CLASSES[cls].messages:
            raise XapiError(INTERNAL_ERROR, f"xapisim does not simulate {name}")
        raise XapiError(MESSAGE_METHOD_UNKNOWN, method)

    def _coerce_args(self, name: str, args: list[Any]) -> list[Any]:
        cls, _, op = name.partition(".")
        types = CLASSES[cls].messages.get(op) if cls in CLASSES else None
        if not types or op.startswith(("set_", "add_", "remove_")):
            return list(args)
        out = list(args)
        for i, t in enumerate(types[1:]):
            if i < len(out) and t in ("int", "float", "bool"):
                try:
                    out[i] = coerce(t, out[i])
                except (TypeError, ValueError) as e:
                    raise XapiError(FIELD_TYPE_ERROR, f"param {i + 1}") from e
        return out

    def _generic(self, name: str) -> tuple[Callable[..., Awaitable[Any]], tuple[int, int]] | None:
        cls, _, op = name.partition(".")
        info = CLASSES.get(cls)
        if info is None or cls in ("event",):
            return None
        db = self.db
        fields = info.fields

        async def get_all(_s: str) -> Any:
            return db.refs(cls)

        async def get_all_records(_s: str) -> Any:
            return {ref: db.record(cls, ref) for ref in db.refs(cls)}

        async def get_record(_s: str, ref: Any) -> Any:
            return db.record(cls, ref)

        async def get_by_uuid(_s: str, uuid: Any) -> Any:
            ref = db.by_uuid.get(uuid) if isinstance(uuid, str) else None
            if ref is None or db.cls_of.get(ref) != cls:
                raise XapiError(UUID_INVALID, cls, uuid)
            return ref

        async def get_by_name_label(_s: str, label: Any) -> Any:
            return db.find(cls, name_label=label)

        table: dict[str, tuple[Callable[..., Awaitable[Any]], tuple[int, int]]] = {
            "get_all": (get_all, (0, 0)),
            "get_all_records": (get_all_records, (0, 0)),
            "get_record": (get_record, (1, 1)),
            "get_by_uuid": (get_by_uuid, (1, 1)),
        }
        if "name_label" in fields:
            table["get_by_name_label"] = (get_by_name_label, (1, 1))
        if op in table:
            return table[op]
        if op.startswith("get_") and op[4:] in fields:
            fname = op[4:]

            async def getter(_s: str, ref: Any) -> Any:
                return (
                    db.record(cls, ref)[fname]
                    if (cls, fname) in DERIVED
                    else _copy(db.get(cls, ref)[fname])
                )

            return getter, (1, 1)
        if op.startswith("set_") and op[4:] in fields and op in info.messages:
            return self._setter(info, op[4:]), (2, 2)
        if op.startswith("add_to_") and op[7:] in fields and op in info.messages:
            return self._map_add(info, op[7:]), (3, 3)
        if op.startswith("remove_from_") and op[12:] in fields and op in info.messages:
            return self._map_remove(info, op[12:]), (2, 2)
        if op.startswith("add_") and op[4:] in fields and op in info.messages:
            return self._set_add(info, op[4:]), (2, 2)
        if op.startswith("remove_") and op[7:] in fields and op in info.messages:
            return self._set_remove(info, op[7:]), (2, 2)
        return None

    def _setter(self, info: ClassInfo, fname: str) -> Callable[..., Awaitable[Any]]:
        ftype = info.fields[fname].type

        async def setter(_s: str, ref: Any, value: Any) -> Any:
            self.db.get(info.name, ref)
            try:
                value = coerce(ftype, value)
            except (TypeError, ValueError) as e:
                raise XapiError(FIELD_TYPE_ERROR, fname) from e
            if info.fields[fname].ref_class and value != NULL_REF:
                self.db.get(info.fields[fname].ref_class or "", value)
            self.db.set(info.name, ref, **{fname: value})
            return ""

        return setter

    def _map_add(self, info: ClassInfo, fname: str) -> Callable[..., Awaitable[Any]]:
        async def add(_s: str, ref: Any, key: Any, value: Any) -> Any:
            rec = self.db.get(info.name, ref)
            current = dict(rec[fname])
            if key in current:
                raise XapiError(MAP_DUPLICATE_KEY, info.name, fname, ref, key)
            m = re.fullmatch(r"\((.+) -> (.+)\) map", info.fields[fname].type)
            try:
                current[str(key)] = coerce(m.group(2) if m else "string", value)
            except (TypeError, ValueError) as e:
                raise XapiError(FIELD_TYPE_ERROR, fname) from e
            self.db.set(info.name, ref, **{fname: current})
            return ""

        return add

    def _map_remove(self, info: ClassInfo, fname: str) -> Callable[..., Awaitable[Any]]:
        async def remove(_s: str, ref: Any, key: Any) -> Any:
            rec = self.db.get(info.name, ref)
            current = dict(rec[fname])
            if key in current:
                del current[key]
                self.db.set(info.name, ref, **{fname: current})
            return ""

        return remove

    def _set_add(self, info: ClassInfo, fname: str) -> Callable[..., Awaitable[Any]]:
        async def add(_s: str, ref: Any, value: Any) -> Any:
            rec = self.db.get(info.name, ref)
            if value not in rec[fname]:
                self.db.set(info.name, ref, **{fname: [*rec[fname], value]})
            return ""

        return add

    def _set_remove(self, info: ClassInfo, fname: str) -> Callable[..., Awaitable[Any]]:
        async def remove(_s: str, ref: Any, value: Any) -> Any:
            rec = self.db.get(info.name, ref)
            if value in rec[fname]:
                self.db.set(info.name, ref, **{fname: [v for v in rec[fname] if v != value]})
            return ""

        return remove

    # -- tasks -----------------------------------------------------------
    def new_task(self, label: str, description: str = "") -> str:
        return self.db.create(
            "task",
            {
                "name_label": label,
                "name_description": description,
                "created": now(),
                "status": "pending",
                "resident_on": self.master_ref,
                "progress": 0.0,
                "allowed_operations": ["cancel"],
            },
        )

    def task_progress(self, task: str, progress: float) -> None:
        if self.db.exists("task", task):
            self.db.set("task", task, progress=round(min(max(progress, 0.0), 1.0), 4))

    def task_done(self, task: str, result: Any = "") -> None:
        if self.db.exists("task", task):
            res = "" if result in ("", None) else xml_value(result)
            self.db.set(
                "task",
                task,
                status="success",
                progress=1.0,
                result=res,
                finished=now(),
                allowed_operations=[],
            )

    def task_failed(self, task: str, description: list[str]) -> None:
        if self.db.exists("task", task):
            cancelled = description[:1] == [TASK_CANCELLED]
            self.db.set(
                "task",
                task,
                status="cancelled" if cancelled else "failure",
                error_info=[str(d) for d in description],
                finished=now(),
                allowed_operations=[],
            )

    def task_cancelling(self, task: str) -> bool:
        return self.db.exists("task", task) and self.db.get("task", task)["status"] == "cancelling"

    def spawn(self, session: str, name: str, run: Callable[[], Awaitable[Any]]) -> str:
        """Start an Async call as a task and return the task ref."""
        task = self.new_task(f"Async.{name}")

        async def body() -> None:
            try:
                self._injected(name)
                delay = self.faults.call_delay(name)
                steps = 10
                for i in range(steps if delay else 0):
                    await asyncio.sleep(delay / steps)
                    self.task_progress(task, (i + 1) / (steps + 1))
                result = await run()
            except asyncio.CancelledError:
                self.task_failed(task, [TASK_CANCELLED, task])
            except XapiError as e:
                self.task_failed(task, e.description)
            except Exception as e:  # a simulator bug must still end the task
                log.exception("task %s failed", name)
                self.task_failed(task, [INTERNAL_ERROR, repr(e)])
            else:
                self.task_done(task, result)
            finally:
                self.jobs.pop(task, None)

        self.jobs[task] = asyncio.create_task(body())
        return task

    # -- disks -----------------------------------------------------------
    def make_vdi(self, sr: str, fields: Record) -> str:
        """Create a VDI record and its empty sparse file."""
        size = int(fields.get("virtual_size", 0))
        if size < 0:
            raise XapiError(INVALID_VALUE, "virtual_size", size)
        self.db.get("SR", sr)
        self.check_space(sr, size)
        uuid = str(uuidlib.uuid4())
        rec = {
            "type": "user",
            "managed": True,
            "on_boot": "persist",
            **fields,
            "uuid": uuid,
            "location": uuid,
            "SR": sr,
            "virtual_size": size,
            "allowed_operations": ["clone", "copy", "resize", "snapshot", "destroy", "update"],
        }
        ref = self.db.create("VDI", rec)
        storage.create_sparse(self.vdi_path(ref), size)
        self.refresh_sr(sr)
        return ref

    async def derive_vdi(self, src: str, sr: str | None, fields: Record, *, cbt_link: bool) -> str:
        """New VDI whose content is a copy of ``src`` (snapshot, clone or copy)."""
        source = self.db.get("VDI", src)
        target_sr = sr or source["SR"]
        self.check_space(
            target_sr,
            0 if target_sr == source["SR"] else storage.allocated_bytes(self.vdi_path(src)),
        )
        uuid = str(uuidlib.uuid4())
        rec = {k: _copy(v) for k, v in source.items()}
        rec.update(
            {
                "uuid": uuid,
                "location": uuid,
                "SR": target_sr,
                "is_a_snapshot": False,
                "snapshot_of": NULL_REF,
                "snapshot_time": XDateTime("19700101T00:00:00Z"),
                "cbt_enabled": False,
                "current_operations": {},
                "read_only": False,
            }
        )
        rec.update(fields)
        src_path = self.vdi_path(src)
        dest_path = self.state_dir / "sr" / self.db.get("SR", target_sr)["uuid"] / f"{uuid}.img"
        await asyncio.to_thread(storage.clone_file, src_path, dest_path)
        ref = self.db.create("VDI", rec)
        if cbt_link and source["cbt_enabled"]:
            # The snapshot takes over the source's log; the source starts a new
            # log whose predecessor is the snapshot.
            old = self._cbt_load(src)
            self._cbt_store(ref, old["parent"], old["bitmap"])
            self._cbt_store(
                src, uuid, bytearray(storage.cbt_bitmap_len(int(source["virtual_size"])))
            )
            self.db.set("VDI", ref, cbt_enabled=True)
        self.refresh_vdi(ref)
        return ref

    def _cbt_load(self, vdi: str) -> dict[str, Any]:
        path = self._cbt_path(vdi)
        size = int(self.db.get("VDI", vdi)["virtual_size"])
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return {"parent": None, "bitmap": bytearray(storage.cbt_bitmap_len(size))}
        bitmap = bytearray(base64.b64decode(doc["bitmap"]))
        want = storage.cbt_bitmap_len(size)
        if len(bitmap) < want:
            bitmap += bytes(want - len(bitmap))
        return {"parent": doc["parent"], "bitmap": bitmap}

    def _cbt_store(self, vdi: str, parent: str | None, bitmap: bytearray) -> None:
        doc = {"parent": parent, "bitmap": base64.b64encode(bytes(bitmap)).decode()}
        path = self._cbt_path(vdi)
        tmp = path.with_suffix(".cbt.tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(path)

    def note_write(self, vdi: str, offset: int, length: int) -> None:
        """Record a write for CBT and accounting."""
        rec = self.db.get("VDI", vdi)
        if rec["cbt_enabled"]:
            log_ = self._cbt_load(vdi)
            storage.cbt_mark(log_["bitmap"], offset, length)
            self._cbt_store(vdi, log_["parent"], log_["bitmap"])
        self.refresh_vdi(vdi)

    def write_vdi(self, vdi: str, offset: int, data: bytes) -> None:
        """Write guest data into a VDI (used by the sim API and imports)."""
        rec = self.db.get("VDI", vdi)
        size = int(rec["virtual_size"])
        if offset < 0 or offset + len(data) > size:
            raise XapiError(INVALID_VALUE, "offset", offset)
        if rec["read_only"]:
            raise XapiError(VDI_READONLY, vdi)
        self.check_space(rec["SR"], len(data))
        storage.write_range(self.vdi_path(vdi), offset, data)
        self.note_write(vdi, offset, len(data))

    def destroy_vdi(self, vdi: str) -> None:
        rec = self.db.get("VDI", vdi)
        for vbd in self.db.find("VBD", VDI=vdi):
            if self.db.get("VBD", vbd)["currently_attached"]:
                raise XapiError(VDI_IN_USE, vdi, "destroy")
        for vbd in self.db.find("VBD", VDI=vdi):
            self.db.destroy("VBD", vbd)
        path = self.vdi_path(vdi)
        storage.remove(path)
        storage.remove(path.with_suffix(".cbt"))
        self.db.destroy("VDI", vdi)
        self.refresh_sr(rec["SR"])

    # -- VMs -------------------------------------------------------------
    def vm(self, ref: Any) -> Record:
        return self.db.get("VM", ref)

    def check_blocked(self, vm_ref: str, op: str) -> None:
        blocked = self.vm(vm_ref)["blocked_operations"]
        if op in blocked:
            raise XapiError(OPERATION_BLOCKED, vm_ref, blocked[op])

    def check_power(self, vm_ref: str, *expected: str) -> None:
        actual = self.vm(vm_ref)["power_state"]
        if actual not in expected:
            raise XapiError(VM_BAD_POWER_STATE, vm_ref, expected[0].lower(), actual.lower())

    def check_not_template(self, vm_ref: str) -> None:
        if self.vm(vm_ref)["is_a_template"]:
            raise XapiError(VM_IS_TEMPLATE, vm_ref)

    def update_allowed(self, vm_ref: str) -> None:
        vm = self.vm(vm_ref)
        if vm["is_a_template"] or vm["is_a_snapshot"]:
            ops = list(_TEMPLATE_OPS)
        else:
            ops = list(_VM_OPS_BY_STATE.get(vm["power_state"], []))
        valid = set(ENUMS.get("vm_operations", ops))
        self.db.set("VM", vm_ref, allowed_operations=[o for o in ops if o in valid])

    def set_power(self, vm_ref: str, state: str, host: str | None = None) -> None:
        """Move a VM to a power state, attaching or detaching its devices."""
        running = state in ("Running", "Paused")
        fields: dict[str, Any] = {"power_state": state}
        if running:
            vm = self.vm(vm_ref)
            if vm["power_state"] in ("Halted", "Suspended") or host:
                fields["resident_on"] = host or (
                    vm["affinity"] if self.db.exists("host", vm["affinity"]) else self.master_ref
                )
                fields["domid"] = self._next_domid
                self._next_domid += 1
        else:
            fields["resident_on"] = NULL_REF
            fields["domid"] = -1
        old_host = self.vm(vm_ref)["resident_on"]
        self.db.set("VM", vm_ref, **fields)
        self._update_metrics(vm_ref, running)
        for host in {old_host, self.vm(vm_ref)["resident_on"]}:
            if self.db.exists("host", host):
                self.refresh_host_metrics(host)
        for vbd in self.db.find("VBD", VM=vm_ref):
            rec = self.db.get("VBD", vbd)
            if rec["currently_attached"] != running:
                device = rec["device"] or _device_name(rec["userdevice"])
                self.db.set("VBD", vbd, currently_attached=running, device=device)
        for vif in self.db.find("VIF", VM=vm_ref):
            if self.db.get("VIF", vif)["currently_attached"] != running:
                self.db.set("VIF", vif, currently_attached=running)
        self.update_allowed(vm_ref)

    def _update_metrics(self, vm_ref: str, running: bool) -> None:
        """VM_metrics while it exists, VM_guest_metrics while the guest runs."""
        vm = self.vm(vm_ref)
        if vm["is_control_domain"]:
            return
        metrics = {
            "memory_actual": int(vm["memory_dynamic_max"]) if running else 0,
            "VCPUs_number": int(vm["VCPUs_at_startup"]) if running else 0,
            "hvm": True,
            "last_updated": now(),
        }
        if self.db.exists("VM_metrics", vm["metrics"]):
            self.db.set("VM_metrics", vm["metrics"], **metrics)
        else:
            metrics.update({"start_time": now(), "install_time": now()})
            self.db.set("VM", vm_ref, metrics=self.db.create("VM_metrics", metrics))
        if running and vm["power_state"] == "Running":
            if running and not self.db.exists("VM_guest_metrics", vm["guest_metrics"]):
                self.db.set(
                    "VM", vm_ref, guest_metrics=self.db.create("VM_guest_metrics", _guest(vm))
                )
        elif not running and self.db.exists("VM_guest_metrics", vm["guest_metrics"]):
            self.db.destroy("VM_guest_metrics", vm["guest_metrics"])
            self.db.set("VM", vm_ref, guest_metrics=NULL_REF)

    def refresh_host_metrics(self, host: str) -> None:
        """Free memory of a host: its total minus what its running domains use."""
        rec = self.db.get("host", host)
        total = int(rec["other_config"].get("xapisim-memory-total", str(256 * 1024**3)))
        used = int(rec["memory_overhead"]) + sum(
            int(vm["memory_dynamic_max"])
            for _, vm in self.db.items("VM")
            if vm["resident_on"] == host and vm["power_state"] in ("Running", "Paused")
        )
        fields = {"memory_total": total, "memory_free": max(total - used, 0), "live": True}
        if self.db.exists("host_metrics", rec["metrics"]):
            self.db.set("host_metrics", rec["metrics"], **fields, last_updated=now())
        else:
            ref = self.db.create("host_metrics", {**fields, "last_updated": now()})
            self.db.set("host", host, metrics=ref)

    async def copy_vm(self, vm_ref: str, name: str, mode: str, sr: str | None = None) -> str:
        """Snapshot, clone or copy a VM with its disks, VBDs and VIFs."""
        source = self.vm(vm_ref)
        rec = {k: _copy(v) for k, v in source.items()}
        rec.pop("uuid")
        rec.update(
            {
                "name_label": name,
                "power_state": "Halted",
                "resident_on": NULL_REF,
                "domid": -1,
                "current_operations": {},
                "is_control_domain": False,
                "is_a_snapshot": mode == "snapshot",
                "snapshot_of": vm_ref if mode == "snapshot" else NULL_REF,
                "snapshot_time": now() if mode == "snapshot" else XDateTime("19700101T00:00:00Z"),
                "is_a_template": True if mode == "snapshot" else source["is_a_template"],
                "is_default_template": False,
                "parent": source["parent"] if mode == "snapshot" else NULL_REF,
                "snapshot_info": {"power-state-at-snapshot": source["power_state"]}
                if mode == "snapshot"
                else {},
            }
        )
        if mode != "snapshot":
            rec["is_a_snapshot"] = False
        new_vm = self.db.create("VM", rec)
        vdi_map: dict[str, str] = {}
        try:
            for vbd in self.db.find("VBD", VM=vm_ref):
                vbd_rec = {k: _copy(v) for k, v in self.db.get("VBD", vbd).items()}
                vbd_rec.pop("uuid")
                vdi = vbd_rec["VDI"]
                if vbd_rec["type"] == "Disk" and self.db.exists("VDI", vdi):
                    if vdi not in vdi_map:
                        src = self.db.get("VDI", vdi)
                        extra: Record = {}
                        if mode == "snapshot":
                            extra = {
                                "is_a_snapshot": True,
                                "snapshot_of": vdi,
                                "snapshot_time": rec["snapshot_time"],
                                "name_label": src["name_label"],
                            }
                        vdi_map[vdi] = await self.derive_vdi(
                            vdi, sr if mode == "copy" else None, extra, cbt_link=mode == "snapshot"
                        )
                    vbd_rec["VDI"] = vdi_map[vdi]
                vbd_rec.update(
                    {"VM": new_vm, "currently_attached": False, "current_operations": {}}
                )
                self.db.create("VBD", vbd_rec)
            for vif in self.db.find("VIF", VM=vm_ref):
                vif_rec = {k: _copy(v) for k, v in self.db.get("VIF", vif).items()}
                vif_rec.pop("uuid")
                vif_rec.update({"VM": new_vm, "currently_attached": False})
                if mode != "snapshot":
                    vif_rec["MAC"] = _mac()
                self.db.create("VIF", vif_rec)
        except BaseException:
            for new_vdi in vdi_map.values():
                with contextlib.suppress(XapiError):
                    self.destroy_vdi(new_vdi)
            for r in self.db.find("VBD", VM=new_vm) + self.db.find("VIF", VM=new_vm):
                self.db.destroy(self.db.cls_of[r], r)
            self.db.destroy("VM", new_vm)
            raise
        if mode == "snapshot":
            self.db.set("VM", vm_ref, parent=new_vm)
        self.update_allowed(new_vm)
        return new_vm

    def destroy_vm(self, vm_ref: str) -> None:
        for vbd in self.db.find("VBD", VM=vm_ref):
            self.db.destroy("VBD", vbd)
        for vif in self.db.find("VIF", VM=vm_ref):
            self.db.destroy("VIF", vif)
        self.db.destroy("VM", vm_ref)

    def check_vdi_sr(self, sr: Any) -> str:
        self.db.get("SR", sr)
        return str(sr)

    # ===================================================================
    # Specific handlers. Parameter 1 is always the session.
    # ===================================================================
    @api("session.logout")
    async def session_logout(self, session: str) -> Any:
        self.db.destroy("session", session)
        return ""

    @api("session.local_logout")
    async def session_local_logout(self, session: str) -> Any:
        return await self.session_logout(session)

    @api("pool.get_master")
    async def pool_get_master(self, _s: str, pool: Any) -> Any:
        return self.db.get("pool", pool)["master"]

    @api("host.get_servertime")
    async def host_get_servertime(self, _s: str, host: Any) -> Any:
        self.db.get("host", host)
        return now()

    # -- VM ----------------------------------------------------------------
    @api("VM.start")
    async def vm_start(self, _s: str, vm: Any, start_paused: Any, force: Any) -> Any:
        self.vm(vm)
        self.check_blocked(vm, "start")
        self.check_not_template(vm)
        self.check_power(vm, "Halted")
        self.set_power(vm, "Paused" if start_paused else "Running")
        return ""

    @api("VM.start_on")
    async def vm_start_on(self, _s: str, vm: Any, host: Any, start_paused: Any, force: Any) -> Any:
        self.vm(vm)
        self.db.get("host", host)
        self.check_blocked(vm, "start_on")
        self.check_not_template(vm)
        self.check_power(vm, "Halted")
        self.set_power(vm, "Paused" if start_paused else "Running", host)
        return ""

    async def _transition(self, vm: Any, op: str, expected: tuple[str, ...], target: str) -> Any:
        self.vm(vm)
        self.check_blocked(vm, op)
        self.check_not_template(vm)
        self.check_power(vm, *expected)
        self.set_power(vm, target)
        return ""

    @api("VM.clean_shutdown")
    async def vm_clean_shutdown(self, _s: str, vm: Any) -> Any:
        return await self._transition(vm, "clean_shutdown", ("Running",), "Halted")

    @api("VM.shutdown")
    async def vm_shutdown(self, _s: str, vm: Any) -> Any:
        return await self._transition(vm, "shutdown", ("Running", "Paused", "Suspended"), "Halted")

    @api("VM.hard_shutdown")
    async def vm_hard_shutdown(self, _s: str, vm: Any) -> Any:
        return await self._transition(
            vm, "hard_shutdown", ("Running", "Paused", "Suspended"), "Halted"
        )

    @api("VM.clean_reboot")
    async def vm_clean_reboot(self, _s: str, vm: Any) -> Any:
        await self._transition(vm, "clean_reboot", ("Running",), "Running")
        self.db.set("VM", vm, domid=self._bump_domid())
        return ""

    @api("VM.hard_reboot")
    async def vm_hard_reboot(self, _s: str, vm: Any) -> Any:
        await self._transition(vm, "hard_reboot", ("Running", "Paused"), "Running")
        self.db.set("VM", vm, domid=self._bump_domid())
        return ""

    def _bump_domid(self) -> int:
        self._next_domid += 1
        return self._next_domid - 1

    @api("VM.suspend")
    async def vm_suspend(self, _s: str, vm: Any) -> Any:
        return await self._transition(vm, "suspend", ("Running",), "Suspended")

    @api("VM.resume")
    async def vm_resume(self, _s: str, vm: Any, start_paused: Any, force: Any) -> Any:
        return await self._transition(
            vm, "resume", ("Suspended",), "Paused" if start_paused else "Running"
        )

    @api("VM.pause")
    async def vm_pause(self, _s: str, vm: Any) -> Any:
        return await self._transition(vm, "pause", ("Running",), "Paused")

    @api("VM.unpause")
    async def vm_unpause(self, _s: str, vm: Any) -> Any:
        return await self._transition(vm, "unpause", ("Paused",), "Running")

    @api("VM.power_state_reset")
    async def vm_power_state_reset(self, _s: str, vm: Any) -> Any:
        self.vm(vm)
        self.set_power(vm, "Halted")
        return ""

    @api("VM.snapshot")
    async def vm_snapshot(self, _s: str, vm: Any, new_name: Any, ignore_vdis: Any = None) -> Any:
        self.vm(vm)
        self.check_blocked(vm, "snapshot")
        if self.vm(vm)["is_a_snapshot"] or self.vm(vm)["is_a_template"]:
            raise XapiError(OPERATION_NOT_ALLOWED, "cannot snapshot a template or a snapshot")
        return await self.copy_vm(vm, str(new_name), "snapshot")

    @api("VM.clone")
    async def vm_clone(self, _s: str, vm: Any, new_name: Any) -> Any:
        self.vm(vm)
        self.check_blocked(vm, "clone")
        if not self.vm(vm)["is_a_template"]:
            self.check_power(vm, "Halted")
        return await self.copy_vm(vm, str(new_name), "clone")

    @api("VM.copy")
    async def vm_copy(self, _s: str, vm: Any, new_name: Any, sr: Any) -> Any:
        self.vm(vm)
        self.check_blocked(vm, "copy")
        if not self.vm(vm)["is_a_template"]:
            self.check_power(vm, "Halted")
        if sr != NULL_REF:
            self.db.get("SR", sr)
        return await self.copy_vm(vm, str(new_name), "copy", None if sr == NULL_REF else sr)

    @api("VM.revert")
    async def vm_revert(self, _s: str, snapshot: Any) -> Any:
        snap = self.vm(snapshot)
        if not snap["is_a_snapshot"]:
            raise XapiError(OPERATION_NOT_ALLOWED, "VM.revert needs a snapshot")
        vm = str(snap["snapshot_of"])
        self.vm(vm)
        self.check_blocked(vm, "revert")
        if self.vm(vm)["power_state"] != "Halted":
            self.set_power(vm, "Halted")
        # As XAPI: the VM's current disks go, fresh clones of the snapshot's come.
        for vbd in self.db.find("VBD", VM=vm):
            rec = self.db.get("VBD", vbd)
            self.db.destroy("VBD", vbd)
            if rec["type"] == "Disk" and self.db.exists("VDI", rec["VDI"]):
                self.destroy_vdi(rec["VDI"])
        for vbd in self.db.find("VBD", VM=snapshot):
            rec = {k: _copy(v) for k, v in self.db.get("VBD", vbd).items()}
            rec.pop("uuid")
            if rec["type"] == "Disk" and self.db.exists("VDI", rec["VDI"]):
                rec["VDI"] = await self.derive_vdi(rec["VDI"], None, {}, cbt_link=False)
            rec.update({"VM": vm, "currently_attached": False})
            self.db.create("VBD", rec)
        fields = {
            k: _copy(snap[k])
            for k in (
                "VCPUs_max",
                "VCPUs_at_startup",
                "memory_static_max",
                "memory_dynamic_max",
                "memory_dynamic_min",
                "memory_static_min",
                "memory_target",
                "platform",
                "HVM_boot_params",
            )
        }
        self.db.set("VM", vm, parent=snapshot, **fields)
        self.update_allowed(vm)
        return ""

    @api("VM.destroy")
    async def vm_destroy(self, _s: str, vm: Any) -> Any:
        rec = self.vm(vm)
        self.check_blocked(vm, "destroy")
        if rec["is_control_domain"]:
            raise XapiError(OPERATION_NOT_ALLOWED, "cannot destroy a control domain")
        self.check_power(vm, "Halted", "Suspended")
        self.destroy_vm(vm)
        return ""

    @api("VM.create")
    async def vm_create(self, _s: str, args: Any) -> Any:
        rec = self._record_arg("VM", args)
        rec.update({"power_state": "Halted", "resident_on": NULL_REF, "domid": -1})
        ref = self.db.create("VM", rec)
        self.update_allowed(ref)
        return ref

    @api("VM.provision")
    async def vm_provision(self, _s: str, vm: Any) -> Any:
        rec = self.vm(vm)
        self.check_blocked(vm, "provision")
        spec = rec["other_config"].get("disks", "")
        if not spec:
            return ""
        try:
            root = ET.fromstring(spec)  # noqa: S314 - XML comes from our own DB
        except ET.ParseError as e:
            raise XapiError(INVALID_VALUE, "other_config:disks", spec) from e
        default_sr = self.db.get("pool", self.pool_ref)["default_SR"]
        for disk in root.iter("disk"):
            sr = disk.get("sr") or default_sr
            sr_ref = self.db.by_uuid.get(sr, sr)
            vdi = self.make_vdi(
                sr_ref,
                {
                    "name_label": f"{rec['name_label']} {disk.get('device', '0')}",
                    "virtual_size": int(disk.get("size", "0")),
                    "type": disk.get("type", "system"),
                },
            )
            self.db.create(
                "VBD",
                {
                    "VM": vm,
                    "VDI": vdi,
                    "userdevice": disk.get("device", "0"),
                    "bootable": disk.get("bootable", "false") == "true",
                    "mode": "RW",
                    "type": "Disk",
                    "unpluggable": False,
                    "empty": False,
                },
            )
        other = dict(rec["other_config"])
        other.pop("disks", None)
        self.db.set("VM", vm, other_config=other)
        return ""

    @api("VM.set_memory_limits")
    async def vm_set_memory_limits(
        self, _s: str, vm: Any, smin: Any, smax: Any, dmin: Any, dmax: Any
    ) -> Any:
        self.vm(vm)
        vals = [coerce("int", v) for v in (smin, smax, dmin, dmax)]
        if not vals[0] <= vals[2] <= vals[3] <= vals[1]:
            raise XapiError(
                INVALID_VALUE, "memory", "static_min <= dynamic_min <= dynamic_max <= static_max"
            )
        self.db.set(
            "VM",
            vm,
            memory_static_min=vals[0],
            memory_static_max=vals[1],
            memory_dynamic_min=vals[2],
            memory_dynamic_max=vals[3],
            memory_target=vals[3],
        )
        return ""

    @api("VM.set_memory")
    async def vm_set_memory(self, _s: str, vm: Any, value: Any) -> Any:
        self.vm(vm)
        v = coerce("int", value)
        self.db.set(
            "VM",
            vm,
            memory_static_max=v,
            memory_dynamic_min=v,
            memory_dynamic_max=v,
            memory_target=v,
        )
        return ""

    @api("VM.get_allowed_VBD_devices")
    async def vm_allowed_vbd_devices(self, _s: str, vm: Any) -> Any:
        self.vm(vm)
        used = {self.db.get("VBD", v)["userdevice"] for v in self.db.find("VBD", VM=vm)}
        return [str(i) for i in range(16) if str(i) not in used]

    @api("VM.get_allowed_VIF_devices")
    async def vm_allowed_vif_devices(self, _s: str, vm: Any) -> Any:
        self.vm(vm)
        used = {self.db.get("VIF", v)["device"] for v in self.db.find("VIF", VM=vm)}
        return [str(i) for i in range(7) if str(i) not in used]

    # -- VDI -------------------------------------------------------------
    @api("VDI.create")
    async def vdi_create(self, _s: str, args: Any) -> Any:
        rec = self._record_arg("VDI", args)
        sr = rec.get("SR", NULL_REF)
        self.db.get("SR", sr)
        rec.pop("uuid", None)
        return self.make_vdi(sr, rec)

    @api("VDI.destroy")
    async def vdi_destroy(self, _s: str, vdi: Any) -> Any:
        self.db.get("VDI", vdi)
        self.destroy_vdi(vdi)
        return ""

    @api("VDI.snapshot")
    async def vdi_snapshot(self, _s: str, vdi: Any, driver_params: Any = None) -> Any:
        src = self.db.get("VDI", vdi)
        return await self.derive_vdi(
            vdi,
            None,
            {
                "is_a_snapshot": True,
                "snapshot_of": vdi,
                "snapshot_time": now(),
                "name_label": src["name_label"],
            },
            cbt_link=True,
        )

    @api("VDI.clone")
    async def vdi_clone(self, _s: str, vdi: Any, driver_params: Any = None) -> Any:
        self.db.get("VDI", vdi)
        return await self.derive_vdi(vdi, None, {}, cbt_link=False)

    @api("VDI.copy")
    async def vdi_copy(
        self, _s: str, vdi: Any, sr: Any, base_vdi: Any = NULL_REF, into_vdi: Any = NULL_REF
    ) -> Any:
        self.db.get("VDI", vdi)
        if into_vdi == NULL_REF:
            self.db.get("SR", sr)
            return await self.derive_vdi(vdi, sr, {}, cbt_link=False)
        into = self.db.get("VDI", into_vdi)
        src = self.db.get("VDI", vdi)
        if int(into["virtual_size"]) < int(src["virtual_size"]):
            raise XapiError(VDI_TOO_SMALL, into_vdi, src["virtual_size"])
        src_path = self.vdi_path(vdi)
        if base_vdi != NULL_REF:
            self.db.get("VDI", base_vdi)
            blocks = await asyncio.to_thread(
                storage.changed_blocks, self.vdi_path(base_vdi), src_path
            )
        else:
            blocks = await asyncio.to_thread(storage.nonzero_blocks, src_path)
        size = int(src["virtual_size"])
        with src_path.open("rb") as f:
            for index in blocks:
                off = index * storage.VHD_BLOCK
                data = storage.read_block(f.fileno(), off, min(storage.VHD_BLOCK, size - off))
                self.write_vdi(into_vdi, off, data)
        return into_vdi

    @api("VDI.resize")
    async def vdi_resize(self, _s: str, vdi: Any, size: Any) -> Any:
        rec = self.db.get("VDI", vdi)
        new = coerce("int", size)
        old = int(rec["virtual_size"])
        if new < old:
            raise XapiError(VDI_TOO_SMALL, vdi, old)
        self.check_space(rec["SR"], new - old)
        with self.vdi_path(vdi).open("r+b") as f:
            f.truncate(new)
        self.db.set("VDI", vdi, virtual_size=new)
        self.refresh_vdi(vdi)
        return ""

    @api("VDI.resize_online")
    async def vdi_resize_online(self, s: str, vdi: Any, size: Any) -> Any:
        return await self.vdi_resize(s, vdi, size)

    @api("VDI.enable_cbt")
    async def vdi_enable_cbt(self, _s: str, vdi: Any) -> Any:
        rec = self.db.get("VDI", vdi)
        if not rec["cbt_enabled"]:
            self._cbt_store(vdi, None, bytearray(storage.cbt_bitmap_len(int(rec["virtual_size"]))))
            self.db.set("VDI", vdi, cbt_enabled=True)
        return ""

    @api("VDI.disable_cbt")
    async def vdi_disable_cbt(self, _s: str, vdi: Any) -> Any:
        self.db.get("VDI", vdi)
        storage.remove(self._cbt_path(vdi))
        self.db.set("VDI", vdi, cbt_enabled=False)
        return ""

    @api("VDI.data_destroy")
    async def vdi_data_destroy(self, _s: str, vdi: Any) -> Any:
        rec = self.db.get("VDI", vdi)
        if not rec["cbt_enabled"]:
            raise XapiError(VDI_NO_CBT_METADATA, vdi)
        if not rec["is_a_snapshot"]:
            raise XapiError(OPERATION_NOT_ALLOWED, "data_destroy needs a snapshot VDI")
        for vbd in self.db.find("VBD", VDI=vdi):
            self.db.destroy("VBD", vbd)
        path = self.vdi_path(vdi)
        storage.remove(path)
        storage.create_sparse(path, int(rec["virtual_size"]))
        self.db.set("VDI", vdi, type="cbt_metadata")
        self.refresh_vdi(vdi)
        return ""

    @api("VDI.list_changed_blocks")
    async def vdi_list_changed_blocks(self, _s: str, vdi_from: Any, vdi_to: Any) -> Any:
        src = self.db.get("VDI", vdi_from)
        dst = self.db.get("VDI", vdi_to)
        for ref, rec in ((vdi_from, src), (vdi_to, dst)):
            if not rec["cbt_enabled"]:
                raise XapiError(VDI_NO_CBT_METADATA, ref)
        bitmap = bytearray(storage.cbt_bitmap_len(int(dst["virtual_size"])))
        current = vdi_to
        for _ in range(10_000):
            if current == vdi_from:
                return base64.b64encode(bytes(bitmap)).decode()
            log_ = self._cbt_load(current)
            for i, b in enumerate(log_["bitmap"][: len(bitmap)]):
                bitmap[i] |= b
            parent = log_["parent"]
            if parent is None or parent not in self.db.by_uuid:
                break
            current = self.db.by_uuid[parent]
        raise XapiError(VDI_NO_CBT_METADATA, vdi_from)

    # -- VBD / VIF -------------------------------------------------------
    @api("VBD.create")
    async def vbd_create(self, _s: str, args: Any) -> Any:
        rec = self._record_arg("VBD", args)
        vm = rec.get("VM", NULL_REF)
        self.vm(vm)
        if rec.get("VDI", NULL_REF) != NULL_REF:
            self.db.get("VDI", rec["VDI"])
        used = {self.db.get("VBD", v)["userdevice"] for v in self.db.find("VBD", VM=vm)}
        if rec.get("userdevice", "autodetect") in ("autodetect", ""):
            rec["userdevice"] = next(str(i) for i in range(64) if str(i) not in used)
        elif rec["userdevice"] in used:
            raise XapiError("DEVICE_ALREADY_EXISTS", rec["userdevice"])
        rec["currently_attached"] = False
        rec.setdefault("mode", "RW")
        rec.setdefault("type", "Disk")
        return self.db.create("VBD", rec)

    @api("VBD.destroy")
    async def vbd_destroy(self, _s: str, vbd: Any) -> Any:
        if self.db.get("VBD", vbd)["currently_attached"]:
            raise XapiError(OPERATION_NOT_ALLOWED, "VBD is currently attached")
        self.db.destroy("VBD", vbd)
        return ""

    @api("VBD.plug")
    async def vbd_plug(self, _s: str, vbd: Any) -> Any:
        rec = self.db.get("VBD", vbd)
        self.check_power(rec["VM"], "Running")
        if rec["currently_attached"]:
            raise XapiError(DEVICE_ALREADY_ATTACHED, vbd)
        self.db.set(
            "VBD",
            vbd,
            currently_attached=True,
            device=rec["device"] or _device_name(rec["userdevice"]),
        )
        return ""

    @api("VBD.unplug")
    async def vbd_unplug(self, _s: str, vbd: Any) -> Any:
        rec = self.db.get("VBD", vbd)
        if not rec["currently_attached"]:
            raise XapiError(DEVICE_ALREADY_DETACHED, vbd)
        self.db.set("VBD", vbd, currently_attached=False)
        return ""

    @api("VBD.unplug_force")
    async def vbd_unplug_force(self, s: str, vbd: Any) -> Any:
        return await self.vbd_unplug(s, vbd)

    @api("VBD.eject")
    async def vbd_eject(self, _s: str, vbd: Any) -> Any:
        self.db.set("VBD", vbd, VDI=NULL_REF, empty=True)
        return ""

    @api("VBD.insert")
    async def vbd_insert(self, _s: str, vbd: Any, vdi: Any) -> Any:
        self.db.get("VBD", vbd)
        self.db.get("VDI", vdi)
        self.db.set("VBD", vbd, VDI=vdi, empty=False)
        return ""

    @api("VIF.create")
    async def vif_create(self, _s: str, args: Any) -> Any:
        rec = self._record_arg("VIF", args)
        self.vm(rec.get("VM", NULL_REF))
        self.db.get("network", rec.get("network", NULL_REF))
        if not rec.get("MAC"):
            rec["MAC"] = _mac()
            rec["MAC_autogenerated"] = True
        rec.setdefault("MTU", 1500)
        rec["currently_attached"] = False
        return self.db.create("VIF", rec)

    @api("VIF.destroy")
    async def vif_destroy(self, _s: str, vif: Any) -> Any:
        if self.db.get("VIF", vif)["currently_attached"]:
            raise XapiError(OPERATION_NOT_ALLOWED, "VIF is currently attached")
        self.db.destroy("VIF", vif)
        return ""

    @api("VIF.plug")
    async def vif_plug(self, _s: str, vif: Any) -> Any:
        rec = self.db.get("VIF", vif)
        self.check_power(rec["VM"], "Running")
        if rec["currently_attached"]:
            raise XapiError(DEVICE_ALREADY_ATTACHED, vif)
        self.db.set("VIF", vif, currently_attached=True)
        return ""

    @api("VIF.unplug")
    async def vif_unplug(self, _s: str, vif: Any) -> Any:
        rec = self.db.get("VIF", vif)
        if not rec["currently_attached"]:
            raise XapiError(DEVICE_ALREADY_DETACHED, vif)
        self.db.set("VIF", vif, currently_attached=False)
        return ""

    # -- network / SR / PBD ----------------------------------------------
    @api("network.create")
    async def network_create(self, _s: str, args: Any) -> Any:
        rec = self._record_arg("network", args)
        rec.setdefault("bridge", f"xapi{len(self.db.refs('network'))}")
        rec.setdefault("MTU", 1500)
        return self.db.create("network", rec)

    @api("network.destroy")
    async def network_destroy(self, _s: str, net: Any) -> Any:
        self.db.get("network", net)
        if self.db.find("VIF", network=net) or self.db.find("PIF", network=net):
            raise XapiError("NETWORK_CONTAINS_VIF", *self.db.find("VIF", network=net))
        self.db.destroy("network", net)
        return ""

    @api("SR.scan")
    async def sr_scan(self, _s: str, sr: Any) -> Any:
        self.db.get("SR", sr)
        for ref, vdi in self.db.items("VDI"):
            if vdi["SR"] == sr:
                missing = not self.vdi_path(ref).exists()
                if vdi["missing"] != missing:
                    self.db.set("VDI", ref, missing=missing)
                if not missing:
                    self.refresh_vdi(ref)
        self.refresh_sr(sr)
        return ""

    @api("SR.update")
    async def sr_update(self, s: str, sr: Any) -> Any:
        return await self.sr_scan(s, sr)

    @api("PBD.plug")
    async def pbd_plug(self, _s: str, pbd: Any) -> Any:
        self.db.set("PBD", self._exists("PBD", pbd), currently_attached=True)
        return ""

    @api("PBD.unplug")
    async def pbd_unplug(self, _s: str, pbd: Any) -> Any:
        self.db.set("PBD", self._exists("PBD", pbd), currently_attached=False)
        return ""

    def _exists(self, cls: str, ref: Any) -> str:
        self.db.get(cls, ref)
        return str(ref)

    # -- task ------------------------------------------------------------
    @api("task.create")
    async def task_create(self, _s: str, label: Any, description: Any) -> Any:
        return self.new_task(str(label), str(description))

    @api("task.cancel")
    async def task_cancel(self, _s: str, task: Any) -> Any:
        rec = self.db.get("task", task)
        if rec["status"] != "pending":
            raise XapiError(OPERATION_NOT_ALLOWED, f"task is {rec['status']}")
        self.db.set("task", task, status="cancelling")
        job = self.jobs.get(task)
        if job is not None:
            job.cancel()
        return ""

    @api("task.destroy")
    async def task_destroy(self, _s: str, task: Any) -> Any:
        self.db.get("task", task)
        self.db.destroy("task", task)
        return ""

    @api("task.set_status")
    async def task_set_status(self, _s: str, task: Any, value: Any) -> Any:
        self.db.get("task", task)
        self.db.set("task", task, status=coerce("enum task_status_type", value))
        return ""

    @api("task.set_progress")
    async def task_set_progress(self, _s: str, task: Any, value: Any) -> Any:
        self.db.get("task", task)
        self.task_progress(task, coerce("float", value))
        return ""

    # -- message ---------------------------------------------------------
    @api("message.create")
    async def message_create(
        self, _s: str, name: Any, priority: Any, cls: Any, obj_uuid: Any, body: Any
    ) -> Any:
        return self.db.create(
            "message",
            {
                "name": str(name),
                "priority": coerce("int", priority),
                "cls": coerce("enum cls", cls),
                "obj_uuid": str(obj_uuid),
                "timestamp": now(),
                "body": str(body),
            },
        )

    @api("message.destroy")
    async def message_destroy(self, _s: str, msg: Any) -> Any:
        self.db.get("message", msg)
        self.db.destroy("message", msg)
        return ""

    @api("message.get_since")
    async def message_get_since(self, _s: str, since: Any) -> Any:
        ts = str(getattr(since, "value", since))
        return {
            ref: self.db.record("message", ref)
            for ref, rec in self.db.items("message")
            if str(rec["timestamp"]) > ts
        }

    @api("message.get")
    async def message_get(self, _s: str, cls: Any, obj_uuid: Any, since: Any) -> Any:
        ts = str(getattr(since, "value", since))
        return {
            ref: self.db.record("message", ref)
            for ref, rec in self.db.items("message")
            if rec["cls"] == cls and rec["obj_uuid"] == obj_uuid and str(rec["timestamp"]) > ts
        }

    # -- event -----------------------------------------------------------
    def _collect(self, subs: list[str], since: int) -> list[dict[str, Any]]:
        everything = "*" in subs
        classes = {s for s in subs if "/" not in s}
        objects = {s.split("/", 1)[1] for s in subs if "/" in s}

        def wanted(cls: str, ref: str) -> bool:
            return everything or cls.lower() in classes or ref in objects

        found: list[tuple[int, dict[str, Any]]] = []
        for ref, gen in self.db.modified.items():
            if gen <= since:
                continue
            cls = self.db.cls_of.get(ref)
            if cls is None or not wanted(cls, ref):
                continue
            op = "add" if self.db.created.get(ref, 0) > since else "mod"
            found.append((gen, self._event(gen, cls, op, ref, self.db.record(cls, ref))))
        for gen, cls, ref in self.db.deleted:
            if gen > since and wanted(cls, ref):
                found.append((gen, self._event(gen, cls, "del", ref, None)))
        found.sort(key=lambda item: item[0])
        return [e for _, e in found]

    @staticmethod
    def _event(gen: int, cls: str, op: str, ref: str, snapshot: Record | None) -> dict[str, Any]:
        event: dict[str, Any] = {
            "id": str(gen),
            "timestamp": f"{time.time():.6f}",
            "class": cls.lower(),
            "operation": op,
            "ref": ref,
        }
        if snapshot is not None:
            event["snapshot"] = snapshot
        return event

    @api("event.from")
    async def event_from(self, _s: str, classes: Any, token: Any, wait_for: Any) -> Any:
        if not isinstance(classes, list):
            raise XapiError(FIELD_TYPE_ERROR, "classes")
        subs = [str(c).lower() if "/" not in str(c) else _lower_class(str(c)) for c in classes]
        since = _parse_token(token)
        wait = max(0.0, coerce("float", wait_for))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            events = self._collect(subs, since)
            remaining = deadline - loop.time()
            if events or remaining <= 0:
                break
            await self.db.wait_change(remaining)
        counts = {cls.lower(): len(table) for cls, table in self.db.tables.items()}
        return {
            "events": events,
            "valid_ref_counts": counts,
            "token": f"{self.db.gen:020d},{0:020d}",
        }

    @api("event.get_current_id")
    async def event_get_current_id(self, _s: str) -> Any:
        return self.db.gen

    @api("event.register")
    async def event_register(self, session: str, classes: Any) -> Any:
        reg = self.registrations.setdefault(session, {"subs": set(), "gen": self.db.gen})
        reg["subs"] |= {str(c).lower() for c in classes}
        return ""

    @api("event.unregister")
    async def event_unregister(self, session: str, classes: Any) -> Any:
        reg = self.registrations.get(session)
        if reg is not None:
            reg["subs"] -= {str(c).lower() for c in classes}
        return ""

    @api("event.next")
    async def event_next(self, session: str) -> Any:
        reg = self.registrations.get(session)
        if reg is None:
            raise XapiError(SESSION_NOT_REGISTERED, session)
        while True:
            events = self._collect(sorted(reg["subs"]), reg["gen"])
            if events:
                reg["gen"] = self.db.gen
                return events
            await self.db.wait_change(30.0)

    @api("event.inject")
    async def event_inject(self, _s: str, cls: Any, ref: Any) -> Any:
        if self.db.cls_of.get(ref) != cls:
            raise XapiError(HANDLE_INVALID, cls, ref)
        self.db.touch(ref)
        return f"{self.db.gen:020d},{0:020d}"

    # -- simulator-only --------------------------------------------------
    @api("sim.write_vdi")
    async def sim_write_vdi(self, _s: str, vdi: Any, offset: Any, data: Any) -> Any:
        """Write guest data: what a running VM would do between backups."""
        self.db.get("VDI", vdi)
        raw = base64.b64decode(str(data), validate=True)
        self.write_vdi(vdi, coerce("int", offset), raw)
        return ""

    @api("sim.read_vdi")
    async def sim_read_vdi(self, _s: str, vdi: Any, offset: Any, length: Any) -> Any:
        self.db.get("VDI", vdi)
        off, n = coerce("int", offset), coerce("int", length)
        with self.vdi_path(vdi).open("rb") as f:
            data = storage.read_block(f.fileno(), off, n)
        return base64.b64encode(data).decode()

    @api("sim.vdi_path")
    async def sim_vdi_path(self, _s: str, vdi: Any) -> Any:
        self.db.get("VDI", vdi)
        return str(self.vdi_path(vdi))

    @api("sim.inject_fault")
    async def sim_inject_fault(self, _s: str, kind: Any, params: Any) -> Any:
        if not isinstance(params, dict):
            raise XapiError(FIELD_TYPE_ERROR, "params")
        if kind == "sr_full":
            self.db.get("SR", params.get("sr"))
        return self.faults.inject(str(kind), params).id

    @api("sim.clear_faults")
    async def sim_clear_faults(self, _s: str, fault_id: Any = "") -> Any:
        self.faults.clear(str(fault_id) or None)
        return ""

    @api("sim.list_faults")
    async def sim_list_faults(self, _s: str) -> Any:
        return [f.as_dict() for f in self.faults.active]

    # -- helpers -----------------------------------------------------------
    def _record_arg(self, cls: str, args: Any) -> Record:
        if not isinstance(args, dict):
            raise XapiError(FIELD_TYPE_ERROR, "args")
        info = CLASSES[cls]
        out: Record = {}
        for name, value in args.items():
            field = info.fields.get(name)
            if field is None or (cls, name) in DERIVED:
                continue
            try:
                out[name] = coerce(field.type, value)
            except (TypeError, ValueError) as e:
                raise XapiError(FIELD_TYPE_ERROR, name) from e
        return out


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _guest(vm: Record) -> Record:
    """What the guest agent of a started VM reports (deterministic per VM)."""
    n = int(vm["uuid"].replace("-", "")[:8], 16)
    ip = f"10.0.0.{100 + n % 150}"
    template = vm["other_config"].get("base_template_name", "")
    if "Windows" in template:
        os_version = {
            "name": "Microsoft Windows Server 2022 Standard",
            "distro": "windows",
            "major": "10",
            "minor": "0",
        }
    else:
        os_version = {
            "name": "Debian GNU/Linux 12 (bookworm)",
            "distro": "debian",
            "major": "12",
            "minor": "5",
            "uname": "6.1.0-21-amd64",
        }
    return {
        "os_version": os_version,
        "PV_drivers_version": {"major": "7", "minor": "30", "micro": "0", "build": "10"},
        "PV_drivers_up_to_date": True,
        "PV_drivers_detected": True,
        "networks": {"0/ip": ip, "0/ipv4/0": ip},
        "other": {"feature-shutdown": "1", "feature-suspend": "1", "has-vendor-device": "0"},
        "memory": {},
        "disks": {},
        "live": True,
        "last_updated": now(),
        "can_use_hotplug_vbd": "yes",
        "can_use_hotplug_vif": "yes",
    }


def _device_name(userdevice: str) -> str:
    try:
        n = int(userdevice)
    except ValueError:
        return ""
    return "xvd" + chr(ord("a") + n) if 0 <= n < 26 else ""


def _lower_class(sub: str) -> str:
    cls, _, ref = sub.partition("/")
    return f"{cls.lower()}/{ref}"


def _parse_token(token: Any) -> int:
    if token in ("", None):
        return 0
    text = str(token)
    parts = text.split(",")
    try:
        if len(parts) == 2:
            return int(parts[0])
        if len(parts) == 1:
            return int(float(parts[0]))
    except ValueError:
        pass
    raise XapiError(EVENT_FROM_TOKEN_PARSE_FAILURE, text)
