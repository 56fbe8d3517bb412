"""``xenkeep backup list|run|restore``: backups from the appliance console.

The console user is root on the appliance (or the daemon's user), already
trusted with the database. Rather than reach around the daemon, the command
mints a short-lived API token for the first active administrator, named for
what the console does (``console: backup run nightly``, so the audit log
says who did what), talks to the running daemon's JSON API over HTTPS pinned
to the appliance's own certificate, and revokes the token when it ends —
also on errors and Ctrl-C.

Exit codes: 0 success, 1 failure (a failed run, a bad argument, an API
error), 3 the daemon does not answer, 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import signal
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from xenkeep.auth.audit import AuditLog
from xenkeep.auth.const import Role
from xenkeep.auth.manager import AuthManager, User
from xenkeep.auth.secrets import token_hash
from xenkeep.backup.const import FINISHED, RunStatus
from xenkeep.backup.report import mail_body
from xenkeep.config import Settings
from xenkeep.store import open_database
from xenkeep.system.tls import CERT_NAME
from xenkeep.units import clock_duration, human_bytes

#: Seconds between polls of a followed run; progress is printed at most
#: once per PROGRESS_EVERY seconds, and only when it changed.
POLL_SECONDS: Final = 0.5
PROGRESS_EVERY: Final = 1.0
#: How long to wait, after asking for a cancel, for the run to say it ended.
CANCEL_WAIT_SECONDS: Final = 30.0
HTTP_TIMEOUT: Final = 30.0
#: The token name column allows 64 characters.
TOKEN_NAME_MAX: Final = 64
#: The token is revoked when the command ends; if the command is killed
#: outright, it still stops working after a day (longer than any run).
CONSOLE_TOKEN_LIFETIME: Final = 24 * 3600.0

EXIT_FAILED: Final = 1
EXIT_DOWN: Final = 3
EXIT_INTERRUPTED: Final = 130

_FINISHED_NAMES: Final = frozenset(s.value for s in FINISHED)


class ConsoleError(Exception):
    """A failure the console explains in one line (plus an optional hint)."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code


class DaemonDownError(ConsoleError):
    """The daemon does not answer on its HTTPS port."""

    def __init__(self, url: str, detail: str = "") -> None:
        super().__init__(
            f"the daemon is not answering at {url}" + (f" ({detail})" if detail else ""),
            hint="start it with `systemctl start xenkeepd`; `xenkeep status` shows its state",
            exit_code=EXIT_DOWN,
        )


# --- the API client -----------------------------------------------------------------


def daemon_url(settings: Settings) -> str:
    """The daemon's HTTPS base URL on this machine."""
    host = "127.0.0.1" if settings.listen in ("::", "0.0.0.0", "") else settings.listen  # noqa: S104
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{settings.https_port}"


@dataclass
class Api:
    """Blocking JSON calls to the daemon, pinned to the appliance certificate."""

    base: str
    context: ssl.SSLContext
    token: str = ""

    @classmethod
    def for_settings(cls, settings: Settings) -> Api:
        """A client of the daemon these settings describe; DaemonDownError without a certificate."""
        base = daemon_url(settings)
        cert = settings.tls_dir / CERT_NAME
        if not cert.exists():
            raise DaemonDownError(base, f"no certificate at {cert} yet")
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False  # pinned to the exact certificate instead
        return cls(base, ctx)

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """One request; the decoded JSON answer, or ConsoleError with the envelope's text."""
        headers = {"Accept": "application/json"}
        data = None
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(  # noqa: S310 - our own https URL
            self.base + path, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, context=self.context, timeout=HTTP_TIMEOUT
            ) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DaemonDownError(self.base, str(reason)) from None
        except ValueError:
            raise ConsoleError(f"the daemon sent an answer that is not JSON for {path}") from None

    def get(self, path: str) -> Any:
        """GET ``path``."""
        return self.call("GET", path)

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """POST ``body`` as JSON to ``path``."""
        return self.call("POST", path, body if body is not None else {})


