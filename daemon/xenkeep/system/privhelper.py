"""The privileged helper: the few root operations the unprivileged daemon needs.

``xenkeepd`` runs as the ``xenkeep`` user with no capability but binding low
ports. What needs root goes through this small service instead, which systemd
starts on demand (``xenkeep-privhelper.socket``, a unix socket owned by
``root:xenkeep``, mode 0660). It accepts a closed list of operations, each
with validated arguments, and nothing else: no paths, no commands, no user
names come from the caller.

Protocol: one JSON object per line, one answer per line.

    request   {"op": "network.static", "args": {"address": "192.0.2.10/24",
               "gateway": "192.0.2.1", "dns": ["192.0.2.53"]}}
    answer    {"ok": true, "result": {...}}
              {"ok": false, "error": "message", "field": "gateway"}

Operations:

    ping               {}                                   -> {"version": ...}
    network.dhcp       {}                                   -> {}
    network.static     {address: "ip/prefix", gateway?: ip, dns?: [ip, ...]}
    ntp.set            {servers: [host, ...]}  (empty list: the defaults)
    account.password   {password: str}   sets the console/SSH account's password
    account.lock       {}                locks it again

The first boot (:mod:`xenkeep.system.firstboot`) applies vm-data seeds with
the same :class:`Applier`, so the web UI and deploy scripts share one path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import pwd
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xenkeep import __version__
from xenkeep.system.netconf import (
    NETWORK_FILE,
    TIMESYNCD_FILE,
    NetconfError,
    StaticNetwork,
    parse_ntp_servers,
    parse_static_network,
    render_network,
    render_timesyncd,
)
from xenkeep.system.vmdata import validate_password

log = logging.getLogger(__name__)

SOCKET_PATH = Path("/run/xenkeep-privhelper.sock")
#: The console/SSH account; also the daemon's user (sysusers.d/xenkeep.conf).
ACCOUNT = "xenkeep"
MAX_REQUEST = 16 * 1024
OPERATIONS = (
    "ping",
    "network.dhcp",
    "network.static",
    "ntp.set",
    "account.password",
    "account.lock",
)
#: systemd passes socket-activated descriptors from 3 on.
SD_LISTEN_FDS_START = 3


class RequestError(ValueError):
    """A request the helper refuses; ``field`` names the bad argument."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Request:
    """A validated operation and its typed arguments."""

    op: str
    network: StaticNetwork | None = None
    ntp: tuple[str, ...] = ()
    password: str = ""


def _args(raw: Mapping[str, Any], allowed: set[str]) -> Mapping[str, Any]:
    extra = sorted(set(raw) - allowed)
    if extra:
        raise RequestError(f"unexpected argument {extra[0]!r}", field=extra[0])
    return raw


