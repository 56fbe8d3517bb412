"""The DNS check where DNS really works and then really breaks: inside a
network namespace the test makes, with its own resolv.conf (``ip netns exec``
puts /etc/netns/NAME/resolv.conf in place) pointing at a dnsmasq that
answers for a pool's name, then with that dnsmasq stopped."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mounts import require_root

NAME = "pool.xk-test.internal"
#: Runs the real check inside the namespace; the pools are a stand-in with none,
#: so only the configured name is resolved.
PROBE = """
import asyncio, json, types
from pathlib import Path
from xenkeep.diagnostics.checks.network import dns

class NoPoolsStandIn:
    async def pools(self):
        return []

sources = types.SimpleNamespace(
    pools=NoPoolsStandIn(), dns_names=[%r], resolv_conf=Path("/etc/resolv.conf")
)
(finding,) = asyncio.run(dns(sources))
print(json.dumps({"status": finding.status.value, "value": finding.value}))
"""


@pytest.fixture
def netns() -> Iterator[str]:
    require_root("a network namespace")
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq is not installed")
    name = f"xk-dns-{secrets.token_hex(3)}"
    etc = Path("/etc/netns") / name
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        yield name
    finally:
        shutil.rmtree(etc, ignore_errors=True)
        subprocess.run(["ip", "netns", "delete", name], check=False)


def probe(ns: str) -> dict[str, str]:
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": f"{root / 'daemon'}:{root}"}
    done = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", PROBE % NAME],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return dict(json.loads(done.stdout))


def test_dns_resolves_then_breaks(netns: str, tmp_path: Path) -> None:
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            netns,
            "dnsmasq",
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--port=53",
            f"--address=/{NAME}/127.0.0.42",
            f"--pid-file={tmp_path / 'dnsmasq.pid'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            answer = probe(netns)
            if answer["status"] == "ok":
                break
        assert answer["status"] == "ok", answer
        assert f"{NAME} → 127.0.0.42" in answer["value"] and "via 127.0.0.1" in answer["value"]
    finally:
        server.terminate()
        server.wait()
    answer = probe(netns)
    assert answer["status"] == "failure", answer
    assert answer["value"].startswith(f"cannot resolve {NAME}:"), answer
