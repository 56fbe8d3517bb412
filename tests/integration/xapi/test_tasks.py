"""Tasks on the simulator: results, failures, progress and cancellation."""

from __future__ import annotations

import asyncio

import pytest

from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import TaskCancelledError, TaskFailedError
from xenkeep.xapi.tasks import cancel_task, create_task, run_async, wait_task


async def a_vm(client: XapiClient) -> str:
    for ref, rec in (await client.call("VM.get_all_records")).items():
        if not (rec["is_a_template"] or rec["is_a_snapshot"] or rec["is_control_domain"]):
            return str(ref)
    raise AssertionError("no VM")


async def test_async_snapshot_returns_the_new_ref(client: XapiClient) -> None:
    vm = await a_vm(client)
    snap = await run_async(client, "VM.snapshot", vm, "task-snap", poll_seconds=0.05)
    assert snap.startswith("OpaqueRef:")
    assert await client.call("VM.get_is_a_snapshot", snap) is True
    # The finished task was cleaned up on the pool.
    tasks = await client.call("task.get_all_records")
    assert not any(t["name_label"] == "Async.VM.snapshot" for t in tasks.values())


async def test_failed_task_raises_its_error(client: XapiClient) -> None:
    vm = await a_vm(client)
    await client.call(
        "sim.inject_fault", "fail_call", {"method": "VM.snapshot", "error": ["SR_FULL", "5", "0"]}
    )
    with pytest.raises(TaskFailedError) as info:
        await run_async(client, "VM.snapshot", vm, "x", poll_seconds=0.05)
    assert info.value.description == ["SR_FULL", "5", "0"]


async def test_progress_is_reported(client: XapiClient) -> None:
    vm = await a_vm(client)
    await client.call("sim.inject_fault", "delay_call", {"method": "VM.snapshot", "seconds": 1.0})
    seen: list[float] = []
    await run_async(client, "VM.snapshot", vm, "slow", on_progress=seen.append, poll_seconds=0.05)
    assert seen[-1] == 1.0
    assert any(0 < p < 1 for p in seen)
    assert seen == sorted(seen)


async def test_cancelling_the_waiter_cancels_the_task(client: XapiClient) -> None:
    vm = await a_vm(client)
    await client.call("sim.inject_fault", "delay_call", {"method": "VM.snapshot", "seconds": 30})
    started = asyncio.Event()

    async def note(progress: float) -> None:
        started.set()

    waiter = asyncio.create_task(
        run_async(client, "VM.snapshot", vm, "never", on_progress=note, poll_seconds=0.05)
    )
    await asyncio.wait_for(started.wait(), 20)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    snaps = await client.call("VM.get_by_name_label", "never")
    assert snaps == []


async def test_cancel_a_created_task(client: XapiClient) -> None:
    task = await create_task(client, "transfer", "test")
    await cancel_task(client, task)
    await client.call("task.set_status", task, "cancelled")
    with pytest.raises(TaskCancelledError):
        await wait_task(client, task, poll_seconds=0.05)
    # Cancelling a finished task is harmless.
    await cancel_task(client, task)
