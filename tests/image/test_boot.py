"""Boot the real appliance image under QEMU: unattended first boot into the wizard.

One boot covers the first-boot promises: vm-data seeds through fw_cfg (a
static address the port forward points at, and the console password), the
banner with URL, fingerprint and token, the wizard over HTTPS with the same
certificate, the root filesystem grown to a larger disk, no failed unit and
no prompt on the console. Then, through the wizard and the API like an
administrator, a blank second disk becomes the backup storage: formatted by
the privileged helper, mounted by its systemd unit, writable by the
unprivileged daemon. A network change from the console comes back by
itself when not kept; an NTP change is kept at the console's prompt. The
figures go to out/image-test-boot.json (``make bench`` writes
out/bench-boot.json, beside a minimal image's boot).
"""

from __future__ import annotations

import http.cookiejar
import io
import json
import re
import shutil
import ssl
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from imagelib import image_boot

pytestmark = [pytest.mark.slow, pytest.mark.image, pytest.mark.timeout(3600)]

GIB = 1 << 30
DISK_SIZE = 6 * GIB
BACKUP_DISK_SIZE = 2 * GIB
ADMIN_PASSWORD = "image-test admin pw"
STATIC_IP = "10.0.2.50"
PASSWORD = "image-test pw"
#: What systemd-firstboot, a locale/keymap question or an emergency shell
#: would print on the console.
PROMPTS = re.compile(
    r"Please enter|Please type|-- Press any key|Give root password|emergency mode|"
    r"Enter root password|Please choose your keyboard|systemd-firstboot\[\d+\]:.*\?"
)


@pytest.fixture(scope="module")
def booted(image_out: Path) -> Iterator[image_boot.Vm]:
    # Not under pytest's basetemp: concurrent pytest runs prune old basetemp
    # directories, which would pull the disk and the console log from under
    # a boot that takes minutes.
    workdir = Path(tempfile.mkdtemp(prefix="xenkeep-image-boot-", dir="/var/tmp"))
    vm = image_boot.Vm(
        image_out / "xenkeep.raw",
        workdir,
        disk_size=DISK_SIZE,
        vm_data={
            "ip": STATIC_IP,
            "netmask": "255.255.255.0",
            "gateway": "10.0.2.2",
            "dns": "10.0.2.3",
            "system-account-xenkeep-password": PASSWORD,
        },
        guest_ip=STATIC_IP,
        extra_disks=[BACKUP_DISK_SIZE],
    )
    vm.start()
    try:
        seconds = vm.wait_for_wizard(timeout=1800)
        vm.boot_seconds = seconds  # type: ignore[attr-defined]
        # A figure for the closing note, not an assertion: the time depends
        # on the machine and its load.
        (image_out / "image-test-boot.json").write_text(
            json.dumps(
                {
                    "boot_to_wizard_seconds": round(seconds, 1),
                    "xva_bytes": (image_out / "xenkeep.xva").stat().st_size,
                    "measured_at": int(time.time()),
                },
                indent=2,
            )
            + "\n"
        )
        print(f"boot to wizard: {seconds:.0f} s")
        yield vm
    finally:
        vm.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_wizard_answers_over_https_at_the_seeded_address(booted: image_boot.Vm) -> None:
    # The port forward targets 10.0.2.50: an answer proves the static seed.
    status, body = booted.get("/")
    assert status == 200
    assert "token" in body.lower()
    status, health = booted.get("/api/v1/health")
    assert status == 200
    assert json.loads(health)["status"] == "ok"


def test_banner_shows_url_fingerprint_and_token(booted: image_boot.Vm) -> None:
    console = booted.console()
    assert f"https://{STATIC_IP}/" in console
    assert booted.setup_token()
    assert booted.console_fingerprint() == booted.served_fingerprint()


def test_no_prompt_on_the_console(booted: image_boot.Vm) -> None:
    assert not PROMPTS.search(booted.console())


