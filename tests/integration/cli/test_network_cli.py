"""``xenkeep network`` and ``xenkeep ntp`` as an administrator meets them on the console.

The console tool runs as its own process (its prompt reads a real stdin),
against a real privileged helper on its socket whose files live under a
temporary root and whose commands are recorded (networkd applies the same
files in tests/integration/system/test_network_netns.py). Exit codes,
output, the prompt's four endings (yes, no, end of input, no answer in
time) and Ctrl-C; refusals before anything changes; and the console account
getting the same operations through the helper's rights.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.privhelper import CommandRecorder, serving
from xenkeep.privhelper.applier import Applier
from xenkeep.privhelper.server import Server
from xenkeep.system.helper_protocol import DAEMON_OPERATIONS, MIN_CONFIRM_SECONDS, OPERATIONS

NETWORK = "etc/systemd/network/10-xenkeep.network"
TIMESYNCD = "etc/systemd/timesyncd.conf.d/50-xenkeep.conf"
STATIC = ["static", "192.0.2.10/24", "--gateway", "192.0.2.1", "--dns", "192.0.2.53"]


async def eth0() -> dict[str, object]:
    """The live state, as the appliance would show it after the change."""
    return {
        "interfaces": [{"name": "enX0", "up": True, "addresses": ["192.0.2.10/24"]}],
        "gateways": ["192.0.2.1"],
        "dns": ["192.0.2.53"],
    }


@dataclass
class Console:
    """``xenkeep --config CONFIG ...`` as a process, and the helper's root."""

    config: Path
    root: Path

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "xenkeep.cli",
            "--config",
            str(self.config),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def __call__(self, *args: str, answer: bytes | None = b"") -> tuple[int, str, str]:
        """Run to the end; ``answer`` is all stdin gets (None: stdin stays open, silent)."""
        proc = await self.start(*args)
        assert proc.stdin is not None
        if answer is not None:
            proc.stdin.write(answer)
            proc.stdin.close()
        out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def file(self, rel: str) -> str | None:
        path = self.root / rel
        return await asyncio.to_thread(lambda: path.read_text() if path.exists() else None)


@contextlib.asynccontextmanager
async def helper_for(base: Path, rights: frozenset[str]) -> AsyncIterator[Console]:
    """A helper that gives this test's uid ``rights``, and the console pointed at it."""
    config = base / "xenkeep.toml"
    sock = base / "helper.sock"
    await asyncio.to_thread(
        config.write_text,
        f'state_dir = "{base / "state"}"\nrun_dir = "{base / "run"}"\n'
        f'privhelper_socket = "{sock}"\n',
    )
    applier = Applier(base / "root", CommandRecorder(), live=True, read_live=eth0)
    async with serving(Server(applier, {os.getuid(): rights}), sock):
        yield Console(config, base / "root")
    await applier.close(revert_pending=False)


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    """As root on the appliance: every operation."""
    async with helper_for(tmp_path, frozenset(OPERATIONS)) as made:
        yield made


@pytest.fixture
async def console_account(tmp_path: Path) -> AsyncIterator[Console]:
    """As the console account (the daemon's uid): the helper gives only its rights."""
    async with helper_for(tmp_path, DAEMON_OPERATIONS) as made:
        yield made


async def test_show(console: Console) -> None:
    code, out, err = await console("network", "show")
    assert (code, err) == (0, "")
    assert "configured:   DHCP" in out
    assert "NTP servers:  the image defaults" in out
    assert "enX0:         192.0.2.10/24" in out
    code, out, _ = await console("network", "show", "--json")
    assert code == 0 and '"mode": "dhcp"' in out


async def test_static_kept_at_the_prompt(console: Console) -> None:
    code, out, err = await console("network", *STATIC, answer=b"y\n")
    assert (code, err) == (0, ""), out
    assert "applied: network: DHCP -> 192.0.2.10/24 via 192.0.2.1, DNS 192.0.2.53" in out
    assert re.search(r"Keep these settings\? \[y/N\] \(they revert in [12]:\d\d\) kept", out)
    assert out.rstrip().endswith("kept")
    assert "Address=192.0.2.10/24" in (await console.file(NETWORK) or "")
    code, out, _ = await console("network", "show")
    assert "configured:   static 192.0.2.10/24 via 192.0.2.1, DNS 192.0.2.53" in out
    assert "last change:  network: DHCP -> 192.0.2.10/24" in out and ": kept " in out


