"""npm packages the tests run (a real OpenID provider), installed on demand.

A package directory under tests/support/ holds a package.json with pinned
versions and its package-lock.json. :func:`installed` copies both into a
cache directory named by their hash (``~/.cache/xenkeep/npm/<hash>``) and
runs ``npm ci`` there once, under a file lock, so a fresh machine installs
exactly the locked tree and later runs reuse it.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

CACHE = Path.home() / ".cache" / "xenkeep" / "npm"
STAMP = ".xenkeep-installed"


def installed(package_dir: Path) -> Path:
    """A directory where ``package_dir``'s locked packages are installed,
    with its other files (the server script) copied next to them."""
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.fail("node and npm are needed for the sign-in tests: run scripts/deps.sh test")
    manifest = (package_dir / "package.json").read_bytes()
    lock = (package_dir / "package-lock.json").read_bytes()
    digest = hashlib.sha256(manifest + b"\0" + lock).hexdigest()[:16]
    target = CACHE / f"{package_dir.name}-{digest}"
    target.mkdir(parents=True, exist_ok=True)
    with (target.parent / f"{target.name}.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        stamp = target / STAMP
        if not stamp.exists() or stamp.read_text() != digest:
            (target / "package.json").write_bytes(manifest)
            (target / "package-lock.json").write_bytes(lock)
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--omit=dev"],
                cwd=target,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                pytest.fail(f"npm ci in {target} failed:\n{done.stdout}\n{done.stderr}")
            stamp.write_text(digest)
        for source in package_dir.iterdir():
            if source.is_file() and source.suffix in (".mjs", ".js"):
                shutil.copyfile(source, target / source.name)
    return target
