"""State survives restarts; the command line serves one or several pools."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import XenAPI

from tests.xapisim.conftest import close_session, first_disk, vm_by_name
from xapisim.testing import SimulatorThread

LINE = re.compile(r"^xapisim: pool (.+) listening on (http://\S+/) state=(\S+)$")


def _login(url: str) -> Any:
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "demo", "2.21", "t")
    return s


def test_state_persists_across_restart(tmp_path: Path) -> None:
    state = tmp_path / "pool"
    with SimulatorThread(state, demo=True) as sim:
        s = _login(sim.url)
        x = s.xenapi
        vm = vm_by_name(x, "mail-01")
        x.VM.set_name_description(vm, "persisted")
        snap = x.VM.snapshot(vm, "kept")
        disk = first_disk(x, vm)
        sim.call("sim.write_vdi", s.handle, disk, 4096, "cGVyc2lzdA==")
        old_session = s.handle
        token = getattr(x.event, "from")(["vm"], "", "0.0")["token"]
        close_session(s)
    assert (state / "db.json").exists() and not (state / "db.json.tmp").exists()
    # demo=True again must not reseed an existing state directory.
    with SimulatorThread(state, demo=True) as sim:
        s = _login(sim.url)
        x = s.xenapi
        assert x.VM.get_name_description(vm) == "persisted"
        assert x.VM.get_snapshot_of(snap) == vm
        assert len(x.VM.get_by_name_label("mail-01")) == 1
        assert sim.call("sim.read_vdi", s.handle, disk, 4096, 7) == "cGVyc2lzdA=="
        # A watcher resuming with a token from before the restart sees everything again.
        resumed = getattr(x.event, "from")(["vm"], token, "0.0")
        assert vm in {e["ref"] for e in resumed["events"]}
        assert resumed["token"] > token
        # Sessions do not survive a restart, as on a real pool.
        import xmlrpc.client

        proxy = xmlrpc.client.ServerProxy(sim.url)
        assert proxy.VM.get_all(old_session)["ErrorDescription"][0] == "SESSION_INVALID"
        proxy("close")()
        close_session(s)


def test_password_option(tmp_path: Path) -> None:
    with SimulatorThread(tmp_path / "p", password="s3cret") as sim:
        s = XenAPI.Session(sim.url)
        try:
            s.xenapi.login_with_password("root", "demo", "2.21", "t")
        except XenAPI.Failure as e:
            assert e.details[0] == "SESSION_AUTHENTICATION_FAILED"
        else:
            raise AssertionError("the demo password must not work")
        s.xenapi.login_with_password("root", "s3cret", "2.21", "t")
        assert len(s.xenapi.host.get_all()) == 1  # a minimal pool without --demo
        close_session(s)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_serves_two_pools(tmp_path: Path) -> None:
    a, b = _free_port(), _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xapisim",
            "--state",
            str(tmp_path / "a"),
            "--listen",
            f"127.0.0.1:{a}",
            "--pool",
            f"{tmp_path / 'b'}=127.0.0.1:{b}",
            "--demo",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        found = []
        for _ in range(2):
            line = proc.stdout.readline().strip()
            m = LINE.match(line)
            assert m, line
            found.append((m.group(1), m.group(2)))
        assert [u for _, u in found] == [f"http://127.0.0.1:{a}/", f"http://127.0.0.1:{b}/"]
        assert found[0][0] == "Demo pool"
        sa, sb = _login(found[0][1]), _login(found[1][1])
        assert sa.xenapi.pool.get_all() != sb.xenapi.pool.get_all()
        close_session(sa)
        close_session(sb)
    finally:
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == 0
    assert (tmp_path / "b" / "db.json").exists()


def test_cli_rejects_bad_arguments(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "xapisim", "--listen", "nowhere"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2 and "HOST:PORT" in out.stderr
