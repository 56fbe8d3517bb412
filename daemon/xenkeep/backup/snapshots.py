"""XenKeep's snapshots in a pool: their names, and finding the ones a dead run left
(and, the same way, what a dead restore left).

A backup run snapshots each VM. Once its restore point is committed the
snapshot is tagged (``other_config[SNAPSHOT_KEY]`` = job id) and kept as the
reference of the next delta; a run that fails destroys its own. A run that
dies (the daemon killed, the call cut while ``VM.snapshot`` runs in the pool)
can do neither, and its snapshot appears in the pool later, untagged. So the
tag cannot be what makes a snapshot XenKeep's: the **name** is, because it is
the one thing fixed before the snapshot exists. Every name ends with the run's
marker ``xk-run-<operation id>``.

An **orphan** is a snapshot whose name carries a marker, that is not tagged
(so no restore point took it as its reference), whose run is not running now,
and that is not the snapshot the VM's newest restore point was exported from
(a kill between the commit and the tag). Orphans are destroyed with their
disks at the start of the daemon and before each run snapshots a VM.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import XapiError, XapiFailure

from .const import RESTORING_KEY, SNAPSHOT_KEY

log = logging.getLogger(__name__)

NULL_REF: Final = "OpaqueRef:NULL"
_MARKER_RE: Final = re.compile(r" xk-run-([0-9]+)$")


def snapshot_name(job_name: str, stamp: str, run_id: int) -> str:
    """The name a run gives its snapshot: readable, and ending with its marker."""
    return f"[XenKeep {job_name}] {stamp} xk-run-{run_id}"


def run_of(name: str) -> int | None:
    """The run whose marker ends a snapshot's name, or None (not XenKeep's)."""
    m = _MARKER_RE.search(name)
    return int(m.group(1)) if m else None


def orphans(
    records: Mapping[str, Mapping[str, Any]],
    *,
    running: frozenset[int],
    references: frozenset[str],
) -> list[str]:
    """Refs of the orphan snapshots among VM ``records`` (pure; see the module).

    ``running``: ids of runs in progress; ``references``: uuids of the
    snapshots the newest restore points were exported from.
    """
    out = []
    for ref, rec in records.items():
        if not rec.get("is_a_snapshot"):
            continue
        run = run_of(str(rec.get("name_label", "")))
        if run is None or run in running:
            continue
        if SNAPSHOT_KEY in (rec.get("other_config") or {}):
            continue
        if str(rec.get("uuid", "")) in references:
            continue
        out.append(ref)
    return sorted(out)


@dataclass
class Removal:
    """What destroying one of XenKeep's own VMs (a snapshot, a restore's
    leftover) did beyond the destroy itself."""

    #: Operations XenKeep lifted first: blocked on its own object, they
    #: came from the VM it was taken or restored from.
    lifted: list[str] = field(default_factory=list)
    #: Disks left in the pool, with why: the caller's run ends with a warning.
    left: list[str] = field(default_factory=list)


async def destroy_snapshot(client: XapiClient, snap: str) -> Removal:
    """Destroy one of XenKeep's own snapshot VMs (or a VM it created) with
    the disks it holds.

    The VM a snapshot is taken of may block ``destroy`` ("protected from
    accidental deletion"); a VM XenKeep restores from a restore point has
    the blocks its original had. Such a block is lifted here, on XenKeep's
    own object only, so its own leftovers do not pile up. A disk that cannot
    be removed is named in the result; a VM that cannot be destroyed raises.
    """
    removal = Removal()
    blocked = await client.call("VM.get_blocked_operations", snap)
    for op in ("destroy", "hard_shutdown"):
        if op in (blocked or {}):
            await client.call("VM.remove_from_blocked_operations", snap, op)
            removal.lifted.append(op)
    if await client.call("VM.get_power_state", snap) != "Halted":
        await client.call("VM.hard_shutdown", snap)
    for vbd in await client.call("VM.get_VBDs", snap):
        vdi = await client.call("VBD.get_VDI", vbd)
        if vdi in (None, "", NULL_REF):
            continue
        try:
            await client.call("VDI.destroy", vdi)
        except XapiFailure as exc:
            if exc.xapi_code == "HANDLE_INVALID":
                continue  # gone already
            removal.left.append(f"disk {vdi}: {exc}")
    await client.call("VM.destroy", snap)
    return removal


async def find_orphans(
    client: XapiClient,
    *,
    running: Callable[[], frozenset[int]],
    references: Callable[[str], Awaitable[str | None]],
    vm_ref: str | None = None,
) -> dict[str, dict[str, Any]]:
    """The orphan snapshots of one VM (``vm_ref``) or of the whole pool, by
    ref, with their records (see the module).

    ``running()`` is asked *after* the snapshots are listed: a run that
    snapshots meanwhile started before that answer, so it is in it.
    ``references(vm_uuid)`` is the snapshot uuid the VM's newest point names.
    """
    if vm_ref is None:
        records = dict(await client.call("VM.get_all_records"))
    else:
        records = {}
        for snap in await client.call("VM.get_snapshots", vm_ref):
            with contextlib.suppress(XapiFailure):  # destroyed meanwhile
                records[snap] = await client.call("VM.get_record", snap)
    candidates = {
        ref: rec
        for ref, rec in records.items()
        if rec.get("is_a_snapshot") and run_of(str(rec.get("name_label", ""))) is not None
    }
    refs = set()
    for rec in candidates.values():
        parent = rec.get("snapshot_of")
        if parent in (None, "", NULL_REF):
            continue
        try:
            uuid = str(await client.call("VM.get_uuid", parent))
        except XapiFailure:
            continue  # its VM is gone: nothing will use this snapshot as a reference
        ref_uuid = await references(uuid)
        if ref_uuid:
            refs.add(ref_uuid)
    found = orphans(candidates, running=running(), references=frozenset(refs))
    return {ref: candidates[ref] for ref in found}


@dataclass
class SweepResult:
    """What a sweep removed, and what it could not (with why)."""

    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


async def sweep(
    client: XapiClient,
    *,
    running: Callable[[], frozenset[int]],
    references: Callable[[str], Awaitable[str | None]],
    vm_ref: str | None = None,
) -> SweepResult:
    """Destroy the orphan snapshots of one VM (``vm_ref``) or of the whole
    pool (:func:`find_orphans`); the names of those destroyed and of those
    that could not be."""
    found = await find_orphans(client, running=running, references=references, vm_ref=vm_ref)
    result = SweepResult()
    for snap, rec in found.items():
        name = str(rec.get("name_label", snap))
        try:
            removal = await destroy_snapshot(client, snap)
        except XapiFailure as exc:
            if exc.xapi_code == "HANDLE_INVALID":
                continue  # its own run destroyed it meanwhile
            log.warning("could not remove the leftover snapshot %s: %s", name, exc)
            result.failed.append(f"{name}: {exc}")
            continue
        except XapiError as exc:
            log.warning("could not remove the leftover snapshot %s: %s", name, exc)
            result.failed.append(f"{name}: {exc}")
            continue
        log.warning("removed the leftover snapshot %s of a run that died", name)
        result.removed.append(name)
        result.failed.extend(f"{name}: {left}" for left in removal.left)
    return result


def _run_key(rec: Mapping[str, Any]) -> int | None:
    raw = (rec.get("other_config") or {}).get(RESTORING_KEY)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


async def sweep_restores(client: XapiClient, *, running: Callable[[], frozenset[int]]) -> list[str]:
    """Destroy what restores that died left in the pool (a VM and VDIs still
    marked with :data:`RESTORING_KEY`, of a restore not running now); the
    names of what was destroyed. A marked VM someone started is left alone."""
    vms = dict(await client.call("VM.get_all_records"))
    vdis = dict(await client.call("VDI.get_all_records"))
    now = running()  # asked after listing, as in :func:`sweep`
    removed = []
    for ref, rec in sorted(vms.items()):
        run = _run_key(rec)
        if run is None or run in now or rec.get("power_state", "Halted") != "Halted":
            continue
        name = str(rec.get("name_label", ref))
        try:
            removal = await destroy_snapshot(client, ref)  # a VM with its disks, like a snapshot
        except XapiError as exc:
            log.warning("could not remove %s, left by a restore that died: %s", name, exc)
            continue
        log.warning("removed VM %s, left by restore %s that died", name, run)
        for left in removal.left:
            log.warning("%s: %s stays in the pool", name, left)
        removed.append(name)
    for ref, rec in sorted(vdis.items()):
        run = _run_key(rec)
        if run is None or run in now:
            continue
        with contextlib.suppress(XapiFailure):  # gone with its VM above, or attached
            await client.call("VDI.destroy", ref)
            log.warning("removed VDI %s, left by restore %s that died", rec.get("uuid"), run)
            removed.append(str(rec.get("name_label", ref)))
    return removed