def _string(args: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = args.get(name)
    if value is None:
        if required:
            raise RequestError(f"{name} is required", field=name)
        return None
    if not isinstance(value, str):
        raise RequestError(f"{name} must be a string", field=name)
    return value


def _string_list(args: Mapping[str, Any], name: str) -> list[str]:
    value = args.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestError(f"{name} must be a list of strings", field=name)
    return value


def parse_request(line: bytes) -> Request:
    """Decode and validate one request line; raise RequestError."""
    if len(line) > MAX_REQUEST:
        raise RequestError("request too large")
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RequestError("request is not JSON") from None
    if not isinstance(obj, dict) or set(obj) - {"op", "args"}:
        raise RequestError('request must be {"op": ..., "args": {...}}')
    op = obj.get("op")
    if op not in OPERATIONS:
        raise RequestError(f"unknown operation {op!r}", field="op")
    raw_args = obj.get("args", {})
    if not isinstance(raw_args, dict):
        raise RequestError("args must be an object", field="args")
    try:
        if op in ("ping", "network.dhcp", "account.lock"):
            _args(raw_args, set())
            return Request(op)
        if op == "network.static":
            args = _args(raw_args, {"address", "gateway", "dns"})
            address = _string(args, "address")
            assert address is not None
            ip, sep, prefix = address.partition("/")
            if not sep:
                raise RequestError("address needs a prefix length, e.g. 192.0.2.10/24", "address")
            network = parse_static_network(
                ip, prefix, _string(args, "gateway", required=False), _string_list(args, "dns")
            )
            return Request(op, network=network)
        if op == "ntp.set":
            args = _args(raw_args, {"servers"})
            return Request(op, ntp=parse_ntp_servers(_string_list(args, "servers")))
        args = _args(raw_args, {"password"})
        password = _string(args, "password")
        assert password is not None
        try:
            return Request(op, password=validate_password(password))
        except ValueError as exc:
            raise RequestError(str(exc), field="password") from None
    except NetconfError as exc:
        field = {"ip": "address", "netmask": "address"}.get(exc.field, exc.field)
        raise RequestError(str(exc), field=field) from None


Run = Callable[[list[str], bytes | None], Awaitable[None]]


async def run_command(argv: list[str], stdin: bytes | None = None) -> None:
    """Run ``argv`` (never a shell); raise RuntimeError with its stderr on failure."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(stdin), timeout=60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{argv[0]} timed out") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {err.decode(errors='replace').strip()}")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(path)


class Applier:
    """Carries out validated requests on the system under ``root``.

    ``root`` is ``/`` on the appliance and a temporary directory in tests;
    ``live`` says whether running services should be told (networkctl,
    systemctl), which the first boot skips because they have not started.
    """

    def __init__(self, root: Path = Path("/"), run: Run = run_command, *, live: bool = True):
        self._root = root
        self._run = run
        self._live = live

    def _path(self, absolute: Any) -> Path:
        return self._root / str(absolute).lstrip("/")

    async def apply(self, req: Request) -> dict[str, Any]:
        """Do what ``req`` asks; return the result object."""
        if req.op == "ping":
            return {"version": __version__}
        if req.op == "network.dhcp":
            self._path(NETWORK_FILE).unlink(missing_ok=True)
            await self._reload_network()
        elif req.op == "network.static":
            assert req.network is not None
            _write_atomic(self._path(NETWORK_FILE), render_network(req.network))
            await self._reload_network()
        elif req.op == "ntp.set":
            await self.set_ntp(req.ntp)
        elif req.op == "account.password":
            # chpasswd hashes with the system's default (yescrypt on bookworm).
            await self._run(["chpasswd"], f"{ACCOUNT}:{req.password}\n".encode())
        elif req.op == "account.lock":
            await self._run(["usermod", "--lock", ACCOUNT], None)
        return {}

    async def set_ntp(self, servers: tuple[str, ...]) -> None:
        """Write (or remove, for none) the timesyncd drop-in."""
        path = self._path(TIMESYNCD_FILE)
        if servers:
            _write_atomic(path, render_timesyncd(servers))
        else:
            path.unlink(missing_ok=True)
        if self._live:
            await self._run(["systemctl", "try-restart", "systemd-timesyncd.service"], None)

    async def _reload_network(self) -> None:
        if self._live:
            await self._run(["networkctl", "reload"], None)
            await self._run(["networkctl", "reconfigure", *self._interfaces()], None)

    def _interfaces(self) -> list[str]:
        return sorted(
            p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith(("en", "eth"))
        )


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a unix socket."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def allowed_uids() -> set[int]:
    """Root and the xenkeep account may talk to the helper."""
    uids = {0}
    with contextlib.suppress(KeyError):
        uids.add(pwd.getpwnam(ACCOUNT).pw_uid)
    return uids


class Server:
    """Serves requests on a listening unix socket, one line at a time."""

    def __init__(self, applier: Applier, allowed: set[int]) -> None:
        self._applier = applier
        self._allowed = allowed
        # One operation at a time: two network changes must not interleave.
        self._lock = asyncio.Lock()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer each request line of one connection."""
        sock = writer.get_extra_info("socket")
        try:
            uid = peer_uid(sock)
            if uid not in self._allowed:
                log.warning("refused a connection from uid %d", uid)
                await self._answer(writer, {"ok": False, "error": "permission denied"})
                return
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    await self._answer(writer, {"ok": False, "error": "request too large"})
                    return
                await self._answer(writer, await self._one(line, uid))
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()

    async def _one(self, line: bytes, uid: int) -> dict[str, Any]:
        try:
            req = parse_request(line.strip())
        except RequestError as exc:
            return {"ok": False, "error": str(exc), "field": exc.field}
        async with self._lock:
            try:
                result = await self._applier.apply(req)
            except (RuntimeError, OSError) as exc:
                log.error("%s failed: %s", req.op, exc)
                return {"ok": False, "error": str(exc), "field": ""}
        if req.op != "ping":
            log.info("%s done for uid %d", req.op, uid)
        return {"ok": True, "result": result}

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, obj: Mapping[str, Any]) -> None:
        writer.write(json.dumps(obj).encode() + b"\n")
        await writer.drain()


async def call(op: str, args: Mapping[str, Any] | None = None, *, path: Path = SOCKET_PATH) -> Any:
    """Client side: send one request and return its result or raise RequestError."""
    reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_REQUEST * 4)
    try:
        writer.write(json.dumps({"op": op, "args": dict(args or {})}).encode() + b"\n")
        await writer.drain()
        answer = json.loads(await reader.readline())
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    if not answer.get("ok"):
        raise RequestError(answer.get("error", "failed"), field=answer.get("field", ""))
    return answer.get("result")


def _listening_socket(path: Path | None) -> socket.socket:
    if path is None and os.environ.get("LISTEN_PID") == str(os.getpid()):
        if int(os.environ.get("LISTEN_FDS", "0")) != 1:
            raise SystemExit("privhelper: expected exactly one socket from systemd")
        return socket.socket(fileno=SD_LISTEN_FDS_START)
    target = path or SOCKET_PATH
    target.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(target))
    target.chmod(0o660)
    sock.listen(16)
    return sock


async def serve(sock: socket.socket, server: Server) -> None:
    """Serve until cancelled."""
    srv = await asyncio.start_unix_server(server.handle, sock=sock, limit=MAX_REQUEST)
    async with srv:
        await srv.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """Entry point of xenkeep-privhelper.service."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, help="listen here instead of systemd's socket")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sock = _listening_socket(ns.socket)
    asyncio.run(serve(sock, Server(Applier(), allowed_uids())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
