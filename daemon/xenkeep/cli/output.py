"""What the console prints: tables, times, progress lines and run summaries.

Pure functions from the API's JSON to text, plus the two ways text leaves:
:func:`emit` to stdout and :func:`error` to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from xenkeep.backup.const import RunStatus
from xenkeep.jobs.report import BACKED_UP, mail_body
from xenkeep.units import clock_duration, human_bytes, local_time, log_time, number_ranges


def emit(text: str) -> None:
    """Print one piece of output."""
    # Flushed so `| tee` and log collectors see progress as it happens.
    print(text, flush=True)


def emit_json(data: Any) -> None:
    """Print the API's JSON, indented and with sorted keys."""
    emit(json.dumps(data, indent=2, sort_keys=True))


def error(message: str, hint: str | None = None) -> None:
    """``xenkeep: MESSAGE`` and an optional ``hint: HINT`` line on stderr."""
    tail = f"\nhint: {hint}" if hint else ""
    print(f"xenkeep: {message}{tail}", file=sys.stderr)


# --- times ----------------------------------------------------------------------------


def when(ts: float | None, zone: str) -> str:
    """A date and minute in the appliance's zone, named; a dash when there is none."""
    return local_time(ts, zone)


def clock(ts: float | None, zone: str) -> str:
    """A time of day in the appliance's zone, as a log line starts."""
    if not ts:
        return "--:--:--"
    return log_time(ts, zone)[11:]


# --- tables and list lines ---------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, without trailing blanks."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [list(headers), *rows]
    ]
    return "\n".join(lines)


def last_result(job: Mapping[str, Any], zone: str) -> str:
    """A job's running run, or its last run's status and time."""
    if job.get("running_run"):
        return f"running (run {job['running_run']})"
    last = job.get("last_run")
    if not last:
        return "never run"
    finished = last.get("finished_at") or last.get("created_at")
    return f"{last.get('status')} {when(finished, zone)} (run {last.get('id')})"


def storage_line(storage: Mapping[str, Any]) -> str:
    """Where the backup storage is and how full."""
    if not storage.get("configured"):
        return "storage: not configured (set it up on the web interface's storage page)"
    reflink = "yes" if storage.get("reflink") else "no"
    return (
        f"storage: {storage.get('path')}  free {human_bytes(storage.get('free') or 0)}"
        f" of {human_bytes(storage.get('capacity') or 0)}  reflink: {reflink}"
    )


def point_type(point: Mapping[str, Any]) -> str:
    """What a restore point is now (full, delta, or the mix of its disks) and,
    when a merge changed it, how it was taken: ``full (taken as delta)``."""
    now = str(point.get("type") or "?")
    taken = sorted({str(d.get("transfer")) for d in point.get("disks") or []})
    was = "+".join(taken)
    return now if not was or was == now else f"{now} (taken as {was})"


def verified(point: Mapping[str, Any], zone: str) -> str:
    """What is known of a point: DAMAGED (with the blocks) when a read or a
    verify found damage it meets, else what the verifies found: ok (when),
    DAMAGED, or not yet."""
    damage = point.get("damage") or []
    if damage:
        return "DAMAGED " + "; ".join(
            f"disk {d.get('disk')} "
            + (f"blocks {number_ranges(d['blocks'])}" if d.get("blocks") else "whole file")
            for d in damage
        )
    found = point.get("verified") or {}
    state = found.get("state")
    if state == "ok":
        return f"ok {when(found.get('at'), zone)}"
    if state == "damaged":
        return "DAMAGED"
    return "not yet"


# --- runs ----------------------------------------------------------------------------------


def log_line(line: Mapping[str, Any], zone: str) -> str:
    """One line of a run's log: its time, its level unless info, its message."""
    level = line.get("level", "info")
    tag = "" if level == "info" else f"{level}: "
    return f"{clock(line.get('ts'), zone)} {tag}{line.get('message')}"