def _api_error(exc: urllib.error.HTTPError) -> ConsoleError:
    try:
        envelope = json.loads(exc.read() or b"{}")
        error = envelope.get("error") or {}
        message = str(error.get("message") or exc.reason)
        hint = error.get("hint")
    except (ValueError, AttributeError, OSError):
        message, hint = f"HTTP {exc.code} {exc.reason}", None
    finally:
        exc.close()
    return ConsoleError(message, hint=str(hint) if hint else None)


# --- the console's API token ----------------------------------------------------------


async def _first_admin(auth: AuthManager) -> User | None:
    admins = [u for u in await auth.list_users() if u.role is Role.ADMIN and not u.disabled]
    return min(admins, key=lambda u: u.id) if admins else None


async def _mint(settings: Settings, name: str) -> tuple[str, User, int]:
    db = await open_database(settings.database_path)
    try:
        auth = AuthManager(db, AuditLog(db), settings)
        user = await _first_admin(auth)
        if user is None:
            raise ConsoleError(
                "there is no administrator yet: finish the setup wizard first",
                hint="open the web interface with the token from `xenkeep setup-token`",
            )
        token = await auth.create_api_token(
            user, name[:TOKEN_NAME_MAX], ip="console", lifetime=CONSOLE_TOKEN_LIFETIME
        )
        row = await db.fetchone(
            "SELECT id FROM api_tokens WHERE token_hash = ?", (token_hash(token),)
        )
        assert row is not None  # just inserted
        return token, user, int(row["id"])
    finally:
        await db.close()


async def _revoke(settings: Settings, user: User, token_id: int) -> None:
    db = await open_database(settings.database_path)
    try:
        await AuthManager(db, AuditLog(db), settings).revoke_api_token(user, token_id, ip="console")
    finally:
        await db.close()


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    # Ctrl-C between creating the token and recording its id, or during the
    # revoke, would leave the console's token behind.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


@contextlib.contextmanager
def console_token(settings: Settings, name: str) -> Iterator[str]:
    """An API token of the first administrator for the duration of one command."""
    if not settings.database_path.exists():
        raise ConsoleError(
            f"no database at {settings.database_path}",
            hint="start xenkeepd and finish the setup wizard",
        )
    with _sigint_ignored():
        token, user, token_id = asyncio.run(_mint(settings, name))
    try:
        yield token
    finally:
        with _sigint_ignored():
            asyncio.run(_revoke(settings, user, token_id))


# --- formatting ------------------------------------------------------------------------


def _when(ts: float | None) -> str:
    if not ts:
        return "—"
    return datetime.datetime.fromtimestamp(float(ts)).strftime("%Y-%m-%d %H:%M")


def _clock(ts: float | None) -> str:
    if not ts:
        return "--:--:--"
    return datetime.datetime.fromtimestamp(float(ts)).strftime("%H:%M:%S")


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


def _last_result(job: Mapping[str, Any]) -> str:
    if job.get("running_run"):
        return f"running (run {job['running_run']})"
    last = job.get("last_run")
    if not last:
        return "never run"
    when = last.get("finished_at") or last.get("created_at")
    return f"{last.get('status')} {_when(when)} (run {last.get('id')})"


def _storage_line(storage: Mapping[str, Any]) -> str:
    if not storage.get("configured"):
        return "storage: not configured (set it up on the web interface's storage page)"
    reflink = "yes" if storage.get("reflink") else "no"
    return (
        f"storage: {storage.get('path')}  free {human_bytes(storage.get('free') or 0)}"
        f" of {human_bytes(storage.get('capacity') or 0)}  reflink: {reflink}"
    )


def _point_type(point: Mapping[str, Any]) -> str:
    kinds = {str(d.get("transfer")) for d in point.get("disks") or []}
    if kinds == {"full"}:
        return "full"
    if kinds == {"delta"}:
        return "delta"
    return "+".join(sorted(kinds)) or "?"


def _verified(point: Mapping[str, Any], vm_uuid: str, verify: Mapping[str, Any]) -> str:
    """The last verify's word on a point: ok, damaged, or not verified."""
    if verify.get("status") not in ("ok", "damaged"):
        return "—"
    if verify.get("vm_uuid") not in (None, "", vm_uuid):
        return "—"
    if float(point.get("created") or 0) > float(verify.get("started") or 0):
        return "not yet"
    for d in verify.get("damaged") or []:
        if d.get("vm_uuid") == vm_uuid and d.get("point_id") == point.get("id"):
            return "DAMAGED"
    return f"ok {_when(verify.get('finished'))}"


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


