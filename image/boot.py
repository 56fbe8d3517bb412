#!/usr/bin/env python3
"""``make boot``: start the appliance image under QEMU and print its URL and setup token.

The boot takes the path XenServer's HVM guests take (SeaBIOS -> GRUB ->
initrd -> systemd) on a copy of ``out/xenkeep.raw``, with TCG (``/dev/kvm``
hangs guests on the build machines), 2 vCPUs and 2 GiB. HTTPS and SSH are
forwarded to free ports on 127.0.0.1; the serial console goes to a log file,
from which the setup token is read (the console banner shows it).

:class:`Vm` is also what ``tests/image`` boots the image with.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_IMAGE = REPO / "out" / "xenkeep.raw"
TOKEN_RE = re.compile(r"Setup token: (\S+)")
FINGERPRINT_RE = re.compile(r"((?:[0-9A-F]{2}:){31}[0-9A-F]{2})")
#: QEMU's user network: the guest gets this address by DHCP.
DHCP_GUEST_IP = "10.0.2.15"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _insecure_context() -> ssl.SSLContext:
    # The appliance's certificate is self-signed: the caller compares its
    # fingerprint with the one on the console instead.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class SerialPump(threading.Thread):
    """Reads QEMU's serial socket into the console log; lets callers type."""

    def __init__(self, path: Path, log: Path) -> None:
        super().__init__(name="serial-console", daemon=True)
        self._path = path
        self._log = log
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._sock: socket.socket | None = None
        self._closed = False

    def run(self) -> None:
        """Connect (QEMU creates the socket right after starting), then read."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        for _ in range(600):
            try:
                sock.connect(str(self._path))
                break
            except OSError:
                if self._closed:
                    sock.close()
                    return
                time.sleep(0.1)
        else:
            sock.close()
            return
        self._sock = sock
        with self._log.open("ab") as log:
            while not self._closed:
                try:
                    data = sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                log.write(data)
                log.flush()
                with self._cond:
                    self._buf += data
                    self._cond.notify_all()
        sock.close()

    def mark(self) -> int:
        """Position in the output from which to expect something."""
        with self._cond:
            return len(self._buf)

    def send(self, data: bytes) -> None:
        """Type ``data`` on the console."""
        for _ in range(100):
            if self._sock is not None:
                self._sock.sendall(data)
                return
            time.sleep(0.1)
        raise RuntimeError("serial console not connected")

    def expect(
        self, pattern: bytes, mark: int, deadline: float, resend: bytes | None = None
    ) -> bytes:
        """Wait until ``pattern`` shows up after ``mark``; return that output."""
        regex = re.compile(pattern)
        with self._cond:
            while True:
                out = bytes(self._buf[mark:])
                if regex.search(out):
                    return out
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"serial console: no {pattern!r}; got {out[-400:]!r}")
                if not self._cond.wait(timeout=min(left, 5)) and resend is not None:
                    self.send(resend)

    def close(self) -> None:
        """Stop reading."""
        self._closed = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        self.join(timeout=5)


class Vm:
    """One QEMU run of a copy of the appliance disk."""

    def __init__(
        self,
        image: Path,
        workdir: Path,
        *,
        disk_size: int | None = None,
        vm_data: Mapping[str, str] | None = None,
        guest_ip: str = DHCP_GUEST_IP,
        extra_disks: Sequence[int] = (),
    ) -> None:
        self.image = image
        self.workdir = workdir
        self.disk = workdir / "disk.raw"
        self.console_log = workdir / "console.log"
        self.serial_socket = workdir / "serial.sock"
        self.disk_size = disk_size
        self.vm_data = dict(vm_data or {})
        self.guest_ip = guest_ip
        #: Sparse blank disks after the system disk (vdb, vdc...), as an admin
        #: attaches a VDI in XenServer for the backup storage.
        self.extra_disks = [workdir / f"extra-{i}.raw" for i in range(len(extra_disks))]
        self.extra_sizes = list(extra_disks)
        self.https_port = 0
        self.ssh_port = 0
        self.started = 0.0
        self.proc: subprocess.Popen[bytes] | None = None
        self.serial: SerialPump | None = None

    @property
    def url(self) -> str:
        """The wizard's URL as seen from this machine."""
        return f"https://127.0.0.1:{self.https_port}/"

    def command(self) -> list[str]:
        """The QEMU command line."""
        fwd = (
            f"hostfwd=tcp:127.0.0.1:{self.https_port}-{self.guest_ip}:443,"
            f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-{self.guest_ip}:22"
        )
        argv = [
            "qemu-system-x86_64",
            "-accel", "tcg",
            "-machine", "pc",
            "-smp", "2",
            "-m", "2048",
            "-drive", f"file={self.disk},format=raw,if=virtio,cache=unsafe",
            *[
                arg
                for extra in self.extra_disks
                for arg in (
                    "-drive",
                    f"file={extra},format=raw,if=virtio,cache=unsafe",
                )
            ],
            "-nic", f"user,model=virtio-net-pci,{fwd}",
            # The serial console on a socket: a thread logs it and can type.
            "-chardev", f"socket,id=ser0,path={self.serial_socket},server=on,wait=off",
            "-serial", "chardev:ser0",
            "-display", "none",
            "-monitor", "none",
        ]  # fmt: skip
        for key, value in sorted(self.vm_data.items()):
            # fw_cfg option values escape commas by doubling them.
            argv += ["-fw_cfg", f"name=opt/xenkeep/vm-data/{key},string={value.replace(',', ',,')}"]
        return argv

    def start(self) -> None:
        """Copy the disk (sparse), grow it if asked, start QEMU."""
        if shutil.which("qemu-system-x86_64") is None:
            raise SystemExit("qemu-system-x86_64 is missing: run scripts/deps.sh image")
        self.workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "--sparse=always", str(self.image), str(self.disk)], check=True)
        if self.disk_size:
            with self.disk.open("r+b") as f:
                f.truncate(self.disk_size)
        for extra, size in zip(self.extra_disks, self.extra_sizes, strict=True):
            with extra.open("wb") as f:
                f.truncate(size)
        self.https_port, self.ssh_port = free_port(), free_port()
        self.console_log.write_bytes(b"")
        self.started = time.monotonic()
        with (self.workdir / "qemu.log").open("wb") as qemu_log:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=qemu_log, stderr=subprocess.STDOUT
            )
        self.serial = SerialPump(self.serial_socket, self.console_log)
        self.serial.start()

    def console(self) -> str:
        """Everything the serial console printed so far."""
        return self.console_log.read_bytes().decode("utf-8", errors="replace")

    def setup_token(self) -> str | None:
        """The last setup token the banner showed."""
        found = TOKEN_RE.findall(self.console())
        return found[-1] if found else None

    def console_fingerprint(self) -> str | None:
        """The last TLS fingerprint the banner showed."""
        found = FINGERPRINT_RE.findall(self.console())
        return found[-1] if found else None

    def served_fingerprint(self) -> str:
        """SHA-256 fingerprint of the certificate the appliance serves."""
        with (
            socket.create_connection(("127.0.0.1", self.https_port), timeout=10) as raw,
            _insecure_context().wrap_socket(raw) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())

    def get(self, path: str, timeout: float = 10) -> tuple[int, str]:
        """GET a page over HTTPS: (status, body)."""
        req = urllib.request.Request(self.url.rstrip("/") + path)  # noqa: S310 - https only
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=_insecure_context()) as r:  # noqa: S310
                return int(r.status), r.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode("utf-8", errors="replace")

    def wait_for_page(self, timeout: float = 900, path: str = "/") -> float:
        """Wait until ``path`` answers 200 over HTTPS; the seconds since QEMU started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"QEMU exited with {self.proc.returncode}; see {self.workdir}")
            with contextlib.suppress(OSError, ConnectionError, ssl.SSLError):
                status, _ = self.get(path, timeout=5)
                if status == 200:
                    return time.monotonic() - self.started
            time.sleep(0.5)
        raise TimeoutError(f"no answer within {timeout:.0f} s; console log: {self.console_log}")

    def wait_for_wizard(self, timeout: float = 900) -> float:
        """Wait until the wizard answers and the banner shows a token.

        Returns the seconds from QEMU's start to the first answer of the
        wizard page.
        """
        deadline = time.monotonic() + timeout
        answered = self.wait_for_page(timeout)
        while time.monotonic() < deadline:
            if self.setup_token():
                return answered
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"QEMU exited with {self.proc.returncode}; see {self.workdir}")
            time.sleep(0.5)
        raise TimeoutError(
            f"no setup token on the console within {timeout:.0f} s; console log: {self.console_log}"
        )

    def serial_session(
        self, user: str, password: str, commands: list[str], timeout: float = 600
    ) -> str:
        """Log in on the serial console, run ``commands``, return their output.

        The output is framed by markers, so kernel messages on the same
        console do not get mixed into it.
        """
        assert self.serial is not None
        pump = self.serial
        deadline = time.monotonic() + timeout
        mark = pump.mark()
        pump.send(b"\n")
        pump.expect(rb"login: ", mark, deadline, resend=b"\n")
        mark = pump.mark()
        pump.send(user.encode() + b"\n")
        pump.expect(rb"Password: ", mark, deadline)
        mark = pump.mark()
        pump.send(password.encode() + b"\n")
        pump.expect(rb"\$ ", mark, deadline)
        mark = pump.mark()
        script = "; ".join(commands)
        pump.send(f"echo '<<'BEGIN'>>'; {script}; echo '<<'END'>>'\n".encode())
        out = pump.expect(rb"<<END>>", mark, deadline)
        pump.send(b"exit\n")
        # Terminal control sequences (bash, agetty) are not output.
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode("utf-8", errors="replace"))
        text = text.replace("\r", "")
        return text.split("<<BEGIN>>", 1)[-1].split("<<END>>", 1)[0].strip("\n")

    def stop(self) -> None:
        """Power off (kill QEMU: the disk is a throw-away copy)."""
        if self.serial is not None:
            self.serial.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def running(image: Path, workdir: Path, **kwargs: object) -> Iterator[Vm]:
    """A started :class:`Vm`, stopped on exit."""
    vm = Vm(image, workdir, **kwargs)  # type: ignore[arg-type]
    vm.start()
    try:
        yield vm
    finally:
        vm.stop()


def main() -> int:
    """Boot, print URL and token, run until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--workdir", type=Path, help="keep the disk copy and logs here")
    parser.add_argument("--disk-size", type=int, help="grow the disk copy to this many bytes")
    parser.add_argument(
        "--backup-disk",
        type=int,
        default=32 << 30,
        help="bytes of a blank sparse second disk to try the backup storage on (0: none)",
    )
    parser.add_argument("--timeout", type=float, default=900)
    ns = parser.parse_args()
    if not ns.image.exists():
        print(f"boot: {ns.image} is missing: run make image", file=sys.stderr)
        return 1
    tmp = None
    if ns.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="xenkeep-boot-")
        ns.workdir = Path(tmp.name)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        extra = [ns.backup_disk] if ns.backup_disk else []
        with running(ns.image, ns.workdir, disk_size=ns.disk_size, extra_disks=extra) as vm:
            print(f"boot: QEMU started; serial console in {vm.console_log}", flush=True)
            seconds = vm.wait_for_wizard(ns.timeout)
            print(f"boot: wizard answered {seconds:.0f} s after QEMU started", flush=True)
            print(f"URL: {vm.url}")
            print(f"Setup token: {vm.setup_token()}")
            print(f"TLS SHA-256: {vm.served_fingerprint()}")
            print(f"SSH: ssh -p {vm.ssh_port} xenkeep@127.0.0.1")
            if extra:
                print(f"Backup disk: vdb, {ns.backup_disk >> 30} GiB blank (Backup → Storage)")
            print("Press Ctrl-C to stop the VM.", flush=True)
            assert vm.proc is not None
            vm.proc.wait()
    except KeyboardInterrupt:
        print("\nboot: stopping", file=sys.stderr)
    except (TimeoutError, RuntimeError) as exc:
        print(f"boot: {exc}", file=sys.stderr)
        return 1
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
