"""The optional QEMU backend: ``VM.start`` boots the VM's disks for real.

Off by default (every other test wants power operations that cost nothing);
on with ``python -m xapisim --qemu`` or ``XAPISIM_QEMU=1``. Then starting a VM
launches ``qemu-system-x86_64 -accel tcg`` (``/dev/kvm`` hangs guests on the
build machines) with:

- the VM's disk VBDs in userdevice order as virtio disks, straight on the
  VDIs' raw files (read-only VBDs read-only), so a NoCloud config drive
  attached as a VBD is seen by cloud-init as it would be on XenServer;
- ``VCPUs_at_startup`` CPUs and ``memory_static_max`` of memory;
- user networking with the guest's port 22 forwarded from a free port on
  127.0.0.1, in the VM's ``other_config`` ``xapisim-ssh-port`` from the
  start; the guest "reports" (guest metrics, ``networks`` ``0/ip`` =
  127.0.0.1) only once its sshd greets on that port, as a guest agent
  reports only once the guest is up;
- the serial console in ``<state>/qemu/<vm uuid>.console.log`` (QEMU's
  own messages in ``<vm uuid>.qemu.log``) and a QMP socket in a private
  temporary directory.

Power follows QEMU's life: the guest powering off (QEMU exits) makes the VM
Halted. ``hard_shutdown`` kills QEMU; ``clean_shutdown`` presses the ACPI
power button (QMP ``system_powerdown``) and waits for QEMU to exit; both
reboots reset the machine (QMP ``system_reset``); pause and unpause stop
and continue its CPUs; suspend is refused. Closing the pool kills
every QEMU it started, and each QEMU dies with the simulator process
(``PR_SET_PDEATHSIG``) so none is ever left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("xapisim.qemu")

#: Set to "1": pools run their VMs under QEMU unless told otherwise.
QEMU_ENV = "XAPISIM_QEMU"
#: VM other_config key holding the 127.0.0.1 port forwarded to the guest's SSH.
SSH_PORT_KEY = "xapisim-ssh-port"
#: What the guest metrics report as the VM's address (the forward's side).
FORWARD_HOST = "127.0.0.1"
QEMU_BINARY = "qemu-system-x86_64"
#: How long clean_shutdown waits for the guest to power off before it gives
#: up (XAPI's own clean shutdown times out too; the VM stays Running).
CLEAN_SHUTDOWN_WAIT = 300.0
#: How long one probe of the forwarded port waits for sshd's greeting.
SSHD_GREETING_WAIT = 10.0
_PR_SET_PDEATHSIG = 1


def enabled_by_env() -> bool:
    """True when the environment turns the backend on."""
    return os.environ.get(QEMU_ENV) == "1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((FORWARD_HOST, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: QEMU gets SIGKILL when the
    # simulator dies, even by SIGKILL, so no guest outlives it.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass(frozen=True)
class Disk:
    """One disk QEMU is given."""

    path: Path
    read_only: bool


@dataclass(frozen=True)
class MachineSpec:
    """Everything QEMU is started with, read from the VM's records."""

    uuid: str
    vcpus: int
    memory_mib: int
    disks: tuple[Disk, ...]
    mac: str = ""


def qemu_argv(spec: MachineSpec, ssh_port: int, console: Path, qmp: Path) -> list[str]:
    """The command line of one guest."""
    argv = [
        QEMU_BINARY,
        "-accel",
        "tcg",
        "-machine",
        "pc",
        "-smp",
        str(spec.vcpus),
        "-m",
        str(spec.memory_mib),
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        f"file:{console}",
        "-qmp",
        f"unix:{qmp},server=on,wait=off",
    ]
    for n, disk in enumerate(spec.disks):
        opts = f"file={disk.path},format=raw,if=virtio,index={n},cache=writeback"
        if disk.read_only:
            opts += ",readonly=on"
        argv += ["-drive", opts]
    nic = f"user,model=virtio-net-pci,hostfwd=tcp:{FORWARD_HOST}:{ssh_port}-:22"
    if spec.mac:
        nic += f",mac={spec.mac}"
    argv += ["-nic", nic]
    return argv


@dataclass
class Guest:
    """One running QEMU."""

    vm_ref: str
    process: asyncio.subprocess.Process
    qmp: Path
    ssh_port: int
    console: Path
    #: time.monotonic() when QEMU was launched (the bench's split).
    started: float = field(default_factory=time.monotonic)
    watcher: asyncio.Task[None] | None = None
    reporter: asyncio.Task[None] | None = None
    stopping: bool = False
    exited: asyncio.Event = field(default_factory=asyncio.Event)