def progress_line(run: Mapping[str, Any]) -> str:
    """One line of a run's progress from its tasks: percent, bytes, speed, ETA, stages."""
    tasks = run.get("tasks") or []
    disks = [t for t in tasks if t.get("disk_key") is not None]
    done = sum(int(t.get("bytes") or 0) for t in disks)
    total = sum(int(t.get("total_bytes") or 0) for t in disks)
    running = [t for t in disks if t.get("status") == RunStatus.RUNNING.value]
    speed = sum(float(t.get("speed") or 0) for t in running)
    etas = [float(t["eta"]) for t in running if t.get("eta") is not None]
    parts = []
    if total > 0:
        parts.append(f"{min(100, done * 100 // total):3d}%")
        parts.append(f"{human_bytes(done)} of {human_bytes(total)}")
    else:
        parts.append(human_bytes(done))
    if running:
        parts.append(f"{human_bytes(speed)}/s")
        if etas:
            parts.append(f"ETA {clock_duration(max(etas))}")
    vms = [
        f"{t.get('vm_name') or t.get('vm_uuid')}: {t.get('stage')}"
        for t in tasks
        if t.get("disk_key") is None and t.get("status") == RunStatus.RUNNING.value
    ]
    if vms:
        parts.append("[" + ", ".join(vms) + "]")
    elif not tasks:
        parts.append(f"[{run.get('status')}]")
    return "progress " + "  ".join(parts)


def run_summary(run: Mapping[str, Any]) -> str:
    """The report of a finished run (a backup, a replication), as the mail shows it,
    and its result."""
    report = run.get("report") or {}
    lines = []
    if report.get("vms") is not None and "seconds" in report:
        lines.append(mail_body(report).rstrip("\n"))
    cause = report.get("error") or run.get("error")
    result = str(run.get("status"))
    if cause and result != RunStatus.WARNING.value:
        lines.append(f"error: {cause}")
    for warning in report.get("warnings") or ([cause] if cause else []):
        if result == RunStatus.WARNING.value:
            lines.append(f"warning: {warning}")
    vms = report.get("vms") or []
    failed = sum(1 for v in vms if v.get("status") not in BACKED_UP)
    if result == RunStatus.FAILED.value and vms and failed < len(vms):
        result = f"partly failed ({failed} of {len(vms)} VMs failed)"
    elif vms:
        result += f" ({len(vms) - failed} of {len(vms)} VMs succeeded)"
    lines.append(f"result: {result}")
    return "\n".join(lines)


def restore_summary(run: Mapping[str, Any]) -> str:
    """The report of a finished restore."""
    report = run.get("report") or {}
    lines = [f"{run.get('job_name')}: {run.get('status')}"]
    if report.get("point_id"):
        lines.append(f"restore point: {report['point_id']}")
    if report.get("new_vm_uuid"):
        lines.append(f"new VM:        {report['new_vm_uuid']}")
    elif report.get("new_vdi_uuids"):
        lines.append(f"new disk(s):   {', '.join(report['new_vdi_uuids'])}")
    if report.get("bytes") is not None and report.get("seconds") is not None:
        lines.append(
            f"transferred:   {human_bytes(report['bytes'])} in {report['seconds']:.1f} s"
            f" ({human_bytes(report.get('speed') or 0)}/s)"
        )
    for d in report.get("damage") or []:
        if d.get("zeroed"):
            lines.append(
                f"damaged:       disk {d['disk']} blocks {number_ranges(d['zeroed'])} "
                "written as zeros"
            )
        for file, blocks in (d.get("unchecked") or {}).items():
            lines.append(
                f"unchecked:     disk {d['disk']} blocks {number_ranges(blocks)} of {file}.vhd"
            )
    if run.get("error"):
        lines.append(f"error: {run['error']}")
    lines.append(f"result: {run.get('status')}")
    return "\n".join(lines)
