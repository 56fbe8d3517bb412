#!/usr/bin/env python3
"""Install the xenkeep wheel into an image root, the way Debian lays out Python.

Called by mkosi.postinst with the host's python3. pip is not in the image and
pip on the host would write the host interpreter into the scripts' shebangs,
so this does the little a wheel install needs: unpack the pure-Python files
into /usr/lib/python3/dist-packages, write the console scripts into /usr/bin
with /usr/bin/python3, and record the files in the dist-info RECORD.

Only the `xenkeep` package goes in: the wheel also carries `xapisim`, the
XAPI simulator used by development and tests, which the product never runs.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import sys
import zipfile
from pathlib import Path, PurePosixPath

SITE = PurePosixPath("usr/lib/python3/dist-packages")
BIN = PurePosixPath("usr/bin")
SKIP_TOP = {"xapisim"}
SCRIPT = """#!/usr/bin/python3
import sys
from {module} import {func}
sys.exit({func}())
"""


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def install(wheel: Path, root: Path) -> list[str]:
    """Unpack ``wheel`` under ``root``; return the installed paths (relative)."""
    records: list[tuple[str, bytes]] = []
    with zipfile.ZipFile(wheel) as zf:
        dist_info = next(n.split("/")[0] for n in zf.namelist() if ".dist-info/" in n)
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            name = info.filename
            if info.is_dir() or name.split("/")[0] in SKIP_TOP or name.endswith("/RECORD"):
                continue
            if ".data/" in name.split("/")[0] + "/":
                raise SystemExit(f"install_wheel: {name}: .data entries are not supported")
            records.append((str(SITE / name), zf.read(info)))
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()

    parser = configparser.ConfigParser()
    parser.read_string(entry_points)
    if parser.has_section("console_scripts"):
        for script, target in sorted(parser.items("console_scripts")):
            module, _, func = target.partition(":")
            records.append((str(BIN / script), SCRIPT.format(module=module, func=func).encode()))

    record_lines = []
    for rel, data in records:
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        dest.chmod(0o755 if rel.startswith(str(BIN)) else 0o644)
        record_lines.append(f"/{rel},{_record_hash(data)},{len(data)}")
    # pip uninstall would otherwise treat the files as unmanaged; INSTALLER
    # says who put them there.
    installer = root / SITE / dist_info / "INSTALLER"
    installer.write_text("xenkeep-image\n")
    record = root / SITE / dist_info / "RECORD"
    record_lines.append(f"/{SITE / dist_info / 'INSTALLER'},,")
    record_lines.append(f"/{SITE / dist_info / 'RECORD'},,")
    record.write_text("\n".join(record_lines) + "\n")
    return [rel for rel, _ in records]


def main() -> int:
    """``install_wheel.py WHEEL ROOT``."""
    if len(sys.argv) != 3:
        print("usage: install_wheel.py WHEEL ROOT", file=sys.stderr)
        return 2
    paths = install(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"install_wheel: {len(paths)} files from {Path(sys.argv[1]).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
