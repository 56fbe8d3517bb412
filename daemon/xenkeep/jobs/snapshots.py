"""XenKeep's snapshots in a pool: their names, and finding the ones a dead run left
(and, the same way, the VMs and disks a dead run created).

A run of a job (a backup, a replication) snapshots each VM. Once the run has
what it needs from it the snapshot is tagged (``other_config[<kept key>]`` =
job id) and kept as the reference of the next delta; a run that fails
destroys its own. A run that dies (the daemon killed, the call cut while
``VM.snapshot`` runs in the pool) can do neither, and its snapshot appears in
the pool later, untagged. So the tag cannot be what makes a snapshot
XenKeep's: the **name** is, because it is the one thing fixed before the
snapshot exists. Every name ends with the run's marker ``<kind>-<operation
id>``: ``xk-run-12`` for backups, ``xk-rep-12`` for replications. Each job
kind sweeps only its own marker, so one kind's sweep never judges the other's
snapshots by rules it does not know.

An **orphan** is a snapshot whose name carries the marker, that is not tagged
(so no run took it as its reference), whose run is not running now, and that
is not a reference the caller names (a backup's kill between the commit and
the tag). Orphans are destroyed with their disks at the start of the daemon
and before each run snapshots a VM.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

from xenkeep.errors import XenKeepError
from xenkeep.pools.access import PoolAccess
from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import XapiError, XapiFailure

log = logging.getLogger(__name__)

NULL_REF: Final = "OpaqueRef:NULL"
#: Seconds before a pool that could not be swept is tried again.
SWEEP_RETRY: Final = 60.0


def snapshot_name(job_name: str, stamp: str, run_id: int, *, marker: str) -> str:
    """The name a run gives its snapshot: readable, and ending with its marker."""
    return f"[XenKeep {job_name}] {stamp} {marker}-{run_id}"


@cache
def _marker_re(marker: str) -> re.Pattern[str]:
    return re.compile(rf" {re.escape(marker)}-([0-9]+)$")


def run_of(name: str, *, marker: str) -> int | None:
    """The run whose marker ends a snapshot's name, or None (not this kind's)."""
    m = _marker_re(marker).search(name)
    return int(m.group(1)) if m else None


def orphans(
    records: Mapping[str, Mapping[str, Any]],
    *,
    running: frozenset[int],
    references: frozenset[str],
    marker: str,
    kept_key: str,
) -> list[str]:
    """Refs of the orphan snapshots among VM ``records`` (pure; see the module).

    ``running``: ids of runs in progress; ``references``: uuids of the
    snapshots the caller still needs although they are not tagged.
    """
    out = []
    for ref, rec in records.items():
        if not rec.get("is_a_snapshot"):
            continue
        run = run_of(str(rec.get("name_label", "")), marker=marker)
        if run is None or run in running:
            continue
        if kept_key in (rec.get("other_config") or {}):
            continue
        if str(rec.get("uuid", "")) in references:
            continue
        out.append(ref)
    return sorted(out)


@dataclass
class Removal:
    """What destroying one of XenKeep's own VMs (a snapshot, a restore's
    leftover, a replica) did beyond the destroy itself."""

    #: Operations XenKeep lifted first: blocked on its own object, they
    #: came from the VM it was taken or restored from.
    lifted: list[str] = field(default_factory=list)
    #: Disks left in the pool, with why: the caller's run ends with a warning.
    left: list[str] = field(default_factory=list)


async def destroy_snapshot(client: XapiClient, snap: str) -> Removal:
    """Destroy one of XenKeep's own snapshot VMs (or a VM it created) with
    the disks it holds.

    The VM a snapshot is taken of may block ``destroy`` ("protected from
    accidental deletion"); a VM XenKeep restores or replicates from a point
    has the blocks its original had. Such a block is lifted here, on
    XenKeep's own object only, so its own leftovers do not pile up. A disk
    that cannot be removed is named in the result; a VM that cannot be
    destroyed raises.
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


async def no_references(_vm_uuid: str) -> str | None:
    """For a kind that tags its snapshots as soon as it has them: none to name."""
    return None


async def find_orphans(
    client: XapiClient,
    *,
    running: Callable[[], frozenset[int]],
    references: Callable[[str], Awaitable[str | None]] = no_references,
    vm_ref: str | None = None,
    marker: str,
    kept_key: str,
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
        if rec.get("is_a_snapshot")
        and run_of(str(rec.get("name_label", "")), marker=marker) is not None
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
    found = orphans(
        candidates,
        running=running(),
        references=frozenset(refs),
        marker=marker,
        kept_key=kept_key,
    )
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
    references: Callable[[str], Awaitable[str | None]] = no_references,
    vm_ref: str | None = None,
    marker: str,
    kept_key: str,
) -> SweepResult:
    """Destroy the orphan snapshots of one VM (``vm_ref``) or of the whole
    pool (:func:`find_orphans`); the names of those destroyed and of those
    that could not be."""
    found = await find_orphans(
        client,
        running=running,
        references=references,
        vm_ref=vm_ref,
        marker=marker,
        kept_key=kept_key,
    )
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


def _run_key(rec: Mapping[str, Any], key: str) -> int | None:
    raw = (rec.get("other_config") or {}).get(key)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


async def sweep_marked(
    client: XapiClient, *, key: str, running: Callable[[], frozenset[int]], what: str = "run"
) -> list[str]:
    """Destroy what runs that died left in the pool: VMs and VDIs still
    marked ``other_config[key]`` = a run not running now (a restore's new
    VM, a first replication's replica); the names of what was destroyed.
    A marked VM someone started is left alone, and so are snapshots (a
    snapshot of a marked VM is not the run's to remove)."""
    vms = dict(await client.call("VM.get_all_records"))
    vdis = dict(await client.call("VDI.get_all_records"))
    now = running()  # asked after listing, as in :func:`sweep`
    removed = []
    for ref, rec in sorted(vms.items()):
        run = _run_key(rec, key)
        if run is None or run in now or rec.get("is_a_snapshot"):
            continue
        if rec.get("power_state", "Halted") != "Halted":
            continue
        name = str(rec.get("name_label", ref))
        try:
            removal = await destroy_snapshot(client, ref)  # a VM with its disks, like a snapshot
        except XapiError as exc:
            log.warning("could not remove %s, left by a %s that died: %s", name, what, exc)
            continue
        log.warning("removed VM %s, left by %s %s that died", name, what, run)
        for left in removal.left:
            log.warning("%s: %s stays in the pool", name, left)
        removed.append(name)
    for ref, rec in sorted(vdis.items()):
        run = _run_key(rec, key)
        if run is None or run in now:
            continue
        with contextlib.suppress(XapiFailure):  # gone with its VM above, or attached
            await client.call("VDI.destroy", ref)
            log.warning("removed VDI %s, left by %s %s that died", rec.get("uuid"), what, run)
            removed.append(str(rec.get("name_label", ref)))
    return removed


class SweepOnce:
    """A scheduler source that sweeps every pool once after the daemon starts
    (what runs killed with it left), and tries a pool not reachable yet again
    a minute later."""

    def __init__(
        self,
        pools: PoolAccess,
        sweep_pool: Callable[[XapiClient], Awaitable[list[str]]],
        *,
        what: str,
    ) -> None:
        self.pools = pools
        self._sweep_pool = sweep_pool
        self._what = what
        self._swept: set[str] = set()

    async def tick(self, now: float) -> float:
        """Sweep the pools not swept yet; the seconds until the next look."""
        del now
        wait = float("inf")
        for pool_id in await self.pools.pool_ids():
            if pool_id in self._swept:
                continue
            try:
                removed = await self._sweep_pool(await self.pools.client(pool_id))
            except XenKeepError as exc:
                log.info("pool %s: %s not looked for yet: %s", pool_id, self._what, exc)
                wait = SWEEP_RETRY
                continue
            self._swept.add(pool_id)
            if removed:
                log.warning("pool %s: removed %d %s", pool_id, len(removed), self._what)
        return wait
