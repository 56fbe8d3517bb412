"""xenkeepd and xenkeep as real processes: systemd notification, the CLI,
the HTTP redirect and the kept certificate."""

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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509

from xenkeep.system.tls import certificate_fingerprint

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path, **extra: object) -> Path:
    values = {
        "state_dir": str(tmp_path / "state"),
        "run_dir": str(tmp_path / "run"),
        "listen": "127.0.0.1",
        "https_port": free_port(),
        "http_port": 0,
        "hostname": "xk-proc-test",
        # The simulators these daemons talk to speak plain http, which only
        # development mode accepts for a pool.
        "dev": True,
    }
    values.update(extra)
    cfg = tmp_path / "xenkeep.toml"
    cfg.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return cfg


def wait_health(port: int, cert: Path, proc: subprocess.Popen[bytes]) -> dict[str, str]:
    for _ in range(300):
        if proc.poll() is not None:
            raise AssertionError(f"xenkeepd exited with {proc.returncode}")
        if cert.exists():
            ctx = ssl.create_default_context(cafile=str(cert))
            try:
                url = f"https://127.0.0.1:{port}/api/v1/health"
                with urllib.request.urlopen(url, context=ctx, timeout=2) as r:
                    return dict(json.load(r))
            except (OSError, urllib.error.URLError):
                pass
        time.sleep(0.1)
    raise AssertionError("xenkeepd never answered")


@contextmanager
def running(cfg: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    full_env.update(env or {})
    proc = subprocess.Popen(
        [str(BIN / "xenkeepd"), "--config", str(cfg)],
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "xenkeep"), "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def tomlval(cfg: Path, key: str) -> str:
    for line in cfg.read_text().splitlines():
        k, _, v = line.partition(" = ")
        if k == key:
            return str(json.loads(v))
    raise KeyError(key)


def test_systemd_notify_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(60)
    try:
        env = {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}
        with running(cfg, env) as proc:
            seen: list[str] = []
            while not ({"READY=1", "WATCHDOG=1"} <= set(seen)):
                seen.extend(sock.recv(4096).decode().splitlines())
            assert any(line.startswith("STATUS=serving") for line in seen)
            proc.send_signal(signal.SIGTERM)
            while "STOPPING=1" not in seen:
                seen.extend(sock.recv(4096).decode().splitlines())
            assert proc.wait(timeout=30) == 0
    finally:
        sock.close()


def test_cli_setup_token_status_and_reset_admin(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    port = int(tomlval(cfg, "https_port"))
    cert = tmp_path / "state" / "tls" / "cert.pem"
    with running(cfg) as proc:
        wait_health(port, cert, proc)
        token = cli(cfg, "setup-token")
        assert token.returncode == 0
        assert token.stdout.strip() == (tmp_path / "run" / "setup-token").read_text().strip()
        status = cli(cfg, "status")
        assert status.returncode == 0, status.stderr
        assert "running" in status.stdout
        assert certificate_fingerprint(cert) in status.stdout
        assert "waiting for the web wizard" in status.stdout

        # Create the administrator through the API, as the wizard would.
        ctx = ssl.create_default_context(cafile=str(cert))
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=ctx), urllib.request.HTTPCookieProcessor()
        )

        def post(path: str, body: dict[str, str], csrf: str) -> dict[str, str]:
            req = urllib.request.Request(
                f"https://127.0.0.1:{port}{path}",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json", "X-CSRF-Token": csrf},
                method="POST",
            )
            with opener.open(req, timeout=10) as r:
                return dict(json.load(r))

        def csrf() -> str:
            with opener.open(f"https://127.0.0.1:{port}/api/v1/csrf", timeout=10) as r:
                return str(json.load(r)["csrf_token"])

        # Cookies are Secure: urllib keeps them for https only, as browsers do.
        token_csrf = csrf()
        post("/api/v1/setup/token", {"token": token.stdout.strip()}, token_csrf)
        pw = "a long enough passphrase"
        post("/api/v1/setup/admin", {"username": "alice", "password": pw}, token_csrf)

        gone = cli(cfg, "setup-token")
        assert gone.returncode == 1 and "an administrator exists" in gone.stderr
        assert "administrator: yes" in cli(cfg, "status").stdout

        reset = cli(cfg, "reset-admin")
        assert reset.returncode == 0, reset.stderr
        new_token = reset.stdout.strip().splitlines()[-1]
        assert new_token != token.stdout.strip()
        assert cli(cfg, "setup-token").stdout.strip() == new_token

        # The old token is dead, the new one creates a second administrator.
        fresh = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=ctx), urllib.request.HTTPCookieProcessor()
        )
        opener = fresh
        c = csrf()
        with pytest.raises(urllib.error.HTTPError) as err:
            post("/api/v1/setup/token", {"token": token.stdout.strip()}, c)
        assert err.value.code == 401
        err.value.close()
        post("/api/v1/setup/token", {"token": new_token}, c)
        post("/api/v1/setup/admin", {"username": "bob", "password": pw}, c)
        # The replaced administrator is disabled (kept, not deleted): the new one signs in.
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=ctx), urllib.request.HTTPCookieProcessor()
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            post("/api/v1/session", {"username": "alice", "password": pw}, csrf())
        assert err.value.code == 401
        err.value.close()
        body = post("/api/v1/session", {"username": "bob", "password": pw}, csrf())
        assert body["user"]["username"] == "bob"


def test_http_redirects_and_certificate_is_kept(tmp_path: Path) -> None:
    http_port = free_port()
    cfg = write_config(tmp_path, http_port=http_port)
    port = int(tomlval(cfg, "https_port"))
    cert = tmp_path / "state" / "tls" / "cert.pem"
    with running(cfg) as proc:
        wait_health(port, cert, proc)
        first = certificate_fingerprint(cert)
        conn = socket.create_connection(("127.0.0.1", http_port), timeout=10)
        conn.sendall(b"GET /setup?x=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % http_port)
        head = conn.recv(4096).decode()
        conn.close()
        assert head.startswith("HTTP/1.1 301")
        assert f"Location: https://127.0.0.1:{port}/setup?x=1" in head
    with running(cfg) as proc:
        wait_health(port, cert, proc)
        assert certificate_fingerprint(cert) == first
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "xk-proc-test" in san.get_values_for_type(x509.DNSName)
    assert (tmp_path / "state" / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600


def test_bad_config_stops_with_a_clear_message(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("https_port = 'many'\n")
    result = subprocess.run(
        [str(BIN / "xenkeepd"), "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "https_port" in result.stderr and "invalid value" in result.stderr


def test_newer_database_stops_the_daemon_and_is_untouched(tmp_path: Path) -> None:
    import sqlite3

    cfg = write_config(tmp_path)
    db = tmp_path / "state" / "xenkeep.db"
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    before = db.read_bytes()
    result = subprocess.run(
        [str(BIN / "xenkeepd"), "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "schema version 999" in result.stderr
    assert db.read_bytes() == before
