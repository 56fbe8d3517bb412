"""``xenkeep backup list|run|restore``: backups from the appliance console.

Each subcommand checks that the daemon answers, borrows the console's API
token (see :mod:`xenkeep.cli.client`) and works through the daemon's JSON API.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any, Final

from xenkeep.cli.client import Api, console_token
from xenkeep.cli.command import Command
from xenkeep.cli.context import Context
from xenkeep.cli.errors import EXIT_INTERRUPTED, EXIT_OK, ConsoleError
from xenkeep.cli.follow import follow_to_exit
from xenkeep.cli.lookup import find_job, find_point, find_vm, pool_for
from xenkeep.cli.output import (
    emit,
    emit_json,
    last_result,
    point_type,
    restore_summary,
    run_summary,
    storage_line,
    table,
    verified,
    when,
)
from xenkeep.units import human_bytes


def backup_list(api: Api, args: argparse.Namespace) -> int:
    """Jobs and storage, or one VM's restore points."""
    if args.vm:
        vm = find_vm(api.get("/api/v1/backup/vms")["vms"], args.vm)
        uuid = str(vm["vm_uuid"])
        points = api.get(f"/api/v1/backup/vms/{urllib.parse.quote(uuid)}/points")
        if args.json:
            emit_json(points)
            return EXIT_OK
        zone = api.timezone()
        emit(f"VM {vm.get('name')} ({uuid}): {len(points['points'])} restore points")
        rows = [
            [
                str(p["id"]),
                when(p.get("created"), zone),
                point_type(p),
                human_bytes(int(p.get("size") or 0)),
                str(len(p.get("disks") or [])),
                verified(p, zone),
            ]
            for p in points["points"]
        ]
        emit(table(["POINT", "CREATED", "TYPE", "SIZE", "DISKS", "VERIFIED"], rows))
        return EXIT_OK
    jobs = api.get("/api/v1/backup/jobs")
    storage = api.get("/api/v1/backup/storage")
    if args.json:
        emit_json({"jobs": jobs["jobs"], "storage": storage})
        return EXIT_OK
    if jobs["jobs"]:
        zone = api.timezone()
        rows = [
            [
                str(j["id"]),
                str(j.get("name")),
                str(j.get("schedule") or "manual"),
                when(j.get("next_run"), zone) if j.get("enabled", True) else "disabled",
                last_result(j, zone),
            ]
            for j in jobs["jobs"]
        ]
        emit(table(["ID", "NAME", "SCHEDULE", "NEXT RUN", "LAST RESULT"], rows))
    else:
        emit("no backup jobs yet (create one on the web interface's backup page)")
    emit("")
    emit(storage_line(storage))
    return EXIT_OK


def backup_run(api: Api, args: argparse.Namespace) -> int:
    """Start a job now and follow it."""
    job = find_job(api.get("/api/v1/backup/jobs")["jobs"], args.job)
    run_id = int(api.post(f"/api/v1/backup/jobs/{job['id']}/run")["run_id"])
    if args.no_wait:
        emit(str(run_id))
        return EXIT_OK
    emit(f"run {run_id} of job {job.get('name')!r} started")
    return follow_to_exit(api, run_id, run_summary)


def backup_restore(api: Api, args: argparse.Namespace) -> int:
    """Restore a VM (or one disk) from a restore point and follow it."""
    vm = find_vm(api.get("/api/v1/backup/vms")["vms"], args.vm)
    uuid = str(vm["vm_uuid"])
    points = api.get(f"/api/v1/backup/vms/{urllib.parse.quote(uuid)}/points")["points"]
    point = find_point(points, args.point)
    keys = [str(d.get("key")) for d in point.get("disks") or []]
    if args.disk is not None and args.disk not in keys:
        raise ConsoleError(
            f"restore point {point['id']} has no disk {args.disk!r}",
            hint=f"its disks: {', '.join(keys) or 'none'}",
        )
    body: dict[str, Any] = {
        "pool_id": pool_for(api, point, args.pool),
        "vm_uuid": uuid,
        "point_id": point["id"],
        "sr_uuid": args.sr,
        "name": args.name or "",
        "disk": args.disk,
        "salvage": bool(args.salvage),
    }
    run_id = int(api.post("/api/v1/backup/restore", body)["run_id"])
    if args.no_wait:
        emit(str(run_id))
        return EXIT_OK
    what = f"disk {args.disk} of " if args.disk is not None else ""
    emit(
        f"restore run {run_id} started: {what}{vm.get('name')} from point {point['id']}"
        f" to SR {args.sr}"
    )
    return follow_to_exit(api, run_id, restore_summary)


_SUBCOMMANDS: Final[dict[str, Callable[[Api, argparse.Namespace], int]]] = {
    "list": backup_list,
    "run": backup_run,
    "restore": backup_restore,
}


def token_name(args: argparse.Namespace) -> str:
    """The console token's name: what the command does, for the audit log."""
    target = getattr(args, "job", None) or getattr(args, "vm", None)
    return f"console: backup {args.backup_command}" + (f" {target}" if target else "")


def run_backup(ctx: Context) -> int:
    """``xenkeep backup ...``: check the daemon, borrow a token, run the subcommand."""
    try:
        api = Api.for_settings(ctx.settings)
        api.get("/api/v1/health")
        with console_token(ctx, token_name(ctx.args)) as token:
            api.token = token
            return _SUBCOMMANDS[ctx.args.backup_command](api, ctx.args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def backup_arguments(backup: argparse.ArgumentParser) -> None:
    """``backup list|run|restore`` and their options."""
    cmds = backup.add_subparsers(dest="backup_command", required=True)
    lst = cmds.add_parser("list", help="jobs and storage, or a VM's restore points")
    lst.add_argument("vm", nargs="?", help="VM name or UUID: list its restore points")
    lst.add_argument("--json", action="store_true", help="print the API's JSON")
    run = cmds.add_parser("run", help="run a job now and follow it")
    run.add_argument("job", help="job id or exact name")
    run.add_argument("--no-wait", action="store_true", help="print the run id and return")
    restore = cmds.add_parser("restore", help="restore a VM or one disk and follow it")
    restore.add_argument("vm", help="VM name or UUID")
    restore.add_argument("--point", help="restore point id (default: the newest)")
    restore.add_argument("--sr", required=True, metavar="SR_UUID", help="SR to restore to")
    restore.add_argument("--name", help="name of the new VM")
    restore.add_argument("--disk", metavar="N", help="restore only this disk (its userdevice)")
    restore.add_argument("--pool", metavar="ID", help="pool id or name (default: the VM's)")
    restore.add_argument(
        "--salvage",
        action="store_true",
        help="restore what can be read from a damaged restore point: damaged blocks are "
        "written as zeros and listed, and the restore ends failed (without it, a restore "
        "stops before a damaged block reaches the pool)",
    )
    restore.add_argument("--no-wait", action="store_true", help="print the run id and return")


COMMANDS: Final = (
    Command("backup", "backup jobs, runs and restores", run_backup, backup_arguments),
)
