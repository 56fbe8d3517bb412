"""`make run`'s launcher: simulator + daemon, two parseable lines, clean stop."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import XenAPI

ROOT = Path(__file__).resolve().parents[2]


def test_devrun_prints_url_and_token_that_work(tmp_path: Path) -> None:
    env = dict(os.environ, XENKEEP_DEVRUN_DIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "devrun.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line.rstrip())
            if line.startswith("Logs:"):
                break
        out = "\n".join(lines)
        url = re.search(r"^URL: (https://127\.0\.0\.1:\d+/)$", out, re.M)
        token = re.search(r"^Setup token: ([0-9A-Z]{4}(?:-[0-9A-Z]{4}){6})$", out, re.M)
        pool = re.search(r"^Demo pool: (http://127\.0\.0\.1:\d+/)", out, re.M)
        assert url and token and pool, out + proc.stderr.read() if proc.poll() else out

        ctx = ssl.create_default_context(cafile=str(tmp_path / "state" / "tls" / "cert.pem"))
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=ctx), urllib.request.HTTPCookieProcessor()
        )
        with opener.open(url.group(1) + "api/v1/csrf", timeout=10) as r:
            csrf = json.load(r)["csrf_token"]
        req = urllib.request.Request(  # noqa: S310 - a fixed https URL
            url.group(1) + "api/v1/setup/token",
            data=json.dumps({"token": token.group(1)}).encode(),
            headers={"Content-Type": "application/json", "X-CSRF-Token": csrf},
        )
        with opener.open(req, timeout=10) as r:
            assert r.status == 200

        session = XenAPI.Session(pool.group(1))
        session.xenapi.login_with_password("root", "demo", "1.0", "xenkeep-test")
        try:
            assert len(session.xenapi.host.get_all()) == 2
        finally:
            session.xenapi.session.logout()
            session("close")()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        proc.stdout.close()
        proc.stderr.close()