def test_system_state_over_the_serial_console(booted: image_boot.Vm) -> None:
    # Logging in at all proves vm-data/system-account-xenkeep-password.
    out = booted.serial_session(
        "xenkeep",
        PASSWORD,
        [
            "echo size=$(df --output=size -B1 / | tail -1 | tr -d ' ')",
            "echo failed=$(systemctl --failed --no-legend --plain | wc -l)",
            "systemctl --failed --no-legend --plain",
            # --wait: the login prompt can come before the last boot jobs end
            # ("starting"); the state that matters is the one boot settles in.
            "echo state=$(systemctl is-system-running --wait)",
            "ip -4 -o addr show scope global",
            "echo token=$(test -e /run/xenkeep/setup-token && echo yes || echo no)",
            # Custom #cloud-config is checked against cloud-init's own schema.
            "echo schema=$(python3 -m json.tool /usr/share/xenkeep/cloud-init/"
            "schema-cloud-config-v1.json >/dev/null && python3 -c 'import jsonschema' && echo ok)",
        ],
    )
    fields = dict(re.findall(r"\b(size|failed|state|schema)=(\S*)", out))
    assert fields.get("schema") == "ok", out
    assert fields.get("failed") == "0", out
    assert fields.get("state") == "running", out
    # The root filesystem grew into the 6 GiB disk (minus ESP, BIOS boot, ext4 overhead).
    assert int(fields["size"]) > DISK_SIZE - 1 * GIB, out
    assert f"inet {STATIC_IP}/24" in out


class ApplianceApi:
    """The JSON API of the booted appliance, with a session cookie and CSRF,
    pinned to the certificate it serves."""

    def __init__(self, vm: image_boot.Vm) -> None:
        pem = ssl.get_server_certificate(("127.0.0.1", vm.https_port))
        ctx = ssl.create_default_context(cadata=pem)
        ctx.check_hostname = False  # the exact certificate is pinned instead
        self._base = vm.url.rstrip("/")
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            urllib.request.HTTPSHandler(context=ctx),
        )
        self._csrf = ""

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if method != "GET":
            if not self._csrf:
                self._csrf = self.call("GET", "/api/v1/csrf")[1]["csrf_token"]
            headers["X-CSRF-Token"] = self._csrf
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self._base + path, data, headers, method=method)  # noqa: S310
        try:
            # mkfs and a mount under TCG take a while.
            with self._opener.open(req, timeout=600) as resp:
                status, raw = int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = int(exc.code), exc.read()
        answer = json.loads(raw) if raw else None
        if isinstance(answer, dict) and "csrf_token" in answer:
            self._csrf = answer["csrf_token"]
        return status, answer

    def download(self, path: str) -> tuple[int, bytes]:
        """A GET whose answer is not JSON (the support bundle, a few hundred KiB)."""
        req = urllib.request.Request(self._base + path, method="GET")  # noqa: S310
        with self._opener.open(req, timeout=600) as resp:
            return int(resp.status), resp.read()


def test_a_blank_disk_becomes_the_backup_storage(booted: image_boot.Vm) -> None:
    api = ApplianceApi(booted)
    status, body = api.call("POST", "/api/v1/setup/token", {"token": booted.setup_token()})
    assert status == 200, body
    status, body = api.call(
        "POST",
        "/api/v1/setup/admin",
        {"username": "keeper", "password": ADMIN_PASSWORD, "confirm": ADMIN_PASSWORD},
    )
    assert status == 201, body

    status, listing = api.call("GET", "/api/v1/backup/disks")
    assert status == 200 and listing["available"] is True, listing
    disks = {d["name"]: d for d in listing["disks"]}
    assert disks["vdb"]["size"] == BACKUP_DISK_SIZE and disks["vdb"]["in_use"] == "", listing
    assert "root" in disks["vda"]["in_use"], listing

    status, body = api.call("POST", "/api/v1/backup/disks/vdb/format", {"confirm": "vda"})
    assert status == 400 and body["error"]["field"] == "confirm", body
    status, storage = api.call("POST", "/api/v1/backup/disks/vdb/format", {"confirm": "vdb"})
    assert status == 200, storage
    assert storage["configured"] and storage["path"] == "/srv/xenkeep", storage
    assert storage["reflink"] is True, storage
    assert storage["capacity"] > BACKUP_DISK_SIZE // 2, storage

    status, listing = api.call("GET", "/api/v1/backup/disks")
    assert listing["mounted"]["fstype"] == "xfs", listing
    out = booted.serial_session(
        "xenkeep",
        PASSWORD,
        [
            "echo mount=$(findmnt -n -o SOURCE,FSTYPE /srv/xenkeep | tr -s ' ' ,)",
            "echo enabled=$(systemctl is-enabled srv-xenkeep.mount)",
            "echo owner=$(stat -c %U:%a /srv/xenkeep)",
            "echo marker=$(test -e /srv/xenkeep/datastore.json && echo yes || echo no)",
            "echo failed=$(systemctl --failed --no-legend --plain | wc -l)",
            "systemctl --failed --no-legend --plain",
        ],
    )
    fields = dict(re.findall(r"\b(mount|enabled|owner|marker|failed)=(\S*)", out))
    assert fields.get("mount") == "/dev/vdb,xfs", out
    assert fields.get("enabled") == "enabled", out
    assert fields.get("owner") == "xenkeep:750", out
    assert fields.get("marker") == "yes", out
    assert fields.get("failed") == "0", out


