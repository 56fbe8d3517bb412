"""The appliance itself: its certificate, memory and load, failed units, the
journal's errors, and the versions of the daemon, the image and the database."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path
from typing import Final

from cryptography import x509

from xenkeep import __version__
from xenkeep.diagnostics.check import Check, Finding, failure, ok, warning
from xenkeep.diagnostics.host import NotAvailableHereError
from xenkeep.diagnostics.sources import Sources
from xenkeep.store import latest_schema_version
from xenkeep.units import human_bytes

from .clock import NOT_HERE_REMEDY

CERT_WARN_DAYS: Final = 30
CERT_FAIL_DAYS: Final = 7
MEMORY_WARN: Final = 0.10
MEMORY_FAIL: Final = 0.05
#: Five-minute load per CPU.
LOAD_WARN: Final = 2.0
LOAD_FAIL: Final = 4.0
JOURNAL_WINDOW: Final = 86400.0
#: The image's os-release names it so (mkosi's ImageId).
IMAGE_ID: Final = "xenkeep"


def _not_after(path: Path) -> float:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.not_valid_after.replace(tzinfo=dt.UTC).timestamp()


async def certificate_expiry(s: Sources) -> list[Finding]:
    try:
        not_after = await asyncio.to_thread(_not_after, s.tls.cert_path)
    except (OSError, ValueError) as exc:
        return [
            failure(
                f"cannot read {s.tls.cert_path}: {exc}",
                "Restart the daemon: it makes a new certificate when none is usable.",
            )
        ]
    days = (not_after - s.clock()) / 86400
    until = dt.datetime.fromtimestamp(not_after, dt.UTC).strftime("%Y-%m-%d")
    remedy = (
        "Move the old certificate aside (/var/lib/xenkeep/tls/) and restart the daemon: "
        "it makes a new one, whose fingerprint the console then shows."
    )
    if days < CERT_FAIL_DAYS:
        words = f"expired on {until}" if days < 0 else f"expires in {days:.0f} days ({until})"
        return [failure(words, remedy)]
    if days < CERT_WARN_DAYS:
        return [warning(f"expires in {days:.0f} days ({until})", remedy)]
    return [ok(f"valid until {until} ({days:.0f} days)")]


def _meminfo(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            out[name.strip()] = int(fields[0]) * 1024  # kB
    return out


async def memory(s: Sources) -> list[Finding]:
    info = _meminfo(await asyncio.to_thread((s.proc / "meminfo").read_text))
    total, available = info.get("MemTotal", 0), info.get("MemAvailable", 0)
    share = available / total if total else 0.0
    words = f"{human_bytes(available)} available of {human_bytes(total)} ({share:.0%})"
    remedy = (
        "The appliance is short of memory: runs with high concurrency and merges use it. "
        "Give the VM more memory, or lower the jobs' concurrency."
    )
    if share < MEMORY_FAIL:
        return [failure(words, remedy)]
    if share < MEMORY_WARN:
        return [warning(words, remedy)]
    return [ok(words)]


async def load(s: Sources) -> list[Finding]:
    fields = (await asyncio.to_thread((s.proc / "loadavg").read_text)).split()
    five = float(fields[1])
    cpus = len(os.sched_getaffinity(0)) or 1
    per_cpu = five / cpus
    words = f"load {five:.2f} over 5 min on {cpus} CPU(s) ({per_cpu:.2f} per CPU)"
    remedy = (
        "The appliance is busy: compression and checksums of concurrent runs take CPU. "
        "Give the VM more vCPUs or spread the jobs' schedules."
    )
    if per_cpu > LOAD_FAIL:
        return [failure(words, remedy)]
    if per_cpu > LOAD_WARN:
        return [warning(words, remedy)]
    return [ok(words)]


async def failed_units(s: Sources) -> list[Finding]:
    try:
        units = await s.host.failed_units()
    except NotAvailableHereError as exc:
        return [warning(f"not available here: {exc.message}", NOT_HERE_REMEDY)]
    if units:
        return [
            failure(
                f"{len(units)} failed: {', '.join(units)}",
                "See why with `systemctl status UNIT` and `journalctl -u UNIT` as root (or "
                "the log view here, filtered by the unit); `systemctl reset-failed` clears "
                "the state once fixed.",
            )
        ]
    return [ok("no unit has failed")]


async def journal_errors(s: Sources) -> list[Finding]:
    try:
        counts = await s.host.journal_errors(s.clock() - JOURNAL_WINDOW)
    except NotAvailableHereError as exc:
        return [warning(f"not available here: {exc.message}", NOT_HERE_REMEDY)]
    total = sum(counts.values())
    if total:
        top = ", ".join(f"{unit} ({n})" for unit, n in counts.most_common(5))
        return [
            warning(
                f"{total} error(s) in the last 24 h, most from {top}",
                "Read them in the log view (priority err, the last 24 h): most explain "
                "themselves; a support bundle carries them for a support call.",
            )
        ]
    return [ok("no errors in the last 24 h")]


async def daemon_version(s: Sources) -> list[Finding]:
    installed = await asyncio.to_thread(s.installed_version)
    if installed is not None and installed != __version__:
        return [
            warning(
                f"running {__version__}, but {installed} is installed",
                "The daemon was updated on disk and not restarted: restart it "
                "(`systemctl restart xenkeepd`, or reboot the appliance).",
            )
        ]
    return [ok(__version__ + ("" if installed else " (from a source tree)"))]


def _os_release(paths: tuple[Path, ...]) -> dict[str, str]:
    for path in paths:
        try:
            text = path.read_text()
        except OSError:
            continue
        out = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() and not key.startswith("#"):
                out[key.strip()] = value.strip().strip("\"'")
        return out
    return {}


async def image_build(s: Sources) -> list[Finding]:
    release = await asyncio.to_thread(_os_release, tuple(s.os_release))
    pretty = release.get("PRETTY_NAME") or release.get("NAME") or "unknown system"
    if release.get("IMAGE_ID") != IMAGE_ID:
        return [
            warning(
                f"not the XenKeep appliance image: {pretty}",
                "Nothing to do in development. An appliance always runs its own image: "
                "if this is one, its system files were changed by hand.",
            )
        ]
    build = release.get("IMAGE_VERSION") or release.get("BUILD_ID") or "unversioned"
    return [ok(f"XenKeep image {build} ({pretty})")]


async def schema(s: Sources) -> list[Finding]:
    have = await s.schema_version()
    want = await asyncio.to_thread(latest_schema_version)
    if have != want:
        return [
            failure(
                f"the database has schema {have}, this daemon writes {want}",
                "Restart the daemon: it migrates the database at start (a copy is kept "
                "next to it). If it refuses, the database comes from a newer XenKeep.",
            )
        ]
    return [ok(f"schema {have}")]


CHECKS: Final = (
    Check("tls.expiry", "Appliance certificate expiry", certificate_expiry),
    Check("system.memory", "Memory", memory),
    Check("system.load", "Load", load),
    Check("system.units", "Systemd units", failed_units),
    Check("system.journal", "Journal errors (24 h)", journal_errors),
    Check("version.daemon", "Daemon version", daemon_version),
    Check("version.image", "Image build", image_build),
    Check("version.schema", "Database schema version", schema),
)
