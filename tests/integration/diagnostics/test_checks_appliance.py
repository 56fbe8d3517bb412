"""Each check of the appliance itself in its ok state and its failing state:
free space (a small disk image, filled), the backup storage (mounted,
writable, then read-only), the certificate, memory and load, the OS's units,
journal and clock, and the versions."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
from collections import Counter
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.diagnostics.conftest import Diag
from tests.support.host import HostStandIn
from tests.support.journal import Entry, write_journal
from tests.support.mounts import mounted_image
from xenkeep.diagnostics import CheckStatus
from xenkeep.diagnostics.host import SystemdHost, TimeSync
from xenkeep.system.dbus import SystemBus
from xenkeep.system.journal import Journal
from xenkeep.system.tls import TlsMaterial
from xenkeep.web import keys

OK, WARNING, FAILURE = CheckStatus.OK, CheckStatus.WARNING, CheckStatus.FAILURE
MiB = 1 << 20


def fill(where: Path, share: float) -> None:
    """Take space until only ``share`` of the filesystem is free."""
    st = os.statvfs(where)
    target = int(st.f_blocks * st.f_frsize * share)
    free = st.f_bavail * st.f_frsize
    if free > target:
        with (where / f"fill-{share}").open("wb") as f:
            os.posix_fallocate(f.fileno(), 0, free - target)


async def test_free_space_of_the_system_filesystems(diag: Diag, tmp_path: Path) -> None:
    with mounted_image(tmp_path / "small", "ext4", 64 * MiB) as small:
        paths = {"root": small, "var": small}
        for check in ("disk.root", "disk.var"):
            r = await diag.one(check, paths=paths)
            assert r.status is OK and "free of" in r.value and r.remedy == ""
        await asyncio.to_thread(fill, small, 0.10)
        r = await diag.one("disk.root", paths=paths)
        assert r.status is WARNING and r.remedy
        await asyncio.to_thread(fill, small, 0.02)
        for check, words in (("disk.root", "system disk"), ("disk.var", "journalctl")):
            r = await diag.one(check, paths=paths)
            assert r.status is FAILURE and words in r.remedy, r
    r = await diag.one("disk.var", paths={"root": Path("/"), "var": tmp_path / "gone"})
    assert r.status is FAILURE and "cannot read" in r.value


async def test_backup_storage_space_mount_and_writes(diag: Diag, tmp_path: Path) -> None:
    backup = keys.backup(diag.server.app)
    for check in ("storage.space", "storage.mounted", "storage.writable"):
        r = await diag.one(check)
        assert r.status is WARNING and "no backup storage" in r.value
    # On the root filesystem: works, but shares the system disk.
    plain = tmp_path / "plain"
    await asyncio.to_thread(plain.mkdir)
    await backup.use_directory(str(plain))
    r = await diag.one("storage.mounted")
    assert r.status is WARNING and "share the system disk" in r.value
    with mounted_image(tmp_path / "bak", "xfs", 300 * MiB) as disk:
        await backup.use_directory(str(disk))
        assert (await diag.one("storage.mounted")).status is OK
        assert (await diag.one("storage.space")).status is OK
        r = await diag.one("storage.writable")
        assert r.status is OK and "read back" in r.value
        assert not [p for p in disk.iterdir() if p.name.startswith(".xenkeep-diag")]
        await asyncio.to_thread(fill, disk, 0.05)
        assert (await diag.one("storage.space")).status is WARNING
        await asyncio.to_thread(fill, disk, 0.01)
        r = await diag.one("storage.space")
        assert r.status is FAILURE and "prunes" in r.remedy
        await asyncio.to_thread(
            subprocess.run, ["mount", "-o", "remount,ro", str(disk)], check=True
        )
        r = await diag.one("storage.writable")
        assert r.status is FAILURE and "Read-only file system" in r.value, r
        await asyncio.to_thread(
            subprocess.run, ["mount", "-o", "remount,rw", str(disk)], check=True
        )


def _certificate(tmp_path: Path, days: float) -> TlsMaterial:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / f"cert-{days}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TlsMaterial(path, tmp_path / "key.pem", "")


async def test_certificate_expiry(diag: Diag, tmp_path: Path) -> None:
    r = await diag.one("tls.expiry")
    assert r.status is OK and "valid until" in r.value
    assert (await diag.one("tls.expiry", tls=_certificate(tmp_path, 20))).status is WARNING
    r = await diag.one("tls.expiry", tls=_certificate(tmp_path, 3))
    assert r.status is FAILURE and "expires in" in r.value
    r = await diag.one("tls.expiry", tls=_certificate(tmp_path, -2))
    assert r.status is FAILURE and "expired on" in r.value


def _proc_standin(tmp_path: Path, total_kb: int, available_kb: int, load5: float) -> Path:
    """A /proc stand-in: the kernel's meminfo and loadavg in a chosen state."""
    proc = tmp_path / f"proc-standin-{available_kb}-{load5}"
    proc.mkdir()
    (proc / "meminfo").write_text(
        f"MemTotal:       {total_kb} kB\nMemFree:        1 kB\nMemAvailable:   {available_kb} kB\n"
    )
    (proc / "loadavg").write_text(f"0.10 {load5:.2f} 0.30 1/100 4242\n")
    return proc