#: The operation statuses that end a run.
FINISHED = {"success", "warning", "failed", "cancelled", "interrupted"}
#: Checks whose verdict on a freshly set-up appliance is known: everything of
#: the appliance's own (its storage, units, versions, certificate), nothing
#: of the outside world (this QEMU has no NTP server nor any pool).
OK_ON_THE_IMAGE = (
    "storage.mounted",
    "storage.writable",
    "storage.space",
    "system.units",
    "system.memory",
    "version.daemon",
    "version.image",
    "version.schema",
    "tls.expiry",
)


def test_diagnostics_logs_and_bundle_on_the_booted_image(booted: image_boot.Vm) -> None:
    # After the backup storage test: the administrator exists, a disk is mounted.
    api = ApplianceApi(booted)
    status, body = api.call(
        "POST", "/api/v1/session", {"username": "keeper", "password": ADMIN_PASSWORD}
    )
    assert status in (200, 201), body
    status, body = api.call("POST", "/api/v1/diagnostics/run", {})
    assert status == 202, body
    op_id = body["operation_id"]
    # Bounded by the module's timeout; the checks under TCG take seconds.
    while (run := api.call("GET", f"/api/v1/operations/{op_id}")[1])["status"] not in FINISHED:
        time.sleep(2)
    status, view = api.call("GET", "/api/v1/diagnostics")
    assert status == 200, view
    results = {r["id"]: r for r in view["results"]}
    assert len(view["checks"]) >= 20, view["checks"]
    for r in results.values():
        assert r["status"] in ("ok", "warning", "failure"), r
        assert r["status"] == "ok" or r["remedy"], r
    for check_id in OK_ON_THE_IMAGE:
        assert results[check_id]["status"] == "ok", (results[check_id], run)

    # The journal through systemd-python, in the unprivileged daemon.
    status, logs = api.call("GET", "/api/v1/logs?unit=xenkeepd.service&limit=50")
    assert status == 200 and logs["available"] is True, logs
    assert logs["entries"], logs

    # The bundle: the journal and the checks inside; no password, no setup token.
    status, raw = api.download("/api/v1/diagnostics/bundle")
    assert status == 200
    secrets = (ADMIN_PASSWORD.encode(), PASSWORD.encode(), booted.setup_token().encode())
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        members = {m.name.split("/", 1)[-1]: tar.extractfile(m) for m in tar if m.isfile()}
        contents = {name: f.read() if f else b"" for name, f in members.items()}
    journal = next(v for k, v in contents.items() if k.endswith("journal.log"))
    assert b"xenkeepd" in journal, sorted(contents)
    for name, data in contents.items():
        for secret in secrets:
            assert secret not in data, f"{secret!r} in {name}"

    # The same from the VM console, as its console account.
    out = booted.serial_session(
        "xenkeep",
        PASSWORD,
        [
            "xenkeep status > /tmp/status.txt; echo status_rc=$?",
            "grep -c https:// /tmp/status.txt | sed 's/^/urls=/'",
            "xenkeep check --json > /tmp/check.json; echo check_rc=$?",
            "echo checks=$(grep -o checked_at /tmp/check.json | wc -l)",
            "xenkeep support-bundle -o /tmp/bundle.tar.gz; echo bundle_rc=$?",
            "echo members=$(tar -tzf /tmp/bundle.tar.gz | wc -l)",
        ],
    )
    fields = dict(re.findall(r"\b(status_rc|urls|check_rc|checks|bundle_rc|members)=(\S*)", out))
    assert fields.get("status_rc") == "0" and int(fields.get("urls", "0")) >= 1, out
    # 1 when a check fails: here only the outside world's can (no NTP, no DNS).
    assert fields.get("check_rc") in ("0", "1") and int(fields.get("checks", "0")) >= 20, out
    assert fields.get("bundle_rc") == "0" and int(fields.get("members", "0")) >= 5, out


