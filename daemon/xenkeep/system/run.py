"""The one door to other programs, for the system package and the privileged helper.

Every command runs from an argv list, never through a shell, with its output
captured and a deadline. A command that outlives its deadline is killed with
its whole process group (it runs in a session of its own, so children it
started, such as mkfs's helpers, go too), then reaped; so is one whose caller
is cancelled. Whatever goes wrong, the caller gets one error,
:class:`CommandError`, whose message names the program and says what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

#: What most commands get: listing disks or reloading a service takes seconds.
DEFAULT_TIMEOUT: Final = 60.0


class CommandError(RuntimeError):
    """A command that could not start, exited with a failure, or ran out of time."""

    def __init__(
        self,
        message: str,
        *,
        argv: Sequence[str],
        returncode: int | None = None,
        stderr: str = "",
        timed_out: bool = False,
    ) -> None:
        super().__init__(message)
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.timed_out = timed_out


@dataclass(frozen=True, slots=True)
class Completed:
    """A command that ran to its end: its exit status and what it wrote."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        """stdout decoded (UTF-8, undecodable bytes replaced)."""
        return self.stdout.decode(errors="replace")


async def run(
    argv: Sequence[str],
    *,
    timeout: float,  # noqa: ASYNC109 - the deadline includes killing and reaping
    stdin: bytes | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> Completed:
    """Run ``argv`` with ``stdin`` (or /dev/null) and return its exit status and output.

    Raise :class:`CommandError` when the program cannot be started, after
    ``timeout`` seconds (the process group is killed first) and, with
    ``check``, when it exits with a non-zero status (the message carries its
    stderr).
    """
    if not argv:
        raise ValueError("run() needs a program to run")
    name = argv[0]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            env=None if env is None else dict(env),
        )
    except OSError as exc:
        raise CommandError(
            f"{name} could not be started: {exc.strerror or exc}", argv=argv
        ) from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=timeout)
    except TimeoutError:
        _kill_group(proc.pid)
        await proc.wait()
        raise CommandError(
            f"{name} timed out after {timeout:g} s and was killed", argv=argv, timed_out=True
        ) from None
    except asyncio.CancelledError:
        # Nobody waits for the answer any more: leave nothing running.
        _kill_group(proc.pid)
        raise
    returncode = proc.returncode
    assert returncode is not None  # communicate() returns once the process has exited
    result = Completed(tuple(argv), returncode, out, err)
    if check and returncode != 0:
        message = err.decode(errors="replace").strip()
        raise CommandError(
            f"{name} failed: {message}" if message else f"{name} failed with status {returncode}",
            argv=argv,
            returncode=returncode,
            stderr=message,
        )
    return result


async def output(
    argv: Sequence[str],
    stdin: bytes | None = None,
    /,
    *,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - passed on to run()
) -> str:
    """The stdout of a command that must succeed (:func:`run` with ``check``)."""
    return (await run(argv, timeout=timeout, stdin=stdin)).text


class Run(Protocol):
    """How a caller that takes its runner as an argument runs a command:
    argv and optional stdin in, stdout out (:func:`output`, or a test's fake)."""

    def __call__(
        self, argv: list[str], stdin: bytes | None = None, /, *, timeout: float = DEFAULT_TIMEOUT
    ) -> Awaitable[str]: ...


def _kill_group(pgid: int) -> None:
    # The group outlives its leader while a child holds on; once it is gone
    # there is nothing left to kill.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
