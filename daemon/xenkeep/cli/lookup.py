"""Finding what a console argument names: a job, a backed-up VM, a restore
point, a pool — by id or exact name, with an error that lists the choices."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from xenkeep.cli.client import Api
from xenkeep.cli.errors import ConsoleError


def find_job(
    jobs: Sequence[Mapping[str, Any]], wanted: str, *, what: str = "backup job"
) -> Mapping[str, Any]:
    """A job (of the kind ``what`` names) by id or exact name."""
    if wanted.isdigit():
        for job in jobs:
            if int(job["id"]) == int(wanted):
                return job
    named = [j for j in jobs if j.get("name") == wanted]
    if len(named) == 1:
        return named[0]
    if named:
        ids = ", ".join(str(j["id"]) for j in named)
        raise ConsoleError(f"several jobs are named {wanted!r} (ids {ids}): give the id")
    known = ", ".join(f"{j['id']} {j.get('name')!r}" for j in jobs) or "none"
    raise ConsoleError(f"no {what} {wanted!r}", hint=f"jobs: {known}")


def find_vm(vms: Sequence[Mapping[str, Any]], wanted: str) -> Mapping[str, Any]:
    """A backed-up VM by UUID or exact name."""
    for vm in vms:
        if str(vm.get("vm_uuid", "")).lower() == wanted.lower():
            return vm
    named = [v for v in vms if v.get("name") == wanted]
    if len(named) == 1:
        return named[0]
    if named:
        uuids = ", ".join(str(v["vm_uuid"]) for v in named)
        raise ConsoleError(f"several backed-up VMs are named {wanted!r} ({uuids}): give the UUID")
    names = ", ".join(str(v.get("name") or v["vm_uuid"]) for v in vms[:10])
    more = f" and {len(vms) - 10} more" if len(vms) > 10 else ""
    raise ConsoleError(
        f"no restore points of a VM {wanted!r}",
        hint=f"backed-up VMs: {names}{more}" if vms else "nothing has been backed up yet",
    )


def find_point(points: Sequence[Mapping[str, Any]], wanted: str | None) -> Mapping[str, Any]:
    """A restore point by id (or a unique prefix); the newest without one."""
    if not points:
        raise ConsoleError("this VM has no restore points")
    if wanted is None:
        return points[-1]
    exact = [p for p in points if p.get("id") == wanted]
    if exact:
        return exact[0]
    prefixed = [p for p in points if str(p.get("id", "")).startswith(wanted)]
    if len(prefixed) == 1:
        return prefixed[0]
    if prefixed:
        raise ConsoleError(f"{len(prefixed)} restore points start with {wanted!r}: give more")
    raise ConsoleError(
        f"no restore point {wanted!r} of this VM",
        hint="`xenkeep backup list VM` shows its points",
    )


def pool_for(api: Api, point: Mapping[str, Any], wanted: str | None) -> str:
    """The pool to restore to: the named one, the only one, or the point's job's."""
    pools = api.get("/api/v1/pools").get("pools") or []
    if wanted is not None:
        for pool in pools:
            if str(pool["id"]) == wanted or pool.get("name") == wanted:
                return str(pool["id"])
        known = ", ".join(f"{p['id']} {p.get('name')!r}" for p in pools) or "none"
        raise ConsoleError(f"no pool {wanted!r}", hint=f"pools: {known}")
    if len(pools) == 1:
        return str(pools[0]["id"])
    job_id = str(point.get("job_id") or "")
    if job_id.isdigit():
        with contextlib.suppress(ConsoleError):
            pool_id = str(api.get(f"/api/v1/backup/jobs/{job_id}")["pool_id"])
            if any(str(p["id"]) == pool_id for p in pools):
                return pool_id
    known = ", ".join(f"{p['id']} {p.get('name')!r}" for p in pools) or "none"
    raise ConsoleError("say which pool to restore to with --pool", hint=f"pools: {known}")


def find_replica(replicas: Sequence[Mapping[str, Any]], wanted: str) -> Mapping[str, Any]:
    """A replica by id, or by its source VM's exact name or uuid."""
    if wanted.isdigit():
        for r in replicas:
            if int(r["id"]) == int(wanted):
                return r
    found = [
        r
        for r in replicas
        if r.get("source_vm_name") == wanted
        or str(r.get("source_vm_uuid", "")).lower() == wanted.lower()
    ]
    if len(found) == 1:
        return found[0]
    if found:
        ids = ", ".join(f"{r['id']} (job {r.get('job_name')!r})" for r in found)
        raise ConsoleError(f"several replicas of {wanted!r}: {ids}: give the id")
    known = ", ".join(f"{r['id']} {r.get('source_vm_name')!r}" for r in replicas[:10]) or "none"
    raise ConsoleError(f"no replica {wanted!r}", hint=f"replicas: {known}")
