#!/usr/bin/env python3
"""``make image``: wheel -> mkosi disk image -> XVA, with checksums and a manifest.

Steps, each a small function sharing one :class:`Build`:

1. ``SOURCE_DATE_EPOCH`` from the last commit, so that every timestamp in the
   wheel, the filesystems and the XVA is the commit's.
2. The project's wheel (``build/``), read by ``mkosi.postinst``.
3. ``mkosi build`` in ``image/`` (incremental: packages are cached in
   ``image/mkosi.cache``).
4. ``out/xenkeep.raw`` (sparse copy), ``out/manifest.txt`` (package list),
   ``out/xenkeep.xva`` (the VM of ``image/appliance_xva.py``, packed with
   :mod:`xenkeep.formats.xva`),
   ``out/SHA256SUMS`` and ``out/inputs.sha256`` (what the tests compare to
   decide whether the image is stale).

Run with the project's virtualenv (``.venv/bin/python image/build.py``); it
needs root for mkosi, as ``make image`` does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGE_DIR = REPO / "image"
OUT = REPO / "out"
WHEEL_DIR = REPO / "build"
#: Inputs of the image: a change to any file under these makes it stale.
INPUT_PATHS = ("image", "appliance", "daemon/xenkeep", "webui", "pyproject.toml")
#: Never inputs: mkosi's own outputs and caches, Python's byte code,
#: image/boot.py, which runs the image but does not go into it, and the
#: simulator's cloud template (its own project, image/cloud_template.py).
IGNORED_PARTS = {
    "mkosi.output",
    "mkosi.cache",
    "mkosi.workspace",
    "__pycache__",
    "boot.py",
    "cloud-template",
    "cloud_template.py",
}
#: The appliance VM's root disk: the image plus room for the database and
#: logs; the root partition and filesystem grow into it at first boot.
DISK_SIZE = 16 << 30
#: Fixes every UUID inside the XVA (the others derive from it).
VM_UUID = "8f4c2b61-7d3e-4a59-9c0e-5b1a6d2f3e47"


def log(msg: str) -> None:
    """One progress line on stderr."""
    print(f"image: {msg}", file=sys.stderr, flush=True)


def die(msg: str, hint: str = "") -> None:
    """Stop with a message and an optional hint."""
    log(f"error: {msg}")
    if hint:
        log(f"hint: {hint}")
    raise SystemExit(1)


def run(argv: list[str], *, cwd: Path = REPO, env: dict[str, str] | None = None) -> None:
    """Run a command (never a shell) with its output on our terminal."""
    log("$ " + " ".join(argv))
    result = subprocess.run(argv, cwd=cwd, env=env, check=False)
    if result.returncode != 0:
        die(f"{argv[0]} exited with {result.returncode}")


def inputs_digest(paths: tuple[str, ...] = INPUT_PATHS, ignored: set[str] = IGNORED_PARTS) -> str:
    """SHA-256 over the paths and contents of every input file of an image."""
    digest = hashlib.sha256()
    for top in paths:
        base = REPO / top
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in files:
            rel = path.relative_to(REPO)
            if ignored & set(rel.parts) or path.suffix == ".pyc":
                continue
            digest.update(str(rel).encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
            digest.update(b"%o" % (path.stat().st_mode & 0o111))
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Streaming SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Build:
    """What the steps share."""

    epoch: int
    version: str
    env: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)


def source_date_epoch() -> int:
    """The last commit's time, or $SOURCE_DATE_EPOCH when set."""
    if "SOURCE_DATE_EPOCH" in os.environ:
        return int(os.environ["SOURCE_DATE_EPOCH"])
    out = subprocess.run(
        ["git", "log", "-1", "--format=%ct"], cwd=REPO, capture_output=True, text=True, check=False
    )
    if out.returncode != 0 or not out.stdout.strip():
        die("cannot read the last commit's time", "set SOURCE_DATE_EPOCH")
    return int(out.stdout.strip())


def build_wheel(b: Build) -> None:
    """The project's wheel, alone in build/ so mkosi.postinst finds one."""
    for old in WHEEL_DIR.glob("xenkeep-*.whl"):
        old.unlink()
    run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(WHEEL_DIR), "."],
        env=b.env,
    )