async def test_memory_and_load(diag: Diag, tmp_path: Path) -> None:
    # This machine, as it is (shared: its load is whatever the others make it).
    assert "available of" in (await diag.one("system.memory")).value
    assert "per CPU" in (await diag.one("system.load")).value
    cpus = len(os.sched_getaffinity(0))
    calm = _proc_standin(tmp_path, 2_000_000, 1_000_000, 0.5 * cpus)
    assert (await diag.one("system.memory", proc=calm)).status is OK
    assert (await diag.one("system.load", proc=calm)).status is OK
    short = _proc_standin(tmp_path, 2_000_000, 60_000, 10.0 * cpus)
    r = await diag.one("system.memory", proc=short)
    assert r.status is FAILURE and "available of" in r.value
    r = await diag.one("system.load", proc=short)
    assert r.status is FAILURE and "per CPU" in r.value


async def test_os_checks_say_not_available_on_a_machine_without_systemd(diag: Diag) -> None:
    # The daemon's own host is the real one: this machine has no system bus
    # and no journal, which must read as a warning, never as "all is well".
    assert isinstance(diag.service.sources.host, SystemdHost)
    for check in ("time.sync", "system.units", "system.journal"):
        r = await diag.one(check)
        assert r.status is WARNING and r.value.startswith("not available here"), r
        assert "no systemd" in r.remedy


async def test_time_sync_units_and_journal_in_each_state(diag: Diag) -> None:
    host = HostStandIn()
    r = await diag.one("time.sync", host=host)
    assert r.status is OK and "ntp.test" in r.value
    host.sync = TimeSync(synchronized=False, ntp_enabled=True, server="ntp.test")
    r = await diag.one("time.sync", host=host)
    assert r.status is FAILURE and "not synchronised" in r.value and "UDP port 123" in r.remedy
    host.sync = TimeSync(synchronized=False, ntp_enabled=False)
    r = await diag.one("time.sync", host=host)
    assert r.status is FAILURE and "switched off" in r.value
    assert (await diag.one("system.units", host=host)).status is OK
    host.failed = ["xenkeepd.service", "systemd-timesyncd.service"]
    r = await diag.one("system.units", host=host)
    assert r.status is FAILURE and "xenkeepd.service" in r.value and "journalctl -u" in r.remedy
    assert (await diag.one("system.journal", host=host)).status is OK
    host.errors = Counter({"xenkeepd.service": 3, "kernel": 1})
    r = await diag.one("system.journal", host=host)
    assert (
        r.status is WARNING
        and r.value.startswith("4 error(s)")
        and "xenkeepd.service (3)" in r.value
    )


async def test_journal_errors_from_real_journal_files(diag: Diag, tmp_path: Path) -> None:
    now = diag.service.sources.clock()
    journal_dir = tmp_path / "journal"
    await asyncio.to_thread(
        write_journal,
        journal_dir,
        [
            Entry("started"),
            Entry("an old error", priority=3, ts=now - 2 * 86400),
            Entry("warned", priority=4),
        ],
    )
    host = SystemdHost(SystemBus(), Journal(journal_dir))
    r = await diag.one("system.journal", host=host)
    assert r.status is OK and "no errors" in r.value
    await asyncio.to_thread(
        write_journal,
        journal_dir,
        [Entry("disk gone", priority=3), Entry("panic", priority=2, unit="other.service")],
    )
    r = await diag.one("system.journal", host=host)
    assert r.status is WARNING and r.value.startswith("2 error(s)"), r


async def test_versions(diag: Diag, tmp_path: Path) -> None:
    r = await diag.one("version.daemon")
    assert r.status is OK
    r = await diag.one("version.daemon", installed_version=lambda: "99.0")
    assert r.status is WARNING and "99.0 is installed" in r.value and "restart" in r.remedy
    image = tmp_path / "os-release"
    await asyncio.to_thread(
        image.write_text, 'PRETTY_NAME="Debian GNU/Linux 12"\nIMAGE_ID=xenkeep\nIMAGE_VERSION=7\n'
    )
    r = await diag.one("version.image", os_release=(image,))
    assert r.status is OK and "XenKeep image 7" in r.value
    await asyncio.to_thread(image.write_text, 'PRETTY_NAME="Debian GNU/Linux 12"\n')
    r = await diag.one("version.image", os_release=(image,))
    assert r.status is WARNING and "not the XenKeep appliance image" in r.value
    assert (await diag.one("version.schema")).status is OK

    async def older() -> int:
        return 3

    r = await diag.one("version.schema", schema_version=older)
    assert r.status is FAILURE and "schema 3" in r.value and "migrates" in r.remedy


async def test_a_hanging_or_broken_check_fails_alone(diag: Diag) -> None:
    from xenkeep.diagnostics import Check, DiagnosticsService

    async def hangs(_s: object) -> list[object]:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def breaks(_s: object) -> list[object]:
        raise RuntimeError("boom")

    service = DiagnosticsService(
        diag.service.sources,
        diag.service.ops,
        checks=[Check("t.hang", "Hangs", hangs), Check("t.break", "Breaks", breaks)],  # type: ignore[arg-type]
        check_timeout=0.2,
    )
    (hung,) = await service.run_check(service.registry.get("t.hang"))
    assert hung.status is FAILURE and "no answer within 0.2 s" in hung.value
    (broken,) = await service.run_check(service.registry.get("t.break"))
    assert broken.status is FAILURE and "RuntimeError: boom" in broken.value
