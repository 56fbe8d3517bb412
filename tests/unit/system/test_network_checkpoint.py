"""Network and NTP changes as checkpoints: kept when confirmed, undone by the helper otherwise.

The helper's :class:`Applier` on a root under tmp_path, with the commands it
would run recorded (networkd and timesyncd themselves are exercised in a
network namespace by tests/integration/system/test_network_netns.py). Each
test reads the files as networkd would find them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.support.privhelper import CommandRecorder
from xenkeep.privhelper.applier import Applier
from xenkeep.privhelper.request import parse_request
from xenkeep.system.helper_protocol import MIN_CONFIRM_SECONDS, RequestError

NETWORK = "etc/systemd/network/10-xenkeep.network"
TIMESYNCD = "etc/systemd/timesyncd.conf.d/50-xenkeep.conf"
STATE = "var/lib/xenkeep-privhelper"
STATIC = {"address": "192.0.2.10/24", "gateway": "192.0.2.1", "dns": ["192.0.2.53"]}


async def no_live() -> dict[str, object]:
    return {"interfaces": [], "gateways": [], "dns": []}


def req(op: str, **args: object) -> bytes:
    return json.dumps({"op": op, "args": args}).encode()


class Helper:
    """One helper process's Applier over a root shared by successive "processes"."""

    def __init__(self, root: Path, boot_id: Path) -> None:
        self.root = root
        self.boot_id = boot_id
        self.rec = CommandRecorder()
        self.applier = self.restart()

    def restart(self) -> Applier:
        """A new helper on the same root, as systemd would start after a crash."""
        self.applier = Applier(
            self.root,
            self.rec,
            live=True,
            boot_id=self.boot_id,
            read_live=no_live,
        )
        return self.applier

    async def do(self, op: str, **args: object) -> dict[str, object]:
        result: dict[str, object] = await self.applier.apply(parse_request(req(op, **args)), 1000)
        return result

    def text(self, rel: str) -> str | None:
        path = self.root / rel
        return path.read_text() if path.exists() else None

    async def until(self, done: Callable[[], bool]) -> None:
        """Poll until ``done``: the deadline being tested is the helper's, not ours."""
        while not done():
            await asyncio.sleep(0.1)


@pytest.fixture
async def helper(tmp_path: Path) -> AsyncIterator[Helper]:
    boot_id = tmp_path / "boot_id"
    boot_id.write_text("boot-1\n")
    h = Helper(tmp_path / "root", boot_id)
    try:
        yield h
    finally:
        await h.applier.close(revert_pending=False)


NETWORKCTL = [["networkctl", "reload"]]
TIMESYNCD_RESTART = [["systemctl", "try-restart", "systemd-timesyncd.service"]]


async def test_a_confirmed_change_stays(helper: Helper) -> None:
    pending = (await helper.do("network.static", **STATIC))["pending"]
    assert isinstance(pending, dict)
    assert pending["applied"] is True
    assert 0 < pending["seconds_left"] <= 120
    assert "Address=192.0.2.10/24" in (helper.text(NETWORK) or "")
    assert helper.rec.calls == NETWORKCTL
    shown = await helper.do("network.show")
    assert shown["pending"] == pending | {"seconds_left": shown["pending"]["seconds_left"]}  # type: ignore[index]
    assert shown["settings"] == {
        "mode": "static",
        "address": "192.0.2.10/24",
        "gateway": "192.0.2.1",
        "dns": ["192.0.2.53"],
        "ntp": [],
    }
    kept = await helper.do("network.confirm", checkpoint=pending["id"])
    assert kept["settings"] == shown["settings"]
    shown = await helper.do("network.show")
    assert shown["pending"] is None
    assert shown["last"]["outcome"] == "kept"  # type: ignore[index]
    assert not (helper.root / STATE / "checkpoint.json").exists()
    # Kept means kept: nothing comes back later.
    await asyncio.sleep(0.2)
    assert "Address=192.0.2.10/24" in (helper.text(NETWORK) or "")
    assert helper.rec.calls == NETWORKCTL


