"""The one door to other programs: output captured, one error, nothing left running."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from xenkeep.system.run import CommandError, output, run


async def test_output_and_status() -> None:
    done = await run(["sh", "-c", "echo out; echo err >&2; exit 0"], timeout=10)
    assert (done.returncode, done.text, done.stderr) == (0, "out\n", b"err\n")
    assert done.argv == ("sh", "-c", "echo out; echo err >&2; exit 0")
    assert await output(["cat"], b"given on stdin") == "given on stdin"
    # stdin is /dev/null unless given: a command reading it does not hang.
    assert await output(["cat"], timeout=10) == ""


async def test_failure_names_the_program_and_carries_stderr() -> None:
    with pytest.raises(CommandError, match=r"^sh failed: no such disk$") as info:
        await run(["sh", "-c", "echo 'no such disk' >&2; exit 3"], timeout=10)
    assert (info.value.returncode, info.value.stderr) == (3, "no such disk")
    assert not info.value.timed_out
    with pytest.raises(CommandError, match=r"^false failed with status 1$"):
        await run(["false"], timeout=10)
    assert (await run(["false"], timeout=10, check=False)).returncode == 1


async def test_a_missing_program_is_the_same_error() -> None:
    with pytest.raises(CommandError, match=r"no-such-tool-xk could not be started"):
        await run(["no-such-tool-xk", "--help"], timeout=10)
    assert issubclass(CommandError, RuntimeError)  # what the helper's server reports


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie nobody reaped yet counts)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        # Reaped between the open and the read: /proc answers ESRCH then.
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


async def wait_gone(pid: int) -> bool:
    for _ in range(100):
        if await asyncio.to_thread(gone, pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def read_pid(path: Path) -> int:
    for _ in range(100):
        text = await asyncio.to_thread(lambda: path.read_text() if path.exists() else "")
        if text.endswith("\n"):
            return int(text)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} was never written")


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # The shell starts a child that would outlive it, then waits for it.
    script = f"sleep 60 & echo $! > {pidfile}; wait"
    with pytest.raises(CommandError, match=r"^sh timed out after 0.5 s and was killed$") as info:
        await run(["sh", "-c", script], timeout=0.5)
    assert info.value.timed_out
    assert await wait_gone(await read_pid(pidfile))


async def test_a_cancelled_caller_leaves_nothing_running(tmp_path: Path) -> None:
    pidfile = tmp_path / "self.pid"
    task = asyncio.create_task(run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"], timeout=60))
    pid = await read_pid(pidfile)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_gone(pid)


async def test_an_empty_argv_is_a_bug() -> None:
    with pytest.raises(ValueError, match="needs a program"):
        await run([], timeout=1)
