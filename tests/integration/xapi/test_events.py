"""The object cache and its event loop against the simulator, including a
stopped pool, a restarted pool and lost events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from xapisim import RunningSimulator, start_simulator
from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.events import Change, ChangeHub, EventWatcher, Subscription, WatchState

WAIT = 20.0


@pytest.fixture
async def watcher(client: XapiClient) -> AsyncIterator[EventWatcher]:
    w = EventWatcher(client, poll_seconds=2.0, backoff_min=0.05, backoff_max=0.2)
    w.start()
    assert await w.wait_synced(WAIT)
    yield w
    await w.stop()


async def next_matching(sub: Subscription, pred: object) -> Change:
    async def scan() -> Change:
        async for change in sub:
            if pred(change):  # type: ignore[operator]
                return change
        raise AssertionError("subscription closed")

    return await asyncio.wait_for(scan(), WAIT)


def vm_named(watcher: EventWatcher, name: str) -> tuple[str, dict[str, object]]:
    found = [(r, v) for r, v in watcher.cache.all("VM").items() if v["name_label"] == name]
    assert len(found) == 1, name
    return found[0]


async def test_cache_is_filled(watcher: EventWatcher, client: XapiClient) -> None:
    assert watcher.state is WatchState.CONNECTED
    assert watcher.cache.count("host") == 2
    assert watcher.cache.count("pool") == 1
    vms = await client.call("VM.get_all_records")
    assert set(watcher.cache.all("VM")) == set(vms)
    assert watcher.cache.count("SR") >= 3


async def test_power_change_and_new_vm_are_seen(watcher: EventWatcher, client: XapiClient) -> None:
    sub = watcher.subscribe()
    try:
        halted = [
            (ref, rec)
            for ref, rec in watcher.cache.all("VM").items()
            if rec["power_state"] == "Halted"
            and not rec["is_a_template"]
            and not rec["is_a_snapshot"]
            and not rec["is_control_domain"]
        ]
        ref, _ = halted[0]
        await client.call("VM.start", ref, False, False)
        change = await next_matching(
            sub, lambda c: c.ref == ref and c.record and c.record["power_state"] == "Running"
        )
        assert change.cls == "vm" and change.operation == "mod"
        assert watcher.cache.get("VM", ref)["power_state"] == "Running"  # type: ignore[index]

        template = next(r for r, v in watcher.cache.all("VM").items() if v["is_a_template"])
        new = await client.call("VM.clone", template, "fresh-from-test")
        change = await next_matching(sub, lambda c: c.ref == new)
        assert change.operation == "add"
        assert vm_named(watcher, "fresh-from-test")[0] == new

        await client.call("VM.destroy", new)
        change = await next_matching(sub, lambda c: c.ref == new and c.operation == "del")
        assert watcher.cache.get("VM", new) is None
    finally:
        sub.close()


async def test_events_lost_leads_to_resync(watcher: EventWatcher, client: XapiClient) -> None:
    before = watcher.resyncs
    sub = watcher.subscribe()
    try:
        await client.call(
            "sim.inject_fault", "fail_call", {"method": "event.from", "error": ["EVENTS_LOST"]}
        )
        # Wake the long poll so the next event.from meets the fault.
        pool = next(iter(watcher.cache.all("pool")))
        await client.call("pool.set_name_description", pool, "poke")
        await next_matching(sub, lambda c: c.operation == "resync")
        assert watcher.resyncs == before + 1
        await client.call("pool.set_name_description", pool, "after the resync")
        await next_matching(
            sub, lambda c: c.record and c.record.get("name_description") == "after the resync"
        )
    finally:
        sub.close()


async def test_stopped_and_restarted_pool_resyncs(
    sim: RunningSimulator, client: XapiClient
) -> None:
    watcher = EventWatcher(client, poll_seconds=1.0, backoff_min=0.05, backoff_max=0.2)
    watcher.start()
    restarted: RunningSimulator | None = None
    try:
        assert await watcher.wait_synced(WAIT)
        sub = watcher.subscribe()
        state, port = sim.state_dir, sim.port
        await sim.close()
        await next_matching(
            sub, lambda c: c.operation == "state" and watcher.state is WatchState.RECONNECTING
        )
        assert "cannot talk to" in watcher.last_error or "did not answer" in watcher.last_error
        resyncs = watcher.resyncs

        restarted = await start_simulator(state, "127.0.0.1", port)
        # Sessions do not survive a restart: the client logs in again and
        # the watcher rebuilds the cache from scratch.
        await next_matching(sub, lambda c: c.operation == "resync")
        assert watcher.resyncs > resyncs
        assert watcher.state is WatchState.CONNECTED
        template = next(r for r, v in watcher.cache.all("VM").items() if v["is_a_template"])
        new = await client.call("VM.clone", template, "after-restart")
        await next_matching(sub, lambda c: c.ref == new)
        assert vm_named(watcher, "after-restart")[0] == new
        sub.close()
    finally:
        await watcher.stop()
        if restarted is not None:
            await restarted.close()


async def test_slow_subscriber_gets_one_resync() -> None:
    hub = ChangeHub()
    sub = hub.subscribe(maxsize=3)
    for i in range(10):
        hub.publish(Change("vm", "mod", f"OpaqueRef:{i}", {}))
    assert (await sub.get()) == Change("*", "resync")
    hub.publish(Change("vm", "mod", "OpaqueRef:x", {}))
    assert (await sub.get()).ref == "OpaqueRef:x"  # type: ignore[union-attr]
    hub.close()
    assert await sub.get() is None
    assert hub.subscribers == 0


async def test_wait_for_a_power_state(watcher: EventWatcher, client: XapiClient) -> None:
    ref, _ = next(
        (r, v)
        for r, v in watcher.cache.all("VM").items()
        if v["power_state"] == "Running" and not v["is_control_domain"]
    )
    waiting = asyncio.create_task(
        watcher.wait_for(
            "VM", ref, lambda rec: rec is not None and rec["power_state"] == "Halted", WAIT
        )
    )
    await asyncio.sleep(0)
    assert not waiting.done()
    await client.call("VM.hard_shutdown", ref)
    record = await waiting
    assert record is not None and record["power_state"] == "Halted"
    # Already true: returns at once; never true: times out.
    assert await watcher.wait_for("VM", ref, lambda rec: rec is not None, WAIT)
    with pytest.raises(TimeoutError):
        await watcher.wait_for("VM", "OpaqueRef:none", lambda rec: rec is not None, 0.2)
    assert watcher.hub.subscribers == 0
