"""Health checks: a restore point restored, started, and seen alive.

A backup that restores byte for byte can still hold a guest that does not
boot. A health check (as Xen Orchestra has one) restores a point as a new VM
on a chosen SR, **without network interfaces** (a second copy of a running
server on the same network would take its addresses), starts it, and waits
for its guest agent to report (``VM_guest_metrics``: the PV drivers up, the
OS named). Then it destroys the VM and its disks and records on the point
``healthy``, or why not. It is an operation of its own (kind
:data:`~.kinds.HEALTH_CHECK`, target ``vm:<uuid>``): a run of a job that has
a health check SR starts one for the points it made, and an administrator
can start one for any point.

The VM is XenKeep's own: it carries :data:`HEALTH_CHECK_KEY` from its
creation, the blocks it inherits from the original (``destroy``,
``start``...) are lifted, and what a killed daemon left running is removed
at the next start (:func:`sweep_health_checks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from xenkeep.errors import ValidationError
from xenkeep.jobs.snapshots import destroy_snapshot
from xenkeep.ops import OperationContext, Operations, OpKind, OpStatus
from xenkeep.ops.manager import Outcome, summary_line
from xenkeep.pools.access import PoolAccess
from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import XapiError, XapiFailure
from xenkeep.xapi.guest import guest_report

from .kinds import HEALTH_CHECK, USES_STORAGE, HealthStage
from .restore import RestoreRequest, RestoreRun
from .runner import describe_error
from .storage import BackupStorage

log = logging.getLogger(__name__)

#: other_config key on a health check's VM: the operation that made it.
HEALTH_CHECK_KEY: Final = "xenkeep-health-check"
NULL_REF: Final = "OpaqueRef:NULL"
#: Seconds between two looks at the guest's metrics.
POLL_SECONDS: Final = 1.0
HEALTHY: Final = "healthy"
UNHEALTHY: Final = "unhealthy"


@dataclass(frozen=True)
class CheckTarget:
    """One restore point to check."""

    vm_uuid: str
    vm_name: str
    point_id: str


class HealthChecks:
    """Start health checks of restore points; read them back."""

    def __init__(
        self,
        pools: PoolAccess,
        storage: BackupStorage,
        ops: Operations,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pools = pools
        self.storage = storage
        self.ops = ops
        self._clock = clock

    def running(self) -> frozenset[int]:
        """Ids of the health checks in progress (their VMs are theirs)."""
        return frozenset(self.ops.running(kind=OpKind.HEALTH_CHECK))

    async def start(
        self,
        targets: Sequence[CheckTarget],
        *,
        pool_id: str,
        sr_uuid: str,
        guest_wait: float,
        trigger: str = "manual",
    ) -> int:
        """Check each target's point on ``sr_uuid`` of ``pool_id``; the
        operation id. Refused at once for an SR the pool does not have."""
        if not targets:
            raise ValidationError("nothing to check")
        client = await self.pools.client(pool_id)
        try:
            await client.call("SR.get_by_uuid", sr_uuid)
        except XapiFailure as exc:
            if exc.xapi_code != "UUID_INVALID":
                raise
            raise ValidationError(
                f"the pool has no SR {sr_uuid}", field="health_check_sr"
            ) from None
        for t in targets:  # each point exists: refused now, not after a restore
            await self.storage.point(t.vm_uuid, t.point_id)

        async def work(ctx: OperationContext) -> Outcome:
            rows = []
            warnings: list[str] = []
            for t in targets:
                row = await self._check(ctx, client, t, pool_id, sr_uuid, guest_wait, warnings)
                rows.append(row)
            bad = [r for r in rows if r["result"] != HEALTHY]
            report = {"vms": rows, "sr_uuid": sr_uuid, "pool_id": pool_id}
            if bad:
                error = f"{len(bad)} of {len(rows)} unhealthy: " + summary_line(
                    [f"{r['vm_name']}: {r['why']}" for r in bad]
                )
                return Outcome(report=report, status=OpStatus.FAILED, error=error)
            return Outcome(report=report, warnings=warnings)

        first = targets[0]
        title = (
            f"health check of {first.vm_name}"
            if len(targets) == 1
            else f"health check of {len(targets)} VMs"
        )
        return await self.ops.start(
            HEALTH_CHECK,
            work,
            target=f"vm:{first.vm_uuid}",
            title=title,
            action=title,
            trigger=trigger,
            params={
                "pool_id": pool_id,
                "sr_uuid": sr_uuid,
                "vm_uuid": first.vm_uuid,
                "point_id": first.point_id,
                "points": [t.__dict__ for t in targets],
            },
            claims=[USES_STORAGE],
        )

    async def _check(
        self,
        ctx: OperationContext,
        client: XapiClient,
        t: CheckTarget,
        pool_id: str,
        sr_uuid: str,
        guest_wait: float,
        warnings: list[str],
    ) -> dict[str, Any]:
        """Restore, start, wait, destroy; the point's row of the report."""
        started = self._clock()
        row: dict[str, Any] = {
            "vm_uuid": t.vm_uuid,
            "vm_name": t.vm_name,
            "point_id": t.point_id,
            "result": UNHEALTHY,
            "why": "",
        }
        await ctx.stage(HealthStage.RESTORE)
        request = RestoreRequest(
            pool_id=pool_id,
            vm_uuid=t.vm_uuid,
            point_id=t.point_id,
            sr_uuid=sr_uuid,
            name=f"[XenKeep health check] {t.vm_name}",
            with_networks=False,
            marks={HEALTH_CHECK_KEY: str(ctx.id)},
        )
        try:
            restored = await RestoreRun(
                ctx=ctx, request=request, client=client, datastore=self.storage.datastore
            ).execute()
        except Exception as exc:
            row["why"] = f"the restore failed: {describe_error(exc)}"
            await ctx.log(f"{t.vm_name}: {row['why']}", level="error")
            return row
        vm = str(restored["new_vm"])
        try:
            row.update(await self._boot(ctx, client, vm, t, guest_wait))
        finally:
            await ctx.stage(HealthStage.CLEANUP)
            left = await asyncio.shield(self._remove(client, vm))
            for problem in left:
                warnings.append(f"{t.vm_name}: {problem}")
                await ctx.log(f"{t.vm_name}: {problem}", level="warning")
        row["seconds"] = round(self._clock() - started, 1)
        await ctx.log(
            f"{t.vm_name} at restore point {t.point_id}: {row['result']}"
            + (f" ({row['why']})" if row["why"] else ""),
            level="info" if row["result"] == HEALTHY else "error",
        )
        return row

    async def _boot(
        self, ctx: OperationContext, client: XapiClient, vm: str, t: CheckTarget, guest_wait: float
    ) -> dict[str, Any]:
        """Start the restored VM and wait for its guest; the result and why."""
        # Blocks copied from the original (start, destroy...) are not this VM's.
        await client.call("VM.set_blocked_operations", vm, {})
        await ctx.stage(HealthStage.START)
        try:
            await client.call("VM.start", vm, False, False)
        except XapiError as exc:
            return {"result": UNHEALTHY, "why": f"the pool could not start it: {exc.message}"}
        await ctx.log(f"{t.vm_name}: started; waiting up to {guest_wait:.0f} s for its guest")
        await ctx.stage(HealthStage.WAIT)
        booted = self._clock()
        while True:
            said = await guest_report(client, vm)
            waited = self._clock() - booted
            if said is not None:
                return {"result": HEALTHY, "why": f"{said} ({waited:.0f} s after the start)"}
            if await client.call("VM.get_power_state", vm) == "Halted":
                return {"result": UNHEALTHY, "why": "it stopped before its guest reported"}
            if waited >= guest_wait:
                return {
                    "result": UNHEALTHY,
                    "why": f"its guest did not report within {guest_wait:.0f} s "
                    "(no guest agent, or it did not boot)",
                }
            await asyncio.sleep(POLL_SECONDS)

    @staticmethod
    async def _remove(client: XapiClient, vm: str) -> list[str]:
        """Destroy the check's VM and disks; what stayed in the pool."""
        try:
            removal = await destroy_snapshot(client, vm)
        except XapiError as exc:
            return [f"the health check VM {vm} stays in the pool: {exc.message}"]
        return [f"{left} stays in the pool" for left in removal.left]


async def sweep_health_checks(
    client: XapiClient, *, running: Callable[[], frozenset[int]]
) -> list[str]:
    """Destroy the VMs of health checks that are not running any more (a
    killed daemon's), started or not; their names."""
    vms = dict(await client.call("VM.get_all_records"))
    now = running()  # asked after listing: a check starting meanwhile is in it
    removed = []
    for ref, rec in sorted(vms.items()):
        mark = (rec.get("other_config") or {}).get(HEALTH_CHECK_KEY)
        if mark is None or not mark.isdigit() or int(mark) in now:
            continue
        name = str(rec.get("name_label", ref))
        with contextlib.suppress(XapiError):
            await destroy_snapshot(client, ref)
            log.warning("removed %s, left by health check %s that died", name, mark)
            removed.append(name)
    return removed