def backup_summary(run: Mapping[str, Any]) -> str:
    """The report of a finished backup run, as the mail shows it, and its result."""
    report = run.get("report") or {}
    lines = []
    if report.get("vms") is not None and "seconds" in report:
        lines.append(mail_body(report).rstrip("\n"))
    error = report.get("error") or run.get("error")
    if error:
        lines.append(f"error: {error}")
    vms = report.get("vms") or []
    failed = sum(1 for v in vms if v.get("status") != RunStatus.SUCCESS.value)
    result = str(run.get("status"))
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
    if run.get("error"):
        lines.append(f"error: {run['error']}")
    lines.append(f"result: {run.get('status')}")
    return "\n".join(lines)


# --- following a run ---------------------------------------------------------------------


def _out(text: str) -> None:
    # Flushed so `| tee` and log collectors see progress as it happens.
    print(text, flush=True)


def follow(api: Api, run_id: int, *, clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Print a run's log and progress until it finishes; its final detail."""
    after = 0
    last_progress = ""
    printed_at = -PROGRESS_EVERY
    while True:
        run: dict[str, Any] = api.get(f"/api/v1/backup/runs/{run_id}?log_after={after}")
        for line in run.get("log") or []:
            level = line.get("level", "info")
            tag = "" if level == "info" else f"{level}: "
            _out(f"{_clock(line.get('ts'))} {tag}{line.get('message')}")
            after = max(after, int(line.get("id") or 0))
        finished = run.get("status") in _FINISHED_NAMES
        if not finished:
            progress = progress_line(run)
            now = clock()
            if progress != last_progress and now - printed_at >= PROGRESS_EVERY:
                _out(progress)
                last_progress, printed_at = progress, now
            time.sleep(POLL_SECONDS)
            continue
        return run


def _cancel(api: Api, run_id: int) -> None:
    """After Ctrl-C: ask the daemon to cancel, then wait a little for the end."""
    print(f"\ninterrupted: asking the daemon to cancel run {run_id}", file=sys.stderr, flush=True)
    try:
        api.post(f"/api/v1/backup/runs/{run_id}/cancel")
    except ConsoleError as exc:
        print(f"xenkeep: {exc.message}", file=sys.stderr)
        return
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    try:
        while time.monotonic() < deadline:
            run = api.get(f"/api/v1/backup/runs/{run_id}")
            if run.get("status") in _FINISHED_NAMES:
                print(f"run {run_id} {run['status']}", file=sys.stderr)
                return
            time.sleep(POLL_SECONDS)
    except (ConsoleError, KeyboardInterrupt):
        pass
    print(f"cancel requested; see `xenkeep backup list` for run {run_id}", file=sys.stderr)


def _follow_to_exit(api: Api, run_id: int, summary: Callable[[Mapping[str, Any]], str]) -> int:
    try:
        run = follow(api, run_id)
    except KeyboardInterrupt:
        _cancel(api, run_id)
        return EXIT_INTERRUPTED
    _out(summary(run))
    return 0 if run.get("status") == RunStatus.SUCCESS.value else EXIT_FAILED


# --- lookups ---------------------------------------------------------------------------------


def find_job(jobs: Sequence[Mapping[str, Any]], wanted: str) -> Mapping[str, Any]:
    """A job by id or exact name."""
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
    raise ConsoleError(f"no backup job {wanted!r}", hint=f"jobs: {known}")


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


def _pool_for(api: Api, point: Mapping[str, Any], wanted: str | None) -> str:
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


# --- commands ----------------------------------------------------------------------------------


def _print_json(data: Any) -> None:
    _out(json.dumps(data, indent=2, sort_keys=True))


def backup_list(api: Api, args: argparse.Namespace) -> int:
    """Jobs and storage, or one VM's restore points."""
    if args.vm:
        vm = find_vm(api.get("/api/v1/backup/vms")["vms"], args.vm)
        uuid = str(vm["vm_uuid"])
        points = api.get(f"/api/v1/backup/vms/{urllib.parse.quote(uuid)}/points")
        if args.json:
            _print_json(points)
            return 0
        verify = api.get("/api/v1/backup/verify")
        _out(f"VM {vm.get('name')} ({uuid}): {len(points['points'])} restore points")
        rows = [
            [
                str(p["id"]),
                _when(p.get("created")),
                _point_type(p),
                human_bytes(sum(int(d.get("bytes") or 0) for d in p.get("disks") or [])),
                str(len(p.get("disks") or [])),
                _verified(p, uuid, verify),
            ]
            for p in points["points"]
        ]
        _out(table(["POINT", "CREATED", "TYPE", "SIZE", "DISKS", "VERIFIED"], rows))
        return 0
    jobs = api.get("/api/v1/backup/jobs")
    storage = api.get("/api/v1/backup/storage")
    if args.json:
        _print_json({"jobs": jobs["jobs"], "storage": storage})
        return 0
    if jobs["jobs"]:
        rows = [
            [
                str(j["id"]),
                str(j.get("name")),
                str(j.get("schedule") or "manual"),
                _when(j.get("next_run")) if j.get("enabled", True) else "disabled",
                _last_result(j),
            ]
            for j in jobs["jobs"]
        ]
        _out(table(["ID", "NAME", "SCHEDULE", "NEXT RUN", "LAST RESULT"], rows))
    else:
        _out("no backup jobs yet (create one on the web interface's backup page)")
    _out("")
    _out(_storage_line(storage))
    return 0


def backup_run(api: Api, args: argparse.Namespace) -> int:
    """Start a job now and follow it."""
    job = find_job(api.get("/api/v1/backup/jobs")["jobs"], args.job)
    run_id = int(api.post(f"/api/v1/backup/jobs/{job['id']}/run")["run_id"])
    if args.no_wait:
        _out(str(run_id))
        return 0
    _out(f"run {run_id} of job {job.get('name')!r} started")
    return _follow_to_exit(api, run_id, backup_summary)


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
        "pool_id": _pool_for(api, point, args.pool),
        "vm_uuid": uuid,
        "point_id": point["id"],
        "sr_uuid": args.sr,
        "name": args.name or "",
        "disk": args.disk,
    }
    run_id = int(api.post("/api/v1/backup/restore", body)["run_id"])
    if args.no_wait:
        _out(str(run_id))
        return 0
    what = f"disk {args.disk} of " if args.disk is not None else ""
    _out(
        f"restore run {run_id} started: {what}{vm.get('name')} from point {point['id']}"
        f" to SR {args.sr}"
    )
    return _follow_to_exit(api, run_id, restore_summary)