async def test_without_confirmation_the_previous_files_come_back(helper: Helper) -> None:
    await helper.do("network.static", **STATIC)
    await helper.do(
        "network.confirm", checkpoint=(await helper.do("network.show"))["pending"]["id"]
    )  # type: ignore[index]
    before = helper.text(NETWORK)
    helper.rec.calls.clear()
    pending = (await helper.do("network.dhcp", timeout=MIN_CONFIRM_SECONDS))["pending"]
    assert helper.text(NETWORK) is None
    await helper.until(lambda: helper.text(NETWORK) is not None)
    assert helper.text(NETWORK) == before  # byte for byte
    shown = await helper.do("network.show")
    assert shown["pending"] is None
    last = shown["last"]
    assert isinstance(last, dict) and isinstance(pending, dict)
    assert last["outcome"] == "expired" and last["id"] == pending["id"]
    assert last["message"] == f"not confirmed within {MIN_CONFIRM_SECONDS} s"
    # Applied, then put back, both told to networkd.
    assert helper.rec.calls == NETWORKCTL * 2
    with pytest.raises(RequestError, match="no such change") as info:
        await helper.do("network.confirm", checkpoint=pending["id"])
    assert info.value.kind == "conflict"


async def test_revert_now_and_ntp(helper: Helper) -> None:
    pending = (await helper.do("ntp.set", servers=["ntp.example.org"]))["pending"]
    assert isinstance(pending, dict)
    assert pending["summary"] == "NTP: the default servers -> ntp.example.org"
    assert "NTP=ntp.example.org" in (helper.text(TIMESYNCD) or "")
    await helper.do("network.revert", checkpoint=pending["id"])
    assert helper.text(TIMESYNCD) is None
    assert helper.rec.calls == TIMESYNCD_RESTART * 2
    last = (await helper.do("network.show"))["last"]
    assert isinstance(last, dict) and last["outcome"] == "reverted"


async def test_one_change_at_a_time_and_nothing_for_nothing(helper: Helper) -> None:
    with pytest.raises(RequestError, match="nothing to change: network: DHCP -> DHCP"):
        await helper.do("network.dhcp")
    pending = (await helper.do("network.static", **STATIC))["pending"]
    for op, args in [("ntp.set", {"servers": ["192.0.2.123"]}), ("network.dhcp", {})]:
        with pytest.raises(RequestError, match="another change waits") as info:
            await helper.do(op, **args)
        assert info.value.kind == "conflict"
    with pytest.raises(RequestError, match="no such change"):
        await helper.do("network.confirm", checkpoint="0" * 16)
    assert isinstance(pending, dict)
    await helper.do("network.revert", checkpoint=pending["id"])
    assert helper.text(NETWORK) is None


async def test_a_delayed_change_is_applied_after_the_answer(helper: Helper) -> None:
    pending = (await helper.do("network.static", **STATIC, delay=0.5))["pending"]
    assert isinstance(pending, dict)
    # The answer came first: nothing changed yet, and it cannot be kept yet.
    assert pending["applied"] is False and helper.text(NETWORK) is None
    with pytest.raises(RequestError, match="still being applied"):
        await helper.do("network.confirm", checkpoint=pending["id"])
    await helper.until(lambda: helper.text(NETWORK) is not None)
    await helper.until(lambda: len(helper.rec.calls) == len(NETWORKCTL))
    await helper.do("network.confirm", checkpoint=pending["id"])
    assert helper.rec.calls == NETWORKCTL


async def test_reverted_before_it_was_applied(helper: Helper) -> None:
    pending = (await helper.do("network.static", **STATIC, delay=0.5))["pending"]
    assert isinstance(pending, dict)
    await helper.do("network.revert", checkpoint=pending["id"])
    await asyncio.sleep(0.8)
    assert helper.text(NETWORK) is None
    # Putting back a file that never changed still tells networkd (harmless);
    # the delayed apply never ran.
    assert helper.rec.calls == NETWORKCTL


async def test_a_change_that_fails_to_apply_is_undone(helper: Helper) -> None:
    helper.rec.fail = ("networkctl", "reload")
    with pytest.raises(RuntimeError, match="networkctl failed"):
        await helper.do("network.static", **STATIC)
    assert helper.text(NETWORK) is None
    shown = await helper.do("network.show")
    assert shown["pending"] is None
    assert shown["last"]["outcome"] == "failed"  # type: ignore[index]
    assert "networkctl failed" in shown["last"]["message"]  # type: ignore[index]
    helper.rec.fail = ()
    # Nothing is left pending: the next change is accepted.
    await helper.do("network.static", **STATIC)


