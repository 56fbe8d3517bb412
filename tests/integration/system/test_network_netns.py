"""Network changes for real: the privileged helper and the daemon in a network namespace.

The appliance is a network namespace with real systemd-networkd and
systemd-timesyncd (tests/support/netns.py), the administrator sits in a
router namespace across a veth pair (with networkd serving DHCP), and the
helper runs as its own process, ``python -m xenkeep.privhelper``, exactly as
xenkeep-privhelper.service starts it. Every change goes through networkd's
own parser and ``networkctl reload``; the addresses are read
from the kernel. What is proved:

- a change confirmed in time stays; one left alone comes back by itself
  when the helper's deadline passes, byte for byte, to the previous
  address; DHCP from the router, and back;
- the deadline survives the helper being killed (SIGKILL, then started
  again as systemd's Restart= would); a helper stopped (SIGTERM) reverts
  before it goes;
- NTP servers reach timesyncd (asked over its D-Bus interface) and come
  back the same way;
- from the router's side, over HTTPS: the daemon's API changes the address,
  the administrator signs in at the new address and keeps it there; a
  change made with the web form is kept with the page's button at its new
  address; one made through the API and left alone ends with the appliance
  answering at its previous address again.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.netns import SYSTEMCTL_STANDIN, Namespace, NetLab, netlab
from tests.support.web import ADMIN_PASSWORD
from xenkeep.system.helper_protocol import MIN_CONFIRM_SECONDS, encode_request
from xenkeep.system.netconf import parse_static_network, render_network

pytestmark = [pytest.mark.root]

FIRST = parse_static_network("192.0.2.10", "24", "192.0.2.1", ["192.0.2.1"])
FIRST_FILE = render_network(FIRST)
HTTPS_PORT = 8443


def in_pool(addresses: list[str]) -> bool:
    """An address the router's DHCP server hands out (192.0.2.100-119)."""
    return len(addresses) == 1 and re.fullmatch(r"192\.0\.2\.1[01]\d/24", addresses[0]) is not None