def cloud_init_schema(b: Build) -> None:
    """build/cloud-init/: cloud-init's JSON schema of #cloud-config, which the
    daemon checks custom user-data against; from the package scripts/deps.sh
    unpacked (cloud-init itself never goes into the image)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    schema = (
        cache
        / "xenkeep/cloud-init/usr/lib/python3/dist-packages/cloudinit/config/schemas"
        / "schema-cloud-config-v1.json"
    )
    if not schema.is_file():
        die(f"cloud-init's schema {schema} is missing", "run scripts/deps.sh image")
    target = WHEEL_DIR / "cloud-init"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(schema, target / schema.name)


def run_mkosi(b: Build, project: Path = IMAGE_DIR) -> None:
    """``mkosi build`` (-f: replace the last output, keep the package cache)."""
    if shutil.which("mkosi") is None:
        die("mkosi is not installed", "run scripts/deps.sh image")
    # XENKEEP_IMAGE_CACHE_DIR lets a copy of the tree (the reproducibility
    # test builds a snapshot of HEAD) reuse the checkout's package cache.
    cache = os.environ.get("XENKEEP_IMAGE_CACHE_DIR")
    extra = ["--cache-dir", cache] if cache else []
    run(["mkosi", "--image-version", b.version, *extra, "-f", "build"], cwd=project, env=b.env)


def raw_output(b: Build) -> Path:
    """mkosi's disk image."""
    path = IMAGE_DIR / "mkosi.output" / "xenkeep.raw"
    if not path.exists():
        die(f"mkosi left no {path}")
    return path


def copy_outputs(b: Build) -> None:
    """out/xenkeep.raw (sparse) and out/manifest.txt."""
    OUT.mkdir(exist_ok=True)
    raw = OUT / "xenkeep.raw"
    raw.unlink(missing_ok=True)
    run(["cp", "--sparse=always", str(raw_output(b)), str(raw)])
    manifest_json = IMAGE_DIR / "mkosi.output" / "xenkeep.manifest"
    packages = json.loads(manifest_json.read_text()).get("packages", [])
    lines = [f"{p['name']} {p['version']} {p.get('architecture', '')}".rstrip() for p in packages]
    (OUT / "manifest.txt").write_text(
        "# Debian packages in out/xenkeep.raw: name version architecture\n"
        + "\n".join(sorted(lines))
        + "\n"
    )


def pack_xva(b: Build) -> None:
    """out/xenkeep.xva from out/xenkeep.raw."""
    # image/appliance_xva.py sits next to this script, so it is importable
    # when this runs as a script (make image, the image tests' build); imported
    # here so that loading this module for inputs_digest() needs neither it
    # nor xenkeep.
    from appliance_xva import ApplianceSpec, write_appliance_xva

    commit = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    spec = ApplianceSpec(
        name="XenKeep",
        description=f"XenKeep {b.version} appliance: backup and self-service for this pool",
        disk_size=DISK_SIZE,
        vm_uuid=VM_UUID,
        vdi_name="XenKeep system disk",
        other_config={
            "xenkeep_version": b.version,
            "xenkeep_build": commit or "unknown",
            "xenkeep_source_date_epoch": str(b.epoch),
        },
        product_version=b.version,
        build_number=commit or "0",
    )
    target = OUT / "xenkeep.xva"
    tmp = target.with_suffix(".xva.tmp")
    with tmp.open("wb") as out:
        stats = write_appliance_xva(out, spec, OUT / "xenkeep.raw", mtime=b.epoch)
    tmp.replace(target)
    log(
        f"xenkeep.xva: {stats.bytes_written} bytes, {stats.chunks_written} chunks "
        f"written, {stats.chunks_skipped} all-zero chunks left out"
    )


def checksums(b: Build) -> None:
    """out/SHA256SUMS in sha256sum's format, and the inputs digest."""
    names = ("xenkeep.xva", "xenkeep.raw", "manifest.txt")
    lines = [f"{sha256_file(OUT / n)}  {n}" for n in names]
    (OUT / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    (OUT / "inputs.sha256").write_text(inputs_digest() + "\n")
    for line in lines:
        log(line)


def project_version() -> str:
    """``__version__`` of the package in the tree."""
    ns: dict[str, str] = {}
    exec((REPO / "daemon/xenkeep/__init__.py").read_text(), ns)  # noqa: S102 - our own file
    return ns["__version__"]


def main() -> int:
    """Build everything; ``--pack-only`` repacks out/xenkeep.raw."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack-only", action="store_true", help="only redo the XVA and sums")
    ns = parser.parse_args()
    epoch = source_date_epoch()
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
    b = Build(epoch=epoch, version=project_version(), env=env)
    steps = [build_wheel, cloud_init_schema, run_mkosi, copy_outputs, pack_xva, checksums]
    if ns.pack_only:
        steps = [pack_xva, checksums]
    for step in steps:
        start = time.monotonic()
        step(b)
        b.timings[step.__name__] = round(time.monotonic() - start, 1)
    (OUT / "build-times.json").write_text(json.dumps(b.timings, indent=2) + "\n")
    log(f"done in {sum(b.timings.values()):.0f} s: {b.timings}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
