"""A small network of namespaces with real systemd-networkd, for network-change tests.

Two network namespaces joined by a veth pair:

- the *appliance*: its end of the pair is ``eth0`` (networkd matches ``en*
  eth*`` as on the appliance); it gets a mount namespace of its own (kept in
  a file, so each command can enter it) where ``/run`` is private, the
  appliance's networkd and timesyncd files are directories of the test
  (bind-mounted at ``/etc/systemd`` and ``/usr/lib/systemd/network``), and a
  D-Bus system bus, systemd-networkd and systemd-timesyncd run, each the
  real program of this machine, so ``networkctl reload``
  work as on the appliance;
- the *router*: the administrator's side, ``192.0.2.1/24``, with its own
  networkd serving DHCP (pool 192.0.2.100-119) and advertising itself as
  gateway and DNS server.

What this machine lacks is systemd as PID 1 (for ``systemctl try-restart
systemd-timesyncd.service``): a stand-in ``systemctl`` early on the
helper's PATH (:data:`SYSTEMCTL_STANDIN`) restarts the namespace's
timesyncd instead, and refuses anything else. timesyncd runs as its own
user without any capability, so it can never set this machine's clock.

The test process itself stays in the host's namespaces; :meth:`Namespace.call`
runs a function in a thread that has entered a namespace's network (sockets
made there belong to it), which is how a test talks HTTP from the router's
side. Every process started here is stopped by its handle at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pyroute2.netns import setns

REPO = Path(__file__).resolve().parents[2]
DHCP_NETWORK = REPO / "appliance/usr/lib/systemd/network/90-xenkeep-dhcp.network"
SYSTEMCTL_STANDIN = Path(__file__).resolve().parent / "netns_systemctl.py"
NETWORKD = Path("/lib/systemd/systemd-networkd")
TIMESYNCD = Path("/lib/systemd/systemd-timesyncd")
TIMESYNCD_UNIT = "systemd-timesyncd.service"
ROUTER_ADDRESS = "192.0.2.1"
#: Every tool the lab needs; a machine without one cannot run these tests.
TOOLS = ("ip", "nsenter", "unshare", "mount", "dbus-daemon", "networkctl", "busctl", "setpriv")

T = TypeVar("T")


@dataclass
class Namespace:
    """One network namespace, optionally with its own mount namespace."""

    name: str
    mount: Path | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this namespace."""
        enter = ["nsenter", f"--net=/run/netns/{self.name}"]
        if self.mount is not None:
            enter.append(f"--mount={self.mount}")
        return [*enter, "--", *argv]

    def run(self, argv: list[str], *, check: bool = True) -> str:
        """Run ``argv`` inside, wait, return its output."""
        done = subprocess.run(
            self.argv(argv), capture_output=True, text=True, timeout=60, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{argv} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def start(self, argv: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside, logging to ``log``; stopped by :meth:`stop_all`."""
        with log.open("ab") as out:
            proc = subprocess.Popen(self.argv(argv), stdout=out, stderr=subprocess.STDOUT, **kwargs)
        self.procs.append(proc)
        return proc

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a thread inside this namespace's network; its result."""
        box: dict[str, Any] = {}

        def body() -> None:
            try:
                setns(self.name, flags=0)
                box["value"] = fn()
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=body, name=f"in-{self.name}")
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["value"]  # type: ignore[no-any-return]

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        """Stop one process started here (by its handle) and wait for it."""
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(ValueError):
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


@dataclass
class NetLab:
    """The appliance and router namespaces, and where their pieces live."""

    appliance: Namespace
    router: Namespace
    base: Path

    @property
    def network_dir(self) -> Path:
        """The appliance's /etc/systemd/network, as a directory of the test."""
        return self.base / "appliance-etc-systemd" / "network"

    @property
    def logs(self) -> Path:
        return self.base / "logs"

    def addresses(self) -> list[str]:
        """The appliance's global IPv4 addresses on eth0 (ip/prefix)."""
        out = self.appliance.run(
            ["ip", "-4", "-o", "addr", "show", "dev", "eth0", "scope", "global"]
        )
        return [line.split()[3] for line in out.splitlines()]

    def wait_for_addresses(self, wanted: Callable[[list[str]], bool], what: str) -> list[str]:
        """Poll until ``wanted(addresses)``; what the deadline under test leaves to check."""
        while True:
            found = self.addresses()
            if wanted(found):
                return found
            time.sleep(0.2)

    def ntp_servers(self) -> list[str] | None:
        """The NTP servers the appliance's timesyncd was configured with, over its bus
        (None while no timesyncd answers there, as between its restarts)."""
        done = subprocess.run(
            self.appliance.argv(
                [
                    "busctl",
                    "get-property",
                    "org.freedesktop.timesync1",
                    "/org/freedesktop/timesync1",
                    "org.freedesktop.timesync1.Manager",
                    "SystemNTPServers",
                ]
            ),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            return None
        # as N "a" "b"
        return [item.strip('"') for item in done.stdout.split()[2:]]


def _private_mount_ns(ns: str, keep: Path, setup: list[str]) -> None:
    """A mount namespace for network namespace ``ns``, kept at ``keep``, set up by ``setup``."""
    keep.touch()
    subprocess.run(
        [
            "nsenter",
            f"--net=/run/netns/{ns}",
            "unshare",
            f"--mount={keep}",
            "--propagation",
            "private",
            "sh",
            "-ec",
            " && ".join(setup),
        ],
        check=True,
        timeout=60,
    )


def _base_mounts(etc_systemd: Path, usr_network: Path, state: Path) -> list[str]:
    # sysfs read-only: networkd then takes links as initialised without udev
    # (as in a container), and shows this namespace's interfaces.
    return [
        "mount -t sysfs -o ro sysfs /sys",
        "mount -t tmpfs tmpfs /run",
        "mkdir -p /run/dbus /run/systemd/netif",
        "chown -R systemd-network:systemd-network /run/systemd/netif",
        f"mount --bind {etc_systemd} /etc/systemd",
        f"mount --bind {usr_network} /usr/lib/systemd/network",
        f"mount --bind {state} /var/lib/systemd",
    ]


def wait_for(ready: Callable[[], bool]) -> None:
    """Poll ``ready`` every 0.1 s (the test's own timeout bounds it)."""
    while not ready():
        time.sleep(0.1)


@contextlib.contextmanager
def netlab(base: Path, appliance_files: dict[str, str] | None = None) -> Iterator[NetLab]:
    """The two namespaces, up, with networkd running on both sides.

    ``appliance_files`` are written into the appliance's /etc/systemd (by
    relative path) before its networkd starts, as a first boot would.
    """
    missing = [t for t in TOOLS if shutil.which(t) is None]
    missing += [str(p) for p in (NETWORKD, TIMESYNCD) if not p.exists()]
    if missing:
        raise RuntimeError(f"the network lab needs {', '.join(missing)}")
    tag = f"xk{os.getpid() % 100000}"
    appliance = Namespace(f"{tag}-appl")
    router = Namespace(f"{tag}-rtr")
    lab = NetLab(appliance, router, base)
    lab.logs.mkdir(parents=True, exist_ok=True)
    keep = base / "mountns"
    keep.mkdir()
    made: list[str] = []
    try:
        for ns in (appliance, router):
            subprocess.run(["ip", "netns", "add", ns.name], check=True)
            made.append(ns.name)
        subprocess.run(
            ["ip", "link", "add", f"{tag}a", "type", "veth", "peer", "name", f"{tag}r"], check=True
        )
        subprocess.run(["ip", "link", "set", f"{tag}a", "netns", appliance.name], check=True)
        subprocess.run(["ip", "link", "set", f"{tag}r", "netns", router.name], check=True)
        subprocess.run(
            ["ip", "-n", appliance.name, "link", "set", f"{tag}a", "name", "eth0"], check=True
        )
        for ns in (appliance, router):
            subprocess.run(["ip", "-n", ns.name, "link", "set", "lo", "up"], check=True)
        # The namespaces' mount namespaces are kept in files under a private
        # bind mount (the way ip-netns keeps network namespaces).
        subprocess.run(["mount", "--bind", str(keep), str(keep)], check=True)
        subprocess.run(["mount", "--make-private", str(keep)], check=True)
        dirs = {}
        for side in ("appliance", "router"):
            etc = base / f"{side}-etc-systemd"
            (etc / "network").mkdir(parents=True)
            (etc / "timesyncd.conf.d").mkdir()
            usr = base / f"{side}-usr-network"
            usr.mkdir()
            state = base / f"{side}-var-lib-systemd"
            (state / "timesync").mkdir(parents=True)
            shutil.chown(state / "timesync", "systemd-timesync", "systemd-timesync")
            dirs[side] = (etc, usr, state)
        shutil.copy(DHCP_NETWORK, dirs["appliance"][1])
        for rel, text in (appliance_files or {}).items():
            (dirs["appliance"][0] / rel).write_text(text)
        (dirs["router"][0] / "network" / "10-router.network").write_text(
            f"[Match]\nName={tag}r\n\n[Network]\nAddress={ROUTER_ADDRESS}/24\nDHCPServer=yes\n\n"
            f"[DHCPServer]\nPoolOffset=100\nPoolSize=20\nEmitDNS=yes\nDNS={ROUTER_ADDRESS}\n"
            "EmitRouter=yes\n"
        )
        for side, ns in (("appliance", appliance), ("router", router)):
            ns.mount = keep / side
            _private_mount_ns(ns.name, ns.mount, _base_mounts(*dirs[side]))
            ns.start(
                ["dbus-daemon", "--system", "--nofork", "--nopidfile"],
                lab.logs / f"{side}-dbus.log",
            )
            wait_for(lambda ns=ns: _exists(ns, "/run/dbus/system_bus_socket"))
            ns.start([str(NETWORKD)], lab.logs / f"{side}-networkd.log")
            wait_for(lambda ns=ns: _networkd_answers(ns))
        appliance.run(python_argv(str(SYSTEMCTL_STANDIN), "start", TIMESYNCD_UNIT))
        yield lab
    finally:
        if appliance.mount is not None:
            appliance.run(python_argv(str(SYSTEMCTL_STANDIN), "stop", TIMESYNCD_UNIT), check=False)
        for ns in (appliance, router):
            ns.stop_all()
        for side in ("appliance", "router"):
            subprocess.run(["umount", str(keep / side)], check=False)
        subprocess.run(["umount", str(keep)], check=False)
        for name in made:
            subprocess.run(["ip", "netns", "del", name], check=False)


def _exists(ns: Namespace, path: str) -> bool:
    return subprocess.run(ns.argv(["test", "-e", path]), check=False).returncode == 0


def _networkd_answers(ns: Namespace) -> bool:
    done = subprocess.run(
        ns.argv(["networkctl", "list", "--no-legend"]), capture_output=True, check=False
    )
    return done.returncode == 0


def python_argv(*args: str) -> list[str]:
    """This interpreter running ``args``, with the tree under test first on the path."""
    return [sys.executable, *args]
