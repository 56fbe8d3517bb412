"""Boot to the wizard: ``make bench`` (or ``python bench/boot_bench.py --out F``), as root.

Boots the appliance image (``out/xenkeep.raw``, built first when stale)
and, in the same run, a minimal image (``bench/minimal-image``: the same
Debian, kernel, boot path, initrd and kernel command line, with a one-page
HTTPS server of Python's standard library instead of XenKeep), each under
QEMU with TCG exactly as ``make boot`` and the image tests do. Figures:

- ``wizard_s``: QEMU start to the first answer of the wizard (with the
  setup token on the console); ``minimal_s``: QEMU start to the minimal
  page; ``ratio``: their quotient, the figure to compare across machines
  (the host's speed and load weigh on both alike);
- ``split``: where the appliance's seconds went, read over the serial
  console from systemd's timestamps (the manager's and the daemon unit's;
  ``systemd-analyze time`` waits for the whole boot to finish, which now
  comes after the wizard): firmware and GRUB with the short tail between
  the daemon's readiness and the page's first answer (the wall time systemd
  does not count), kernel, initrd, userspace up to the daemon's start, and
  the daemon's own start (its Python imports and set-up, until it tells
  systemd it serves);
- ``daemon_import_s`` and ``python_s``: ``import xenkeep.app`` and a bare
  ``python3 -c pass`` in the booted appliance, and its critical chain and
  ``systemd-analyze blame`` head as text.

``--rounds N`` alternates the two boots N times and reports the medians.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "out"
MINIMAL_DIR = REPO / "bench" / "minimal-image"
MINIMAL_OUT = OUT / "minimal"
#: What the minimal image is built from: its own config and what it includes.
MINIMAL_INPUTS = (
    MINIMAL_DIR / "mkosi.conf",
    MINIMAL_DIR / "tree",
    REPO / "image" / "mkosi.conf.d" / "30-boot.conf",
    REPO / "image" / "mkosi.conf.d" / "40-firstboot.conf",
    REPO / "image" / "mkosi.repart",
    REPO / "image" / "mkosi.pkgmngr",
)
PASSWORD = "boot-bench console pw"
BOOT_TIMEOUT = 1800


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"xk_bench_{name}", REPO / "image" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


image_build = _load("build")
image_boot = _load("boot")


def log(msg: str) -> None:
    print(f"boot-bench: {msg}", file=sys.stderr, flush=True)


def digest(paths: tuple[Path, ...]) -> str:
    h = hashlib.sha256()
    for top in paths:
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in files:
            h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
            h.update(b"%o" % (path.stat().st_mode & 0o111))
    return h.hexdigest()


def appliance_image() -> Path:
    """out/xenkeep.raw, built from the tree when missing or stale."""
    stamp = OUT / "inputs.sha256"
    raw = OUT / "xenkeep.raw"
    fresh = stamp.exists() and stamp.read_text().strip() == image_build.inputs_digest()
    if not (raw.exists() and fresh):
        log("out/xenkeep.raw is missing or stale: building it (image/build.py)")
        subprocess.run([sys.executable, str(REPO / "image" / "build.py")], cwd=REPO, check=True)
    return raw


def minimal_image() -> Path:
    """out/minimal/minimal.raw, built with mkosi when missing or its inputs changed."""
    raw = MINIMAL_OUT / "minimal.raw"
    stamp = MINIMAL_OUT / "inputs.sha256"
    want = digest(MINIMAL_INPUTS)
    if raw.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return raw
    if shutil.which("mkosi") is None:
        raise SystemExit("boot-bench: mkosi is missing: run scripts/deps.sh image")
    log("building the minimal image (bench/minimal-image)")
    subprocess.run(["mkosi", "-f", "build"], cwd=MINIMAL_DIR, check=True)
    MINIMAL_OUT.mkdir(parents=True, exist_ok=True)
    raw.unlink(missing_ok=True)
    built = MINIMAL_DIR / "mkosi.output" / "minimal.raw"
    subprocess.run(["cp", "--sparse=always", str(built), str(raw)], check=True)
    stamp.write_text(want + "\n")
    return raw


def boot_minimal(raw: Path) -> float:
    """Seconds from QEMU's start to the minimal image's page."""
    with (
        tempfile.TemporaryDirectory(prefix="xk-bench-minimal-", dir="/var/tmp") as work,
        image_boot.running(raw, Path(work)) as vm,
    ):
        return float(vm.wait_for_page(BOOT_TIMEOUT))


#: Run in the booted appliance, each framed so its output can be cut out;
#: once the boot is over (the wizard answers before it is), so that the
#: chain and the import time are those of a system at rest.
PROBES = {
    "settled": "systemctl is-system-running --wait",
    "time": "systemd-analyze time",
    "chain": "systemd-analyze critical-chain xenkeepd.service --no-pager",
    "blame": "systemd-analyze blame --no-pager | head -15",
    # Times since the kernel started, readable while the boot still runs
    # (systemd-analyze time waits for the boot to finish; the wizard does not).
    "manager": "systemctl show -p InitRDTimestampMonotonic -p UserspaceTimestampMonotonic",
    "daemon": (
        "systemctl show xenkeepd.service -p InactiveExitTimestampMonotonic "
        "-p ActiveEnterTimestampMonotonic"
    ),
    "imports": (
        "python3 -X importtime -c 'import xenkeep.app' 2>&1 | tail -1;"
        " TIMEFORMAT=%R; time python3 -c 'import xenkeep.app'; time python3 -c pass"
    ),
}


def boot_appliance(raw: Path) -> dict[str, Any]:
    """The wizard's seconds and where they went."""
    with tempfile.TemporaryDirectory(prefix="xk-bench-appliance-", dir="/var/tmp") as work:
        vm_data = {"system-account-xenkeep-password": PASSWORD}
        with image_boot.running(raw, Path(work), vm_data=vm_data) as vm:
            wizard = float(vm.wait_for_wizard(BOOT_TIMEOUT))
            commands = [f"echo '<<'{k}'>>'; {c}" for k, c in PROBES.items()]
            out = vm.serial_session("xenkeep", PASSWORD, [*commands, "echo '<<'end'>>'"])
    parts = dict(re.findall(r"<<(\w+)>>\n(.*?)(?=<<\w+>>)", out, re.S))
    return {"wizard_s": wizard, **analyse(wizard, parts)}


