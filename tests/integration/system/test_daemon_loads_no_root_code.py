"""The unprivileged daemon never loads the privileged helper's root side.

A fresh interpreter builds and starts the app the way ``xenkeepd`` does
(``create_app`` with settings made as the other tests make them, then its
startup, which builds every service) and lists the modules it loaded. The
suite's own process cannot tell: its tests import the helper's root side.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
#: Code that runs as root only; xenkeep.system.firstboot imports it, so it
#: shows up here too if the daemon ever loads that.
ROOT_SIDE = "xenkeep.privhelper"

SCRIPT = """
import asyncio
import sys
from pathlib import Path

from aiohttp import web

from tests.support.web import make_settings
from xenkeep.app import create_app


async def main() -> None:
    app = create_app(make_settings(Path(sys.argv[1])))
    runner = web.AppRunner(app)
    await runner.setup()
    await runner.cleanup()


asyncio.run(main())
print("\\n".join(sorted(sys.modules)))
"""


def test_the_daemon_loads_no_root_side_helper_code(tmp_path: Path) -> None:
    path = [str(ROOT / "daemon"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = set(done.stdout.split())
    # The check looks at a process that did talk to the helper's client.
    assert {"xenkeep.app", "xenkeep.backup.disks", "xenkeep.system.helper"} <= loaded
    root_side = sorted(m for m in loaded if m == ROOT_SIDE or m.startswith(ROOT_SIDE + "."))
    assert root_side == [], f"the daemon imported root-side helper code: {root_side}"