_COMMANDS: Final[dict[str, Callable[[Api, argparse.Namespace], int]]] = {
    "list": backup_list,
    "run": backup_run,
    "restore": backup_restore,
}


def _token_name(args: argparse.Namespace) -> str:
    target = getattr(args, "job", None) or getattr(args, "vm", None)
    return f"console: backup {args.backup_command}" + (f" {target}" if target else "")


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    """``xenkeep backup ...``: check the daemon, borrow a token, run the subcommand."""
    try:
        api = Api.for_settings(settings)
        api.get("/api/v1/health")
        with console_token(settings, _token_name(args)) as token:
            api.token = token
            return _COMMANDS[args.backup_command](api, args)
    except ConsoleError as exc:
        hint = f"\nhint: {exc.hint}" if exc.hint else ""
        print(f"xenkeep: {exc.message}{hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def backup_command(args: argparse.Namespace) -> Callable[[Settings], int]:
    """The handler of ``xenkeep backup ...`` for parsed ``args``."""
    return lambda settings: cmd_backup(settings, args)


def add_backup_parser(sub: Any) -> None:
    """Register ``backup list|run|restore`` on the ``xenkeep`` subcommand parsers."""
    backup = sub.add_parser("backup", help="backup jobs, runs and restores")
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
    restore.add_argument("--no-wait", action="store_true", help="print the run id and return")
