"""The QEMU backend's power operations through the XenAPI SDK, on a VM
whose disk boots nothing (SeaBIOS finds no boot sector and waits): what is
checked is QEMU's life, not a guest's. Booting a real guest is
tests/e2e/test_selfservice_ssh.py's job."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from tests.xapisim.conftest import close_session
from xapisim.qemu import SSH_PORT_KEY
from xapisim.testing import SimulatorThread
from xapisim.testing import qemu_processes as qemu_pids

MiB = 1 << 20


@pytest.fixture
def qsim(demo_state: Path) -> Iterator[SimulatorThread]:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is missing: run scripts/deps.sh test")
    with SimulatorThread(demo_state, qemu=True) as running:
        yield running


@pytest.fixture
def qapi(qsim: SimulatorThread) -> Iterator[Any]:
    s = XenAPI.Session(qsim.url)
    s.xenapi.login_with_password("root", "demo", "2.21", "xapisim-tests")
    yield s.xenapi
    close_session(s)


def small_vm(xapi: Any) -> str:
    """A halted VM of 1 vCPU, 128 MiB, one empty 64 MiB disk and a read-only one."""
    vm = xapi.VM.clone(xapi.VM.get_by_name_label("Debian Bookworm 12")[0], "qemu-test")
    xapi.VM.set_is_a_template(vm, False)
    xapi.VM.set_VCPUs_at_startup(vm, "1")
    xapi.VM.set_memory_limits(vm, *[str(128 * MiB)] * 4)
    sr = xapi.pool.get_default_SR(xapi.pool.get_all()[0])
    for n, mode in enumerate(("RW", "RO")):
        vdi = xapi.VDI.create(
            {
                "name_label": f"qemu-test {n}",
                "SR": sr,
                "virtual_size": str(64 * MiB),
                "type": "user",
                "sharable": False,
                "read_only": mode == "RO",
                "other_config": {},
            }
        )
        xapi.VBD.create(
            {
                "VM": vm,
                "VDI": vdi,
                "userdevice": str(n),
                "bootable": n == 0,
                "mode": mode,
                "type": "Disk",
                "empty": False,
                "other_config": {},
                "qos_algorithm_type": "",
                "qos_algorithm_params": {},
            }
        )
    return str(vm)


def test_start_runs_qemu_and_hard_shutdown_kills_it(qsim: SimulatorThread, qapi: Any) -> None:
    before = qemu_pids()
    vm = small_vm(qapi)
    qapi.VM.start(vm, False, False)
    assert qapi.VM.get_power_state(vm) == "Running"
    guest = qsim.sim.pool.qemu.guest(vm)  # type: ignore[union-attr]
    assert guest is not None and guest.process.pid in qemu_pids() - before
    cmdline = Path(f"/proc/{guest.process.pid}/cmdline").read_bytes().split(b"\0")
    assert b"tcg" in cmdline and b"128" in cmdline
    drives = [a.decode() for a in cmdline if a.startswith(b"file=")]
    assert len(drives) == 2 and "readonly=on" in drives[1] and "index=0" in drives[0]
    port = int(qapi.VM.get_other_config(vm)[SSH_PORT_KEY])
    assert any(f"127.0.0.1:{port}-:22".encode() in a for a in cmdline)
    # No sshd greets from this guest: it never reports (as without an agent).
    assert qapi.VM.get_guest_metrics(vm) == "OpaqueRef:NULL"

    qapi.VM.hard_shutdown(vm)
    assert qapi.VM.get_power_state(vm) == "Halted"
    assert SSH_PORT_KEY not in qapi.VM.get_other_config(vm)
    assert qemu_pids() <= before


def test_qemu_exiting_halts_the_vm(qsim: SimulatorThread, qapi: Any) -> None:
    before = qemu_pids()
    vm = small_vm(qapi)
    qapi.VM.start(vm, False, False)
    guest = qsim.sim.pool.qemu.guest(vm)  # type: ignore[union-attr]
    assert guest is not None
    os.kill(guest.process.pid, signal.SIGTERM)
    # The simulator notices QEMU's exit on its own loop: poll its report
    # (no time limit: the loop of this test ends when the state changes).
    while qapi.VM.get_power_state(vm) != "Halted":
        time.sleep(0.05)
    assert SSH_PORT_KEY not in qapi.VM.get_other_config(vm)
    assert qemu_pids() <= before


def test_closing_the_simulator_kills_its_qemus(demo_state: Path) -> None:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is missing: run scripts/deps.sh test")
    before = qemu_pids()
    with SimulatorThread(demo_state, qemu=True) as running:
        s = XenAPI.Session(running.url)
        s.xenapi.login_with_password("root", "demo", "2.21", "xapisim-tests")
        vm = small_vm(s.xenapi)
        s.xenapi.VM.start(vm, False, False)
        reboot = s.xenapi.VM.get_other_config(vm)[SSH_PORT_KEY]
        s.xenapi.VM.hard_reboot(vm)  # a reset in the same QEMU: same port
        assert s.xenapi.VM.get_other_config(vm)[SSH_PORT_KEY] == reboot
        s.xenapi.VM.pause(vm)  # QEMU's CPUs stopped (QMP stop)
        assert s.xenapi.VM.get_power_state(vm) == "Paused"
        s.xenapi.VM.unpause(vm)
        assert s.xenapi.VM.get_power_state(vm) == "Running"
        with pytest.raises(XenAPI.Failure) as refused:
            s.xenapi.VM.suspend(vm)
        assert refused.value.details[0] == "OPERATION_NOT_ALLOWED"
        assert qemu_pids() - before
        close_session(s)
    assert qemu_pids() <= before