def analyse(wizard: float, parts: dict[str, str]) -> dict[str, Any]:
    """The split of ``wizard`` seconds from the probes' output."""
    props = {
        k: int(v) / 1e6
        for k, v in re.findall(r"(\w+)=(\d+)", parts.get("manager", "") + parts.get("daemon", ""))
    }
    result: dict[str, Any] = {
        "systemd_analyze_time": parts.get("time", "").strip(),
        "critical_chain": parts.get("chain", "").strip(),
        "blame": parts.get("blame", "").strip(),
    }
    imports = parts.get("imports", "").split()
    times = [float(t) for t in imports if re.fullmatch(r"\d+\.\d+", t)]
    if len(times) >= 2:
        result["daemon_import_s"], result["python_s"] = times[-2], times[-1]
    wanted = {
        "InitRDTimestampMonotonic",
        "UserspaceTimestampMonotonic",
        "InactiveExitTimestampMonotonic",
        "ActiveEnterTimestampMonotonic",
    }
    if wanted <= set(props):
        initrd = props["InitRDTimestampMonotonic"]
        user0 = props["UserspaceTimestampMonotonic"]
        start = props["InactiveExitTimestampMonotonic"]
        ready = props["ActiveEnterTimestampMonotonic"]
        result["split"] = {
            # What the wall clock has before the kernel's count begins (and the
            # tail after the daemon is ready, the same for every image).
            "firmware_grub_and_tail_s": round(wizard - ready, 1),
            "kernel_s": round(initrd, 1),
            "initrd_s": round(user0 - initrd, 1),
            "userspace_to_daemon_start_s": round(start - user0, 1),
            "daemon_start_s": round(ready - start, 1),
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT / "bench-boot.json")
    parser.add_argument("--rounds", type=int, default=1)
    ns = parser.parse_args()
    appliance, minimal = appliance_image(), minimal_image()
    rounds: list[dict[str, Any]] = []
    for n in range(ns.rounds):
        log(f"round {n + 1}: minimal image")
        minimal_s = boot_minimal(minimal)
        log(f"round {n + 1}: minimal page after {minimal_s:.1f} s; appliance")
        figures = boot_appliance(appliance)
        log(f"round {n + 1}: wizard after {figures['wizard_s']:.1f} s")
        rounds.append({"minimal_s": round(minimal_s, 1), **figures})
    wizard = statistics.median(r["wizard_s"] for r in rounds)
    minimal_s = statistics.median(r["minimal_s"] for r in rounds)
    report = {
        "wizard_s": round(wizard, 1),
        "minimal_s": round(minimal_s, 1),
        "ratio": round(wizard / minimal_s, 2),
        "rounds": rounds,
        "measured_at": int(time.time()),
    }
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wizard {wizard:.1f} s, minimal image {minimal_s:.1f} s: ratio {report['ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
