"""`make run`: the XAPI simulator with a demo pool, and xenkeepd against it.

State lives under ./var (kept between runs). Prints two lines tools parse:
``URL: https://127.0.0.1:<port>/`` and ``Setup token: <token>``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# XENKEEP_DEVRUN_DIR lets the tests run this script without touching ./var.
VAR = Path(os.environ.get("XENKEEP_DEVRUN_DIR", ROOT / "var")).resolve()
PY = sys.executable


def port_or_free(preferred: int) -> int:
    """``preferred`` when nobody listens there, else any free port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def wait_for(check: object, what: str, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"devrun: {what} exited with status {proc.returncode}; see {VAR}/*.log")
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    sys.exit(f"devrun: {what} did not start within {seconds:.0f} s; see {VAR}/*.log")


def tcp_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def https_healthy(port: int, cert: Path) -> bool:
    if not cert.exists():
        return False
    ctx = ssl.create_default_context(cafile=str(cert))
    try:
        url = f"https://127.0.0.1:{port}/api/v1/health"
        with urllib.request.urlopen(url, context=ctx, timeout=2) as r:
            return bool(json.load(r).get("status") == "ok")
    except (OSError, ValueError, urllib.error.URLError):
        return False


def main() -> int:
    VAR.mkdir(exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))

    sim_port = port_or_free(8480)
    sim_log = (VAR / "xapisim.log").open("ab")
    sim = subprocess.Popen(
        [
            PY,
            "-m",
            "xapisim",
            "--state",
            str(VAR / "xapisim"),
            "--listen",
            f"127.0.0.1:{sim_port}",
            "--demo",
            "--log-level",
            "INFO",
        ],
        stdout=sim_log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    procs.append(sim)
    wait_for(lambda: tcp_open(sim_port), "the XAPI simulator", sim)

    port = port_or_free(8443)
    # A real settings file, so `xenkeep --config var/xenkeep.toml ...` works too.
    config = VAR / "xenkeep.toml"
    config.write_text(
        "# Development settings, rewritten by `make run`.\n"
        f'state_dir = "{VAR / "state"}"\n'
        f'run_dir = "{VAR / "run"}"\n'
        'listen = "127.0.0.1"\n'
        f"https_port = {port}\n"
        "http_port = 0\n"
        "# Development mode: among other things, the demo pool's plain http is accepted.\n"
        "dev = true\n"
        "# No privileged helper in development: disks are the host's, not ours.\n"
        f'privhelper_socket = "{VAR / "run" / "privhelper.sock"}"\n'
    )
    env = dict(os.environ, XENKEEP_CONFIG=str(config))
    daemon_log = (VAR / "xenkeepd.log").open("ab")
    daemon = subprocess.Popen(
        [PY, "-m", "xenkeep"], env=env, stdout=daemon_log, stderr=subprocess.STDOUT, cwd=ROOT
    )
    procs.append(daemon)
    cert = VAR / "state" / "tls" / "cert.pem"
    try:
        wait_for(lambda: https_healthy(port, cert), "xenkeepd", daemon)
    except SystemExit:
        stop()
        raise

    token_file = VAR / "run" / "setup-token"
    token = token_file.read_text().strip() if token_file.exists() else ""
    fingerprint = subprocess.run(
        [PY, "-m", "xenkeep.cli", "status"], env=env, capture_output=True, text=True, check=False
    ).stdout
    print(f"URL: https://127.0.0.1:{port}/")
    if token:
        print(f"Setup token: {token}")
    else:
        print("Setup token: none (an administrator exists; `make reset-admin` makes a new one)")
    for line in fingerprint.splitlines():
        if line.startswith("fingerprint:"):
            print("TLS certificate " + line.split(":", 1)[1].strip())
    print(f"Demo pool: http://127.0.0.1:{sim_port}/  user root, password demo")
    print(f"Logs: {VAR}/xenkeepd.log, {VAR}/xapisim.log  (Ctrl-C stops both)", flush=True)
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop()
    failed = [p for p in procs if p.returncode not in (0, -signal.SIGTERM, None)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
