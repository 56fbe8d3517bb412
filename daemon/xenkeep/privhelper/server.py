"""The helper's unix socket: who may talk to it, one request line at a time.

systemd listens on ``/run/xenkeep-privhelper.sock`` (``root:xenkeep``, mode
0660) and starts the helper on the first connection, passing the listening
socket as file descriptor 3. Only root and the ``xenkeep`` account may talk
to it (``SO_PEERCRED``), and the ``xenkeep`` account (the daemon's uid) only
to :data:`~xenkeep.system.helper_protocol.DAEMON_OPERATIONS`: the rest is
root's, refused before its arguments are even read. One operation runs at a
time, so two network changes never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import signal
import socket
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xenkeep.privhelper.applier import ACCOUNT, Applier
from xenkeep.privhelper.request import NotAllowedError, parse_request
from xenkeep.system.helper_protocol import (
    DAEMON_OPERATIONS,
    MAX_REQUEST,
    OPERATIONS,
    SOCKET_PATH,
    RequestError,
    encode_answer,
    error_answer,
    ok_answer,
)

log = logging.getLogger(__name__)

#: systemd passes socket-activated descriptors from 3 on.
SD_LISTEN_FDS_START = 3


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a unix socket."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


#: What a uid may call, for each uid that may connect at all.
Callers = Mapping[int, frozenset[str]]


def allowed_uids() -> Callers:
    """Root may call every operation; the xenkeep account (the daemon) its own few."""
    uids: dict[int, frozenset[str]] = {0: frozenset(OPERATIONS)}
    with contextlib.suppress(KeyError):
        uids[pwd.getpwnam(ACCOUNT).pw_uid] = DAEMON_OPERATIONS
    return uids


class Server:
    """Serves requests on a listening unix socket, one line at a time."""

    def __init__(self, applier: Applier, callers: Callers) -> None:
        self._applier = applier
        self._callers = callers
        # One operation at a time: two network changes must not interleave.
        self._lock = asyncio.Lock()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer each request line of one connection."""
        sock = writer.get_extra_info("socket")
        try:
            uid = peer_uid(sock)
            if uid not in self._callers:
                log.warning("refused a connection from uid %d", uid)
                await self._answer(writer, error_answer("permission denied"))
                return
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    await self._answer(writer, error_answer("request too large"))
                    return
                await self._answer(writer, await self._one(line, uid, self._callers[uid]))
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()

    async def _one(self, line: bytes, uid: int, allowed: frozenset[str]) -> dict[str, Any]:
        try:
            req = parse_request(line.strip(), allowed)
        except NotAllowedError as exc:
            # Worth a trace: the daemon never asks for these on its own.
            log.warning("uid %d refused: %s", uid, exc)
            return error_answer(str(exc), exc.field)
        except RequestError as exc:
            return error_answer(str(exc), exc.field, exc.kind)
        async with self._lock:
            try:
                result = await self._applier.apply(req, uid)
            except RequestError as exc:
                log.warning("%s refused: %s", req.op, exc)
                return error_answer(str(exc), exc.field, exc.kind)
            except (RuntimeError, OSError) as exc:
                log.error("%s failed: %s", req.op, exc)
                return error_answer(str(exc))
        if req.op not in ("ping", "network.show", "storage.disks"):
            log.info("%s done for uid %d", req.op, uid)
        return ok_answer(result)

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
        writer.write(encode_answer(obj))
        await writer.drain()


def listening_socket(path: Path | None) -> socket.socket:
    """systemd's socket when it started us, else a new one at ``path``."""
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


async def run_helper(sock: socket.socket, applier: Applier, callers: Callers) -> None:
    """The helper's life: resume a pending checkpoint, serve until SIGTERM or
    SIGINT, then undo a change still unconfirmed (its deadline dies with us)."""
    await applier.start()
    loop = asyncio.get_running_loop()
    serving = asyncio.ensure_future(serve(sock, Server(applier, callers)))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, serving.cancel)
    try:
        await serving
    except asyncio.CancelledError:
        log.info("stopping")
    finally:
        await applier.close(revert_pending=True)