class Helper:
    """``python -m xenkeep.privhelper`` in the appliance's namespaces, as root."""

    def __init__(self, lab: NetLab) -> None:
        self.lab = lab
        self.socket = lab.base / "helper.sock"
        self.state = lab.base / "helper-state"
        bin_dir = lab.base / "bin"
        bin_dir.mkdir(exist_ok=True)
        standin = bin_dir / "systemctl"
        if not standin.exists():
            standin.symlink_to(SYSTEMCTL_STANDIN)
        self.env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "xenkeep.privhelper", "--socket", str(self.socket)]
        argv += ["--state-dir", str(self.state)]
        self.proc = self.lab.appliance.start(argv, self.lab.logs / "helper.log", env=self.env)
        while True:
            try:
                self.call("ping")
                return
            except OSError:
                assert self.proc.poll() is None, (self.lab.logs / "helper.log").read_text()
                time.sleep(0.1)

    def stop(self, sig: int) -> None:
        assert self.proc is not None
        self.lab.appliance.stop(self.proc, sig)
        self.proc = None

    def settled(self) -> dict[str, Any]:
        """``network.show`` once no change is pending (the last one's outcome recorded)."""
        while True:
            shown: dict[str, Any] = self.call("network.show")
            if shown["pending"] is None:
                return shown
            time.sleep(0.1)

    def call(self, op: str, **args: Any) -> Any:
        """One request over the helper's socket, as root (every operation)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.socket))
            s.sendall(encode_request(op, args))
            line = s.makefile("rb").readline()
        answer = json.loads(line)
        assert answer["ok"], answer
        return answer["result"]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[NetLab]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root; CI runs as root")
    with netlab(tmp_path / "lab", {"network/10-xenkeep.network": FIRST_FILE}) as made:
        made.wait_for_addresses(lambda a: a == ["192.0.2.10/24"], "the first address")
        yield made


@pytest.fixture
def helper(lab: NetLab) -> Iterator[Helper]:
    h = Helper(lab)
    h.start()
    try:
        yield h
    finally:
        if h.proc is not None:
            h.stop(signal.SIGKILL)  # no revert on the way out: the lab goes anyway


def test_kept_change_stays_and_an_unkept_one_comes_back(lab: NetLab, helper: Helper) -> None:
    shown = helper.call("network.show")
    assert shown["live"] == {
        "interfaces": [{"name": "eth0", "up": True, "addresses": ["192.0.2.10/24"]}],
        "gateways": ["192.0.2.1"],
        "dns": ["192.0.2.1"],
    }
    pending = helper.call(
        "network.static", address="192.0.2.20/24", gateway="192.0.2.1", dns=["192.0.2.1"]
    )["pending"]
    lab.wait_for_addresses(lambda a: a == ["192.0.2.20/24"], "the new address")
    helper.call("network.confirm", checkpoint=pending["id"])
    kept = (lab.network_dir / "10-xenkeep.network").read_text()

    pending = helper.call(
        "network.static",
        address="192.0.2.30/24",
        gateway="192.0.2.1",
        dns=["192.0.2.1"],
        timeout=MIN_CONFIRM_SECONDS,
    )["pending"]
    lab.wait_for_addresses(lambda a: a == ["192.0.2.30/24"], "the unconfirmed address")
    assert helper.call("network.show")["live"]["interfaces"][0]["addresses"] == ["192.0.2.30/24"]
    # Nobody confirms: the helper's deadline brings the kept address back.
    lab.wait_for_addresses(lambda a: a == ["192.0.2.20/24"], "the kept address again")
    assert (lab.network_dir / "10-xenkeep.network").read_text() == kept
    last = helper.settled()["last"]
    assert last["id"] == pending["id"] and last["outcome"] == "expired"


def test_dhcp_from_the_router_and_back(lab: NetLab, helper: Helper) -> None:
    pending = helper.call("network.dhcp")["pending"]
    assert not (lab.network_dir / "10-xenkeep.network").exists()
    found = lab.wait_for_addresses(in_pool, "a DHCP lease")
    live = helper.call("network.show")["live"]
    assert live["interfaces"][0]["addresses"] == found
    assert live["gateways"] == ["192.0.2.1"] and live["dns"] == ["192.0.2.1"]
    helper.call("network.revert", checkpoint=pending["id"])
    lab.wait_for_addresses(lambda a: a == ["192.0.2.10/24"], "the static address again")
    assert (lab.network_dir / "10-xenkeep.network").read_text() == FIRST_FILE


def test_the_deadline_outlives_a_killed_helper(lab: NetLab, helper: Helper) -> None:
    helper.call(
        "network.static",
        address="192.0.2.40/24",
        gateway="192.0.2.1",
        dns=["192.0.2.1"],
        timeout=MIN_CONFIRM_SECONDS + 3,
    )
    lab.wait_for_addresses(lambda a: a == ["192.0.2.40/24"], "the new address")
    helper.stop(signal.SIGKILL)
    helper.start()  # what Restart=on-failure does
    assert helper.call("network.show")["pending"]["summary"].endswith(
        "192.0.2.40/24 via 192.0.2.1, DNS 192.0.2.1"
    )
    lab.wait_for_addresses(lambda a: a == ["192.0.2.10/24"], "the first address again")
    assert helper.settled()["last"]["outcome"] == "expired"


def test_a_stopped_helper_reverts_on_its_way_out(lab: NetLab, helper: Helper) -> None:
    helper.call("network.static", address="192.0.2.50/24", gateway="192.0.2.1", dns=["192.0.2.1"])
    lab.wait_for_addresses(lambda a: a == ["192.0.2.50/24"], "the new address")
    helper.stop(signal.SIGTERM)
    # Reverted before it exited (networkd applies it a moment later).
    assert (lab.network_dir / "10-xenkeep.network").read_text() == FIRST_FILE
    lab.wait_for_addresses(lambda a: a == ["192.0.2.10/24"], "the first address")
    helper.start()
    last = helper.call("network.show")["last"]
    assert last["outcome"] == "reverted"
    assert last["message"] == "the helper stopped before it was confirmed"


def wait_for_ntp(lab: NetLab, wanted: list[str]) -> None:
    while lab.ntp_servers() != wanted:
        time.sleep(0.2)


def test_ntp_servers_reach_timesyncd_and_come_back(lab: NetLab, helper: Helper) -> None:
    wait_for_ntp(lab, [])
    helper.call("ntp.set", servers=["192.0.2.1", "ntp.example.org"], timeout=MIN_CONFIRM_SECONDS)
    wait_for_ntp(lab, ["192.0.2.1", "ntp.example.org"])
    wait_for_ntp(lab, [])
    assert helper.settled()["last"]["outcome"] == "expired"


# --- the daemon, from the administrator's side ---------------------------------------


class Remote:
    """An administrator's HTTPS client in the router's namespace, pinned to the
    daemon's certificate, with a session cookie and CSRF token per address."""

    def __init__(self, router: Namespace, cert: Path) -> None:
        self.router = router
        self.ctx = ssl.create_default_context(cafile=str(cert))
        self.ctx.check_hostname = False  # the exact certificate is pinned instead
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            urllib.request.HTTPSHandler(context=self.ctx),
        )
        self.csrf: dict[str, str] = {}

    def request(
        self,
        address: str,
        method: str,
        path: str,
        body: Any = None,
        form: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> tuple[int, Any]:
        """One request to ``address``, made from inside the router's namespace."""

        def go() -> tuple[int, Any]:
            url = f"https://{address}:{HTTPS_PORT}{path}"
            headers: dict[str, str] = {}
            data = None
            if form is not None:
                data = urllib.parse.urlencode(
                    {**form, "_csrf": self.csrf.get(address, "")}
                ).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            elif body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            if method != "GET" and address in self.csrf:
                headers["X-CSRF-Token"] = self.csrf[address]
            req = urllib.request.Request(url, data, headers, method=method)
            try:
                with self.opener.open(req, timeout=timeout) as resp:
                    status, raw = int(resp.status), resp.read()
            except urllib.error.HTTPError as exc:
                status, raw = int(exc.code), exc.read()
            text = raw.decode()
            try:
                return status, json.loads(text)
            except ValueError:
                return status, text

        return self.router.call(go)

    def answers(self, address: str) -> bool:
        try:
            return self.request(address, "GET", "/api/v1/health", timeout=3)[0] == 200
        except OSError:
            return False

    def sign_in(self, address: str) -> None:
        _, body = self.request(address, "GET", "/api/v1/csrf")
        self.csrf[address] = body["csrf_token"]
        status, body = self.request(
            address, "POST", "/api/v1/session", {"username": "keeper", "password": ADMIN_PASSWORD}
        )
        assert status == 200, body
        self.csrf[address] = body["csrf_token"]


@pytest.fixture
def daemon(lab: NetLab, helper: Helper, tmp_path: Path) -> Iterator[tuple[Remote, Path]]:
    """xenkeepd in the appliance's network namespace, listening on every address."""
    state = tmp_path / "state"
    config = tmp_path / "xenkeep.toml"
    values = {
        "state_dir": str(state),
        "run_dir": str(tmp_path / "run"),
        "listen": "::",
        "https_port": HTTPS_PORT,
        "http_port": 0,
        "hostname": "xenkeep-netns",
        "privhelper_socket": str(helper.socket),
    }
    config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    only_net = Namespace(lab.appliance.name)  # its network, the host's files
    proc = only_net.start(
        [sys.executable, "-m", "xenkeep", "--config", str(config)], lab.logs / "xenkeepd.log"
    )
    try:
        while not (state / "tls/cert.pem").exists():
            assert proc.poll() is None, (lab.logs / "xenkeepd.log").read_text()
            time.sleep(0.2)
        remote = Remote(lab.router, state / "tls/cert.pem")
        while not remote.answers("192.0.2.10"):
            assert proc.poll() is None, (lab.logs / "xenkeepd.log").read_text()
            time.sleep(0.2)
        token = (tmp_path / "run" / "setup-token").read_text().strip()
        _, body = remote.request("192.0.2.10", "GET", "/api/v1/csrf")
        remote.csrf["192.0.2.10"] = body["csrf_token"]
        status, body = remote.request("192.0.2.10", "POST", "/api/v1/setup/token", {"token": token})
        assert status == 200, body
        status, body = remote.request(
            "192.0.2.10",
            "POST",
            "/api/v1/setup/admin",
            {"username": "keeper", "password": ADMIN_PASSWORD, "confirm": ADMIN_PASSWORD},
        )
        assert status == 201, body
        remote.sign_in("192.0.2.10")
        yield remote, state
    finally:
        only_net.stop(proc)


def test_the_administrator_keeps_a_new_address_from_it(
    lab: NetLab, daemon: tuple[Remote, Path]
) -> None:
    remote, _ = daemon
    status, body = remote.request(
        "192.0.2.10",
        "PUT",
        "/api/v1/network",
        {
            "mode": "static",
            "address": "192.0.2.20/24",
            "gateway": "192.0.2.1",
            "dns": ["192.0.2.1"],
        },
    )
    # The answer left by the old address: the change waits a moment for it.
    assert status == 202, body
    checkpoint = body["pending"]["id"]
    while not remote.answers("192.0.2.20"):
        time.sleep(0.2)
    assert not remote.answers("192.0.2.10")
    # A new address is a new origin: a new session there, then keep.
    remote.sign_in("192.0.2.20")
    status, body = remote.request(
        "192.0.2.20", "POST", "/api/v1/network/confirm", {"checkpoint": checkpoint}
    )
    assert status == 200, body
    assert body["settings"]["address"] == "192.0.2.20/24"
    _, audit = remote.request("192.0.2.20", "GET", "/api/v1/audit")
    kept = next(e for e in audit["entries"] if e["event"] == "network_kept")
    assert kept["detail"]["via"] == "192.0.2.20" and kept["username"] == "keeper"

    # Through the form this time, and nobody keeps it.
    status, page = remote.request("192.0.2.20", "GET", "/admin/network")
    assert status == 200 and 'id="network-form"' in page
    status, _ = remote.request(
        "192.0.2.20",
        "POST",
        "/admin/network",
        form={
            "mode": "static",
            "address": "192.0.2.30/24",
            "gateway": "192.0.2.1",
            "dns": "192.0.2.1",
        },
    )
    assert status == 200  # the redirect, followed within the 2 s, shows the page
    while not remote.answers("192.0.2.30"):
        time.sleep(0.2)
    remote.sign_in("192.0.2.30")
    status, page = remote.request("192.0.2.30", "GET", "/admin/network")
    assert 'id="network-pending"' in page and "192.0.2.30/24" in page
    found = re.search(r'name="checkpoint" value="([0-9a-f]+)"', page)
    assert found is not None
    # Keep, with the page's own button, from the address it moved to.
    status, page = remote.request(
        "192.0.2.30", "POST", "/admin/network/keep", form={"checkpoint": found[1]}
    )
    assert status == 200 and "Kept: these are the appliance" in page, page
    assert 'data-outcome="kept"' in page
    lab.wait_for_addresses(lambda a: a == ["192.0.2.30/24"], "the kept address")

    # Through the API with a short time to confirm, and nobody confirms.
    status, body = remote.request(
        "192.0.2.30",
        "PUT",
        "/api/v1/network",
        {"mode": "dhcp", "timeout": MIN_CONFIRM_SECONDS},
    )
    assert status == 202, body
    leased = lab.wait_for_addresses(in_pool, "a DHCP lease")
    lab.wait_for_addresses(lambda a: a == ["192.0.2.30/24"], "the kept address again")
    assert not remote.answers(leased[0].partition("/")[0])
    while True:
        status, body = remote.request("192.0.2.30", "GET", "/api/v1/network")
        if body["pending"] is None:
            break
        time.sleep(0.2)
    assert status == 200 and body["last"]["outcome"] == "expired", body
    assert body["settings"]["address"] == "192.0.2.30/24"