class QemuBackend:
    """The QEMUs of one pool, by VM ref."""

    def __init__(
        self,
        run_dir: Path,
        on_exit: Callable[[str], None],
        on_report: Callable[[str], None],
    ) -> None:
        self.run_dir = run_dir
        self._on_exit = on_exit
        self._on_report = on_report
        self._guests: dict[str, Guest] = {}
        # QMP sockets live apart: a state directory's path can pass the
        # 108 bytes a Unix socket's path may have.
        self._sockets = Path(tempfile.mkdtemp(prefix="xapisim-qmp-"))

    def guest(self, vm_ref: str) -> Guest | None:
        """The QEMU of a VM, if it runs one."""
        return self._guests.get(vm_ref)

    async def start(self, vm_ref: str, spec: MachineSpec) -> Guest:
        """Launch QEMU for a VM; returns once the process exists."""
        if not spec.disks:
            raise ValueError("the VM has no disk to boot")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        console = self.run_dir / f"{spec.uuid}.console.log"
        qmp = self._sockets / f"{spec.uuid}.qmp"
        qmp.unlink(missing_ok=True)
        port = _free_port()
        argv = qemu_argv(spec, port, console, qmp)
        log.info("starting %s", " ".join(argv))
        errors = await asyncio.to_thread((self.run_dir / f"{spec.uuid}.qemu.log").open, "wb")
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=errors,
                preexec_fn=_die_with_parent,
            )
        finally:
            errors.close()  # QEMU has its own copy of the descriptor
        guest = Guest(vm_ref, process, qmp, port, console)
        self._guests[vm_ref] = guest
        guest.watcher = asyncio.create_task(self._watch(guest))
        guest.reporter = asyncio.create_task(self._until_sshd(guest))
        return guest

    async def _until_sshd(self, guest: Guest) -> None:
        # The stand-in for a guest agent: the guest reports once its sshd
        # greets on the forwarded port (QEMU's user network accepts the
        # connection at once and closes it while nothing listens inside).
        while not guest.exited.is_set():
            try:
                reader, writer = await asyncio.open_connection(FORWARD_HOST, guest.ssh_port)
                try:
                    greeting = await asyncio.wait_for(reader.readline(), SSHD_GREETING_WAIT)
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
                if greeting.startswith(b"SSH-"):
                    if not guest.exited.is_set():
                        self._on_report(guest.vm_ref)
                    return
            except (OSError, TimeoutError):
                pass
            await asyncio.sleep(1)

    async def _watch(self, guest: Guest) -> None:
        code = await guest.process.wait()
        log.info("QEMU of %s exited with %s", guest.vm_ref, code)
        if self._guests.get(guest.vm_ref) is guest:
            del self._guests[guest.vm_ref]
        guest.exited.set()
        if guest.reporter is not None:
            guest.reporter.cancel()
        if not guest.stopping:
            # The guest powered itself off (or QEMU failed): Halted, as
            # XAPI reports a domain that went away.
            self._on_exit(guest.vm_ref)

    async def qmp(self, guest: Guest, command: str) -> dict[str, Any]:
        """One QMP command on a guest's socket."""
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(str(guest.qmp))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                # QEMU makes the socket just after it starts.
                if guest.exited.is_set():
                    raise
                await asyncio.sleep(0.05)
        try:
            await reader.readline()  # the greeting
            for cmd in ("qmp_capabilities", command):
                writer.write(json.dumps({"execute": cmd}).encode() + b"\n")
                await writer.drain()
                while True:
                    reply: dict[str, Any] = json.loads(await reader.readline())
                    if "return" in reply or "error" in reply:
                        break  # events ("event": ...) come between replies
            return reply
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def kill(self, vm_ref: str) -> None:
        """Stop a VM's QEMU at once (hard_shutdown) and wait for it to go."""
        guest = self._guests.get(vm_ref)
        if guest is None:
            return
        guest.stopping = True
        with contextlib.suppress(ProcessLookupError):
            guest.process.kill()
        await guest.exited.wait()

    async def power_off(self, vm_ref: str, wait: float = CLEAN_SHUTDOWN_WAIT) -> bool:
        """Ask the guest to power off; True once QEMU has exited."""
        guest = self._guests.get(vm_ref)
        if guest is None:
            return True
        guest.stopping = True
        try:
            await self.qmp(guest, "system_powerdown")
            await asyncio.wait_for(guest.exited.wait(), wait)
        except (OSError, TimeoutError, ValueError):
            guest.stopping = guest.exited.is_set()
            return guest.exited.is_set()
        return True

    async def qmp_command(self, vm_ref: str, command: str) -> None:
        """A QMP command without arguments to a VM's QEMU: ``system_reset``
        (a reboot in the same QEMU, same forwarded port), ``stop``, ``cont``."""
        guest = self._guests.get(vm_ref)
        if guest is not None:
            await self.qmp(guest, command)

    async def close(self) -> None:
        """Kill every QEMU of the pool (the simulator is stopping)."""
        for vm_ref in list(self._guests):
            await self.kill(vm_ref)
        await asyncio.to_thread(shutil.rmtree, self._sockets, True)


def machine_spec(db: Any, vdi_path: Callable[[str], Path], vm_ref: str) -> MachineSpec:
    """A VM's QEMU machine from its records: disk VBDs, CPUs, memory, MAC."""
    vm = db.get("VM", vm_ref)
    disks: list[tuple[int, Disk]] = []
    for vbd in db.find("VBD", VM=vm_ref):
        rec = db.get("VBD", vbd)
        if rec["type"] != "Disk" or not db.exists("VDI", rec["VDI"]):
            continue
        order = int(rec["userdevice"]) if str(rec["userdevice"]).isdigit() else 99
        disks.append((order, Disk(vdi_path(rec["VDI"]), rec["mode"] == "RO")))
    macs = [db.get("VIF", v)["MAC"] for v in db.find("VIF", VM=vm_ref)]
    return MachineSpec(
        uuid=str(vm["uuid"]),
        vcpus=max(1, int(vm["VCPUs_at_startup"])),
        memory_mib=max(128, int(vm["memory_static_max"]) >> 20),
        disks=tuple(d for _, d in sorted(disks, key=lambda t: t[0])),
        mac=str(macs[0]) if macs else "",
    )
