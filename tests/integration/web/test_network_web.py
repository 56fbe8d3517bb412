"""Settings → Network and ``/api/v1/network``: the daemon's half of a network change.

The real daemon over HTTPS and a real privileged helper on its socket, on
a root under tmp_path with the commands it would run recorded (networkd
itself applies these files in tests/integration/system/test_network_netns.py,
which also confirms from the new address). Here: what the page and the API
say and refuse, that nothing reaches the helper's files before it is valid,
the audit trail, and that the page and the API see the same checkpoint.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.privhelper import CommandRecorder, serving
from tests.support.web import Browser, complete_setup
from xenkeep.config import Settings
from xenkeep.privhelper.applier import Applier
from xenkeep.privhelper.server import Server
from xenkeep.system.helper_protocol import DAEMON_OPERATIONS, MIN_CONFIRM_SECONDS

NETWORK = "etc/systemd/network/10-xenkeep.network"
STATIC = {"mode": "static", "address": "192.0.2.10/24", "gateway": "192.0.2.1"}


async def no_live() -> dict[str, object]:
    return {
        "interfaces": [{"name": "enX0", "up": True, "addresses": []}],
        "gateways": [],
        "dns": [],
    }


@pytest.fixture
async def helper(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[Path, CommandRecorder]]:
    """The helper on the daemon's socket path, with the daemon's rights."""
    rec = CommandRecorder()
    root = tmp_path / "root"
    applier = Applier(root, rec, live=True, read_live=no_live)
    await asyncio.to_thread(settings.privhelper_socket.parent.mkdir, parents=True, exist_ok=True)
    server = Server(applier, {0: DAEMON_OPERATIONS})
    async with serving(server, settings.privhelper_socket):
        try:
            yield root, rec
        finally:
            await applier.close(revert_pending=False)


async def read(root: Path, rel: str) -> str | None:
    path = root / rel
    return await asyncio.to_thread(lambda: path.read_text() if path.exists() else None)


async def admin(browser: Browser, settings: Settings) -> Browser:
    await complete_setup(browser, settings)
    return browser


async def test_without_a_helper_the_page_and_the_api_say_so(
    browser: Browser, settings: Settings
) -> None:
    await admin(browser, settings)
    status, page, _ = await browser.get("/admin/network")
    assert status == 200 and 'id="network-unavailable"' in page
    assert await browser.api("GET", "/api/v1/network") == (200, {"available": False})
    status, body = await browser.api("PUT", "/api/v1/network", {"mode": "dhcp"})
    assert status == 503, body
    assert "privileged helper" in body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({**STATIC, "address": "192.0.2.10"}, "address", "prefix length"),
        ({**STATIC, "address": "192.0.2.300/24", "dns": ["192.0.2.53"]}, "address", "not an IP"),
        ({**STATIC, "gateway": "198.51.100.1", "dns": ["192.0.2.53"]}, "gateway", "outside"),
        ({**STATIC, "dns": []}, "dns", "at least one DNS server"),
        ({**STATIC, "dns": ["192.0.2.53\n[Route]"]}, "dns", "control character"),
        (
            {**STATIC, "gateway": "192.0.2.1\r\nDNS=6.6.6.6", "dns": ["1.1.1.1"]},
            "gateway",
            "control",
        ),
        ({**STATIC, "dns": ["fe80::1%eth0"]}, "dns", "zone id"),
        ({**STATIC, "dns": ["192.0.2.53"], "timeout": 1}, "timeout", "between 5 and 600"),
        ({**STATIC, "dns": ["192.0.2.53"], "timeout": "soon"}, "timeout", "must be a number"),
        ({**STATIC, "dns": "192.0.2.53"}, "dns", "list of strings"),
        ({"mode": "dhcp", "address": "192.0.2.10/24"}, "mode", "DHCP takes no address"),
        ({"mode": "bridge"}, "mode", '"dhcp" or "static"'),
    ],
)
async def test_bad_input_is_refused_before_anything_changes(
    browser: Browser,
    settings: Settings,
    helper: tuple[Path, CommandRecorder],
    body: dict[str, object],
    field: str,
    words: str,
) -> None:
    root, rec = helper
    await admin(browser, settings)
    status, answer = await browser.api("PUT", "/api/v1/network", body)
    assert status == 400, answer
    assert answer["error"]["field"] == field
    assert words in answer["error"]["message"]
    assert "\n" not in answer["error"]["message"]
    assert await read(root, NETWORK) is None
    assert rec.calls == []
    _, shown = await browser.api("GET", "/api/v1/network")
    assert shown["pending"] is None


async def test_change_then_keep_through_the_api(
    browser: Browser, settings: Settings, helper: tuple[Path, CommandRecorder]
) -> None:
    root, rec = helper
    await admin(browser, settings)
    status, answer = await browser.api("PUT", "/api/v1/network", {**STATIC, "dns": ["192.0.2.53"]})
    assert status == 202, answer
    pending = answer["pending"]
    assert pending["summary"] == "network: DHCP -> 192.0.2.10/24 via 192.0.2.1, DNS 192.0.2.53"
    # The web's change waits a moment, so this answer could leave by the old address.
    assert pending["applied"] is False and await read(root, NETWORK) is None
    while (await browser.api("GET", "/api/v1/network"))[1]["pending"]["applied"] is False:
        await asyncio.sleep(0.1)
    assert "Address=192.0.2.10/24" in (await read(root, NETWORK) or "")
    # Another change waits until this one is decided.
    status, answer = await browser.api("PUT", "/api/v1/network/ntp", {"servers": ["192.0.2.123"]})
    assert status == 409 and "another change waits" in answer["error"]["message"]
    status, answer = await browser.api(
        "POST", "/api/v1/network/confirm", {"checkpoint": pending["id"]}
    )
    assert status == 200, answer
    assert answer["settings"]["address"] == "192.0.2.10/24"
    _, shown = await browser.api("GET", "/api/v1/network")
    assert shown["pending"] is None and shown["last"]["outcome"] == "kept"
    status, answer = await browser.api(
        "POST", "/api/v1/network/confirm", {"checkpoint": pending["id"]}
    )
    assert status == 409 and "no such change" in answer["error"]["message"]
    _, audit = await browser.api("GET", "/api/v1/audit")
    events = [e["event"] for e in audit["entries"]]
    assert events.index("network_kept") < events.index("network_changed")
    kept = next(e for e in audit["entries"] if e["event"] == "network_kept")
    assert kept["detail"]["checkpoint"] == pending["id"] and kept["detail"]["via"] == "127.0.0.1"
    assert rec.calls == [["networkctl", "reload"]]


async def test_ntp_change_expires_by_itself(
    browser: Browser, settings: Settings, helper: tuple[Path, CommandRecorder]
) -> None:
    _root, _ = helper
    await admin(browser, settings)
    status, answer = await browser.api(
        "PUT",
        "/api/v1/network/ntp",
        {"servers": ["NTP.example.org"], "timeout": MIN_CONFIRM_SECONDS},
    )
    assert status == 202, answer
    assert answer["pending"]["summary"] == "NTP: the default servers -> ntp.example.org"
    while (await browser.api("GET", "/api/v1/network"))[1]["pending"] is not None:
        await asyncio.sleep(0.2)
    _, shown = await browser.api("GET", "/api/v1/network")
    assert shown["settings"]["ntp"] == []
    assert shown["last"]["outcome"] == "expired"
    status, page, _ = await browser.get("/admin/network")
    assert 'data-outcome="expired"' in page
    assert f"not confirmed within {MIN_CONFIRM_SECONDS} s" in page


async def test_the_page_changes_reverts_and_refuses(
    browser: Browser, settings: Settings, helper: tuple[Path, CommandRecorder]
) -> None:
    root, _ = helper
    await admin(browser, settings)
    status, page, _ = await browser.get("/admin/network")
    assert status == 200 and 'id="network-form"' in page and "network-pending" not in page
    # Refused: shown again with the error, what was typed kept, nothing written.
    bad = {"mode": "static", "address": "192.0.2.10/24", "gateway": "10.9.9.9", "dns": "192.0.2.53"}
    status, page, _ = await browser.post_form("/admin/network", bad)
    assert status == 400
    assert "10.9.9.9 is outside 192.0.2.0/24" in page
    assert 'value="10.9.9.9"' in page and 'aria-invalid="true"' in page
    assert await read(root, NETWORK) is None
    # Accepted: the flash says where to go before anything moves.
    good = {**bad, "gateway": "192.0.2.1"}
    status, _, resp = await browser.post_form("/admin/network", good)
    assert status == 303, resp.headers
    status, page, _ = await browser.get("/admin/network")
    assert "moves to 192.0.2.10 in 2 s" in page
    assert "https://192.0.2.10:" in page and "/admin/network within 120 s" in page
    assert 'id="network-pending"' in page
    checkpoint = re.search(r'name="checkpoint" value="([0-9a-f]+)"', page)
    while checkpoint is None:
        await asyncio.sleep(0.2)
        _, page, _ = await browser.get("/admin/network")
        checkpoint = re.search(r'name="checkpoint" value="([0-9a-f]+)"', page)
    status, _, _ = await browser.post_form("/admin/network/revert", {"checkpoint": checkpoint[1]})
    assert status == 303
    status, page, _ = await browser.get("/admin/network")
    assert "The previous settings are back." in page
    assert 'data-outcome="reverted"' in page
    assert await read(root, NETWORK) is None
    # Keeping what is gone says so on the page, not as an error page.
    status, page, _ = await browser.post_form("/admin/network/keep", {"checkpoint": checkpoint[1]})
    assert status == 409 and "no such change" in page
    # Without the CSRF token nothing is even asked.
    status, _, _ = await browser.post_form("/admin/network", {"mode": "dhcp"}, csrf=False)
    assert status == 403


async def test_racing_changes_one_wins(
    browser: Browser, settings: Settings, helper: tuple[Path, CommandRecorder]
) -> None:
    await admin(browser, settings)
    bodies = [
        {**STATIC, "address": f"192.0.2.{n}/24", "dns": ["192.0.2.53"]} for n in range(10, 16)
    ]
    answers = await asyncio.gather(*(browser.api("PUT", "/api/v1/network", b) for b in bodies))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [202] + [409] * 5, answers
    _, shown = await browser.api("GET", "/api/v1/network")
    (won,) = [body for status, body in answers if status == 202]
    assert shown["pending"]["id"] == won["pending"]["id"]
