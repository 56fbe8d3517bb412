"""``xenkeep replication list|run JOB|start REPLICA``: replication from the console.

Each subcommand checks that the daemon answers, borrows the console's API
token (see :mod:`xenkeep.cli.client`) and works through the daemon's JSON
API; a run or a start is followed as ``xenkeep backup run`` follows a
backup (:mod:`xenkeep.cli.follow`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import Any, Final

from xenkeep.cli.client import OPERATIONS, Api, console_token
from xenkeep.cli.command import Command
from xenkeep.cli.context import Context
from xenkeep.cli.errors import EXIT_INTERRUPTED, EXIT_OK, ConsoleError
from xenkeep.cli.follow import follow_to_exit
from xenkeep.cli.lookup import find_job, find_replica
from xenkeep.cli.output import emit, emit_json, last_result, run_summary, table, when
from xenkeep.units import clock_duration, human_bytes

API: Final = "/api/v1/replication"


def _rpo(replica: Mapping[str, Any]) -> str:
    rpo = replica.get("rpo") or {}
    if rpo.get("age") is None:
        return "no point yet"
    text = clock_duration(rpo["age"])
    return text + (" EXCEEDED" if rpo.get("exceeded") else "")


def _next_run(job: Mapping[str, Any], zone: str) -> str:
    if job.get("paused"):
        return "paused"
    return when(job.get("next_run"), zone) if job.get("enabled", True) else "disabled"


def replication_list(api: Api, args: argparse.Namespace) -> int:
    """Jobs and replicas, with their RPO."""
    jobs = api.get(f"{API}/jobs")["jobs"]
    replicas = api.get(f"{API}/replicas")["replicas"]
    if args.json:
        emit_json({"jobs": jobs, "replicas": replicas})
        return EXIT_OK
    zone = api.timezone()
    if jobs:
        rows = [
            [
                str(j["id"]),
                str(j.get("name")),
                str(j.get("schedule") or "manual"),
                _next_run(j, zone),
                last_result(j, zone),
            ]
            for j in jobs
        ]
        emit(table(["ID", "NAME", "SCHEDULE", "NEXT RUN", "LAST RESULT"], rows))
        for j in jobs:
            if j.get("paused"):
                emit(f"job {j['id']} is paused: {j['paused']}")
    else:
        emit("no replication jobs yet (create one on the web interface's replication page)")
    emit("")
    if replicas:
        rows = [
            [
                str(r["id"]),
                str(r.get("source_vm_name")),
                str(r.get("job_name") or "-"),
                str(r.get("state")),
                when(r.get("latest_point_at"), zone),
                _rpo(r),
                str(r.get("points")),
                human_bytes(r.get("last_bytes") or 0),
            ]
            for r in replicas
        ]
        emit(table(["ID", "VM", "JOB", "STATE", "LATEST POINT", "RPO", "POINTS", "SENT"], rows))
    else:
        emit("no replicas yet")
    return EXIT_OK


def replication_run(api: Api, args: argparse.Namespace) -> int:
    """Start a job now and follow it."""
    job = find_job(api.get(f"{API}/jobs")["jobs"], args.job, what="replication job")
    op_id = int(api.post(f"{API}/jobs/{job['id']}/run")["operation_id"])
    if args.no_wait:
        emit(str(op_id))
        return EXIT_OK
    emit(f"run {op_id} of replication job {job.get('name')!r} started")
    return follow_to_exit(api, op_id, run_summary, base=OPERATIONS, listing="replication")


def start_summary(op: Mapping[str, Any], zone: str = "UTC") -> str:
    """What a finished start of a replica did (times in ``zone``)."""
    report = op.get("report") or {}
    lines = []
    if report.get("started_vm_uuid"):
        what = "a clone of point" if report.get("cloned") else "the replica, at point"
        lines.append(
            f"{report.get('vm_name')}: started {what} {report.get('point_seq')} "
            f"({when(report.get('point_taken'), zone)}) as VM {report['started_vm_uuid']}"
        )
        lines.append("the job's schedule is paused until a failback")
    if op.get("error"):
        lines.append(f"error: {op['error']}")
    lines.append(f"result: {op.get('status')}")
    return "\n".join(lines)


def replication_start(api: Api, args: argparse.Namespace) -> int:
    """Start a replica (failover) and follow it."""
    replica = find_replica(api.get(f"{API}/replicas")["replicas"], args.replica)
    if replica.get("state") != "replicating":
        raise ConsoleError(
            f"the replica of {replica.get('source_vm_name')} is {replica.get('state')}",
            hint="fail it back first (web interface)",
        )
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConsoleError(
                "starting a replica pauses its job's schedule: confirm with --yes",
            )
        answer = input(
            f"start the replica of {replica.get('source_vm_name')} and pause its job? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            emit("nothing started")
            return EXIT_OK
    body = {"point_uuid": args.point} if args.point else {}
    op_id = int(api.post(f"{API}/replicas/{replica['id']}/start", body)["operation_id"])
    if args.no_wait:
        emit(str(op_id))
        return EXIT_OK
    emit(f"starting the replica of {replica.get('source_vm_name')} (operation {op_id})")
    zone = api.timezone()
    return follow_to_exit(
        api, op_id, lambda op: start_summary(op, zone), base=OPERATIONS, listing="replication"
    )


_SUBCOMMANDS: Final[dict[str, Callable[[Api, argparse.Namespace], int]]] = {
    "list": replication_list,
    "run": replication_run,
    "start": replication_start,
}


def token_name(args: argparse.Namespace) -> str:
    """The console token's name: what the command does, for the audit log."""
    target = getattr(args, "job", None) or getattr(args, "replica", None)
    return f"console: replication {args.replication_command}" + (f" {target}" if target else "")


def run_replication(ctx: Context) -> int:
    """``xenkeep replication ...``: check the daemon, borrow a token, run the subcommand."""
    try:
        api = Api.for_settings(ctx.settings)
        api.get("/api/v1/health")
        with console_token(ctx, token_name(ctx.args)) as token:
            api.token = token
            return _SUBCOMMANDS[ctx.args.replication_command](api, ctx.args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def replication_arguments(parser: argparse.ArgumentParser) -> None:
    """``replication list|run|start`` and their options."""
    cmds = parser.add_subparsers(dest="replication_command", required=True)
    lst = cmds.add_parser("list", help="jobs and replicas with their RPO")
    lst.add_argument("--json", action="store_true", help="print the API's JSON")
    run = cmds.add_parser("run", help="run a job now and follow it")
    run.add_argument("job", help="job id or exact name")
    run.add_argument("--no-wait", action="store_true", help="print the operation id and return")
    start = cmds.add_parser("start", help="start a replica (failover) and follow it")
    start.add_argument("replica", help="replica id, or its source VM's name or uuid")
    start.add_argument(
        "--point", metavar="UUID", help="start a clone of this point (default: the latest)"
    )
    start.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    start.add_argument("--no-wait", action="store_true", help="print the operation id and return")


COMMANDS: Final = (
    Command(
        "replication",
        "replication jobs, runs and replicas",
        run_replication,
        replication_arguments,
    ),
)