@pytest.mark.parametrize(("answer", "words"), [(b"n\n", "reverted"), (b"", "reverted")])
async def test_no_or_no_input_reverts(console: Console, answer: bytes, words: str) -> None:
    code, out, _ = await console("network", *STATIC, answer=answer)
    assert code == 1
    assert f"{words}: the previous settings are back" in out
    assert await console.file(NETWORK) is None


async def test_no_answer_in_time_is_the_helpers_revert(console: Console) -> None:
    args = ["network", *STATIC, "--timeout", str(MIN_CONFIRM_SECONDS)]
    code, out, _ = await console(*args, answer=None)
    assert code == 1
    assert "no answer in time: the previous settings came back by themselves" in out
    # The console only waited: the helper's deadline did the revert.
    code, shown, _ = await console("network", "show")
    assert "last change:  network: DHCP -> 192.0.2.10/24" in shown and "expired" in shown
    assert await console.file(NETWORK) is None


async def test_ctrl_c_at_the_prompt_reverts(console: Console) -> None:
    proc = await console.start("network", *STATIC)
    assert proc.stdout is not None
    seen = b""
    while b"Keep these settings?" not in seen:
        seen += await proc.stdout.read(64)
    proc.send_signal(signal.SIGINT)
    out, _ = await proc.communicate()
    assert proc.returncode == 130
    assert b"interrupted: the previous settings are back" in out
    assert await console.file(NETWORK) is None


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["network", "static", "192.0.2.10/24", "--gateway", "10.0.0.1", "--dns", "192.0.2.53"],
            "10.0.0.1 is outside 192.0.2.0/24",
        ),
        (["network", "static", "192.0.2.10", "--dns", "192.0.2.53"], "prefix length"),
        (["network", "static", "192.0.2.10/24", "--dns", "192.0.2.53\n[Route]"], "control"),
        (
            [
                "network",
                "static",
                "192.0.2.10/24",
                "--dns",
                "1.1.1.1",
                "2.2.2.2",
                "3.3.3.3",
                "4.4.4.4",
            ],
            "at most 3 DNS servers",
        ),
        (["network", "dhcp", "--timeout", "100000"], "between 5 and 600"),
        (["network", "dhcp"], "nothing to change: network: DHCP -> DHCP"),
        (["ntp"], "name the NTP servers, or --default"),
        (["ntp", "ntp.example.org", "--default"], "name the NTP servers, or --default"),
        (["ntp", "bad_name.example"], "neither a host name nor an IP address"),
        (["network", "keep"], "no change waits for confirmation"),
    ],
)
async def test_refusals(console: Console, args: list[str], words: str) -> None:
    code, out, err = await console(*args)
    assert code == 1, out
    assert err.startswith("xenkeep: ") and words in err, err
    assert await console.file(NETWORK) is None and await console.file(TIMESYNCD) is None


async def test_the_console_account_decides_later(console_account: Console) -> None:
    """The console account's rights (the daemon's uid on the appliance), and --no-wait."""
    code, out, err = await console_account("ntp", "ntp.example.org", "192.0.2.123", "--no-wait")
    assert (code, err) == (0, ""), err
    assert "applied: NTP: the default servers -> ntp.example.org 192.0.2.123" in out
    assert "xenkeep network keep" in out
    code, out, _ = await console_account("network", "show")
    assert "waiting:      NTP: the default servers -> ntp.example.org 192.0.2.123" in out
    code, out, _ = await console_account("network", "keep")
    assert code == 0 and out.startswith("kept: NTP")
    assert "NTP=ntp.example.org 192.0.2.123" in (await console_account.file(TIMESYNCD) or "")
    code, out, _ = await console_account("ntp", "--default", "--no-wait")
    assert code == 0
    code, out, _ = await console_account("network", "revert")
    assert code == 0 and out.startswith("reverted: NTP")
    assert "NTP=ntp.example.org 192.0.2.123" in (await console_account.file(TIMESYNCD) or "")


async def test_without_the_helper(tmp_path: Path) -> None:
    config = tmp_path / "xenkeep.toml"
    await asyncio.to_thread(
        config.write_text,
        f'state_dir = "{tmp_path}"\nprivhelper_socket = "{tmp_path / "none.sock"}"\n',
    )
    code, _, err = await Console(config, tmp_path)("network", "show")
    assert code == 1
    assert "needs the appliance's privileged helper, which is not running" in err