async def test_a_new_helper_keeps_the_deadline(helper: Helper) -> None:
    """The helper killed mid-window (SIGKILL: no clean-up), started again: the
    deadline it persisted still runs out, and the change goes back."""
    pending = (await helper.do("network.static", **STATIC, timeout=MIN_CONFIRM_SECONDS))["pending"]
    assert isinstance(pending, dict)
    await helper.applier.close(revert_pending=False)  # its timers die with it
    second = helper.restart()
    await second.start()
    resumed = (await helper.do("network.show"))["pending"]
    assert isinstance(resumed, dict) and resumed["id"] == pending["id"]
    assert resumed["seconds_left"] <= pending["seconds_left"]
    await helper.until(lambda: helper.text(NETWORK) is None)
    last = (await helper.do("network.show"))["last"]
    assert isinstance(last, dict) and last["outcome"] == "expired"


async def test_a_confirmation_reaches_a_new_helper(helper: Helper) -> None:
    pending = (await helper.do("network.static", **STATIC))["pending"]
    assert isinstance(pending, dict)
    await helper.applier.close(revert_pending=False)
    await helper.restart().start()
    await helper.do("network.confirm", checkpoint=pending["id"])
    assert helper.text(NETWORK) is not None


async def test_a_stopping_helper_reverts_first(helper: Helper) -> None:
    await helper.do("network.static", **STATIC)
    await helper.applier.close(revert_pending=True)
    assert helper.text(NETWORK) is None
    last = (await helper.restart().checkpoints.show())["last"]
    assert last["outcome"] == "reverted"
    assert last["message"] == "the helper stopped before it was confirmed"


async def test_after_a_reboot_the_change_is_reverted_before_networkd(helper: Helper) -> None:
    """xenkeep-network-checkpoint.service at boot: another boot id, files put back."""
    (helper.root / "etc/systemd/network").mkdir(parents=True)
    hand_made = "[Match]\nName=en*\n\n[Network]\nAddress=192.0.2.99/24\nVLAN=x\n"
    (helper.root / NETWORK).write_text(hand_made)
    pending = (await helper.do("network.static", **STATIC))["pending"]
    assert isinstance(pending, dict)
    await helper.applier.close(revert_pending=False)
    # The same boot: nothing to do at "boot".
    assert await helper.restart().checkpoints.revert_stale() is False
    helper.boot_id.write_text("boot-2\n")
    booting = Applier(helper.root, helper.rec, live=False, boot_id=helper.boot_id)
    helper.rec.calls.clear()
    assert await booting.checkpoints.revert_stale() is True
    assert helper.text(NETWORK) == hand_made  # a hand-edited file comes back as it was
    assert helper.rec.calls == []  # nothing runs yet at that point of the boot
    last = (await booting.checkpoints.show())["last"]
    assert last["outcome"] == "expired"
    assert last["message"] == "the appliance restarted before it was confirmed"


async def test_a_hand_edited_file_is_shown_as_such(helper: Helper) -> None:
    (helper.root / "etc/systemd/network").mkdir(parents=True)
    (helper.root / NETWORK).write_text("[Network]\nAddress=192.0.2.99/24\nBond=x\\\n")
    shown = await helper.do("network.show")
    assert shown["hand_edited"] == ["/etc/systemd/network/10-xenkeep.network"]
    # Replacing it with DHCP is a change, though DHCP is what it reads as.
    pending = (await helper.do("network.dhcp"))["pending"]
    assert isinstance(pending, dict) and helper.text(NETWORK) is None
    await helper.do("network.revert", checkpoint=pending["id"])
    assert helper.text(NETWORK) == "[Network]\nAddress=192.0.2.99/24\nBond=x\\\n"


async def test_first_boot_seeds_write_without_a_checkpoint(tmp_path: Path) -> None:
    rec = CommandRecorder()
    applier = Applier(tmp_path, rec, live=True)
    parsed = parse_request(req("network.static", **STATIC)).network
    await applier.seed(parsed, ("ntp.example.org",))
    assert "Address=192.0.2.10/24" in (tmp_path / NETWORK).read_text()
    assert "NTP=ntp.example.org" in (tmp_path / TIMESYNCD).read_text()
    assert not (tmp_path / STATE).exists()
    # networkd has not started; timesyncd may have: its restart is queued only.
    assert rec.calls == [["systemctl", "try-restart", "--no-block", "systemd-timesyncd.service"]]