def wait_until(booted: image_boot.Vm, answering: bool, timeout: float) -> None:
    """Until the forwarded HTTPS port (to 10.0.2.50) answers, or stops answering."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            up = booted.get("/api/v1/health", timeout=3)[0] == 200
        except OSError:
            up = False
        if up == answering:
            return
        time.sleep(1)
    raise AssertionError(f"the appliance {'never answered' if answering else 'kept answering'}")


def test_a_network_change_comes_back_unless_kept(booted: image_boot.Vm) -> None:
    """The real helper (socket-activated, in its sandbox) and networkd of the image."""
    out = booted.serial_session(
        "xenkeep",
        PASSWORD,
        [
            "xenkeep network show",
            "xenkeep network static 10.0.2.51/24 --gateway 10.0.2.2 --dns 10.0.2.3"
            " --timeout 30 --no-wait; echo rc=$?",
        ],
    )
    assert f"configured:   static {STATIC_IP}/24 via 10.0.2.2, DNS 10.0.2.3" in out, out
    assert "rc=0" in out and "applied: network:" in out, out
    # The port forward points at 10.0.2.50: it goes away with the change, and
    # comes back when the helper's deadline puts the old file back.
    wait_until(booted, answering=False, timeout=120)
    wait_until(booted, answering=True, timeout=600)
    out = booted.serial_session(
        "xenkeep",
        PASSWORD,
        [
            "xenkeep network show",
            "echo y | xenkeep ntp 10.0.2.2; echo rc=$?",
            "echo ntp=$(timedatectl show-timesync -p SystemNTPServers --value)",
        ],
    )
    assert f"configured:   static {STATIC_IP}/24" in out, out
    assert "expired" in out and "not confirmed within 30 s" in out, out
    assert "rc=0" in out and "ntp=10.0.2.2" in out, out
    api = ApplianceApi(booted)
    status, body = api.call(
        "POST", "/api/v1/session", {"username": "keeper", "password": ADMIN_PASSWORD}
    )
    assert status in (200, 201), body
    status, shown = api.call("GET", "/api/v1/network")
    assert status == 200 and shown["available"] is True, shown
    assert shown["settings"]["address"] == f"{STATIC_IP}/24" and shown["settings"]["ntp"] == [
        "10.0.2.2"
    ], shown
    assert shown["last"]["outcome"] == "kept", shown


def test_the_backup_disk_is_mounted_again_after_a_reboot(booted: image_boot.Vm) -> None:
    # Runs after the test above made vdb the storage; sudo takes the account's password
    # and allows exactly `systemctl reboot` (sudoers.d/xenkeep: no root shell).
    # Detached and delayed, so the session ends cleanly before the system goes down.
    booted.serial_session(
        "xenkeep",
        PASSWORD,
        [
            f"setsid -f sh -c \"sleep 3; echo '{PASSWORD}' | sudo -S systemctl reboot\""
            " >/dev/null 2>&1"
        ],
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait for the old system to go away
        try:
            booted.get("/api/v1/health", timeout=3)
        except OSError:
            break
        time.sleep(1)
    deadline = time.monotonic() + 1800
    api = None
    while time.monotonic() < deadline:
        try:
            status, _ = booted.get("/api/v1/health", timeout=5)
            if status == 200:
                api = ApplianceApi(booted)
                break
        except OSError:
            pass
        time.sleep(2)
    assert api is not None, "the appliance did not come back after the reboot"
    status, body = api.call(
        "POST", "/api/v1/session", {"username": "keeper", "password": ADMIN_PASSWORD}
    )
    assert status in (200, 201), body
    status, storage = api.call("GET", "/api/v1/backup/storage")
    assert status == 200 and storage["configured"], storage
    assert storage["path"] == "/srv/xenkeep" and storage["reflink"] is True, storage
    status, listing = api.call("GET", "/api/v1/backup/disks")
    assert listing["mounted"]["device"] == "vdb", listing
