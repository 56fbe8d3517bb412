"""The operations service on a real SQLite file: every kind across a restart,
claims that refuse with words and cannot be raced, progress with speed/ETA,
cancel of blocking work in a thread, one scheduler loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from enum import StrEnum
from pathlib import Path

import pytest

from xenkeep.errors import ConflictError
from xenkeep.ops import Claim, OperationContext, OperationKind, Operations, OpKind, OpStatus
from xenkeep.ops.context import Rate, ThreadWork
from xenkeep.ops.manager import Outcome
from xenkeep.ops.scheduler import Scheduler
from xenkeep.store import Database, open_database


class Step(StrEnum):
    ONE = "one"
    TWO = "two"


KINDS = {k: OperationKind(k, k.value.replace("-", " "), Step) for k in OpKind}


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database(tmp_path / "ops.db")
    yield database
    await database.close()


@pytest.fixture
async def ops(db: Database) -> AsyncIterator[Operations]:
    service = Operations(db)
    await service.start_up()
    yield service
    await service.stop()


def blocked(started: asyncio.Event, release: asyncio.Event) -> object:
    async def work(ctx: OperationContext) -> Outcome:
        await ctx.stage(Step.TWO)
        await ctx.log(f"working on {ctx.kind}")
        await ctx.progress(10, 100, force=True)
        started.set()
        await release.wait()
        return Outcome(report={"done": True})

    return work


async def test_every_kind_cut_by_a_restart_is_interrupted_with_its_log(
    tmp_path: Path, db: Database, ops: Operations
) -> None:
    release = asyncio.Event()
    ids = {}
    for kind, definition in KINDS.items():
        started = asyncio.Event()
        ids[kind] = await ops.start(
            definition,
            blocked(started, release),  # type: ignore[arg-type]
            target=f"t:{kind}",
            title=kind.value,
            action=f"start {kind}",
        )
        await started.wait()
    # The daemon is killed: a new one opens the same file and starts up.
    second = await open_database(tmp_path / "ops.db")
    try:
        after = Operations(second)
        assert sorted(await after.start_up()) == sorted(ids.values())
        for kind, op_id in ids.items():
            detail = await after.detail(op_id)
            assert (detail["kind"], detail["status"]) == (kind.value, "interrupted")
            assert (detail["stage"], detail["bytes"], detail["total_bytes"]) == ("two", 10, 100)
            messages = [line["message"] for line in detail["log"]]
            assert messages[0] == f"working on {kind.value}"
            assert messages[-1].startswith("the daemon stopped during this operation")
            assert detail["speed"] == 0 and detail["eta"] is None
    finally:
        await second.close()


async def test_a_work_that_fails_or_is_cancelled_says_so(ops: Operations) -> None:
    async def fails(ctx: OperationContext) -> Outcome:
        raise ConflictError("the pool refused", hint="try later")

    op = await ops.wait(
        await ops.start(KINDS[OpKind.VERIFY], fails, target="x", title="x", action="x")
    )
    assert (op["status"], op["error"]) == ("failed", "the pool refused — try later")
    assert op["report"]["status"] == "failed" and op["finished_at"] >= op["started_at"]

    started, release = asyncio.Event(), asyncio.Event()
    op_id = await ops.start(
        KINDS[OpKind.BACKUP],
        blocked(started, release),  # type: ignore[arg-type]
        target="y",
        title="y",
        action="y",
    )
    await started.wait()
    await ops.cancel(op_id)
    op = await ops.wait(op_id)
    assert (op["status"], op["error"]) == ("cancelled", "cancelled")
    with pytest.raises(ConflictError, match="already finished"):
        await ops.cancel(op_id)


async def test_a_stage_must_be_one_of_the_kinds(ops: Operations) -> None:
    class Other(StrEnum):
        X = "x"

    async def wrong(ctx: OperationContext) -> Outcome:
        await ctx.stage(Other.X)
        return Outcome()

    op = await ops.wait(
        await ops.start(KINDS[OpKind.VERIFY], wrong, target="", title="", action="")
    )
    assert op["status"] == "failed" and "is not a stage of verify" in op["error"]


async def test_claims_refuse_with_words_and_cannot_be_raced(ops: Operations) -> None:
    release = asyncio.Event()
    storage_reader = Claim.shared("storage")
    storage_changer = Claim.sole("storage", "nothing changes the storage while it is read")
    one_per_job = Claim.sole("job:1", "one run per job")

    async def start(kind: OpKind, *claims: Claim) -> int:
        return await ops.start(
            KINDS[kind],
            blocked(asyncio.Event(), release),  # type: ignore[arg-type]
            target="job:1",
            title="nightly",
            action=f"start {kind}",
            claims=claims,
        )

    # Ten requests racing for one job: exactly one gets it.
    results = await asyncio.gather(
        *(start(OpKind.BACKUP, one_per_job, storage_reader) for _ in range(10)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, int)]
    refusals = [r for r in results if isinstance(r, ConflictError)]
    assert len(winners) == 1 and len(refusals) == 9
    assert str(refusals[0]) == (
        f"cannot start backup while a backup runs (backup {winners[0]} (nightly)) — one run per job"
    )
    # Readers share the storage; a change waits for none of them but is refused.
    reader = await start(OpKind.VERIFY, storage_reader)
    with pytest.raises(ConflictError, match="nothing changes the storage while it is read"):
        await start(OpKind.DISK_FORMAT, storage_changer)
    with pytest.raises(ConflictError, match="while a backup runs"):
        async with ops.holding([storage_changer], action="swap the storage"):
            pass
    assert ops.running(target="job:1") == sorted([winners[0], reader])
    release.set()
    for op_id in (winners[0], reader):
        assert (await ops.wait(op_id))["status"] == "success"
    # Released: now the change goes through, and blocks readers meanwhile.
    async with ops.holding([storage_changer], action="swap the storage"):
        with pytest.raises(ConflictError, match=r"while a change runs .*swap the storage"):
            await start(OpKind.RESTORE, storage_reader)
    assert ops.running() == []


async def test_work_takes_claims_as_it_learns_what_it_touches(ops: Operations) -> None:
    """A run selects its VMs inside its work: it claims them then, under the
    same rules, and gives them back when done or when it ends."""
    reads_vm = Claim.shared("vm:u1")
    overwrites_vm = Claim.sole("vm:u1", "nothing reads a VM while it is overwritten")
    took = asyncio.Event()
    release = asyncio.Event()
    seen: list[str] = []

    async def reader(ctx: OperationContext) -> Outcome:
        ctx.claim([reads_vm], "back up web-01")
        took.set()
        await release.wait()
        return Outcome()

    async def overwriter(ctx: OperationContext) -> Outcome:
        try:
            ctx.claim([overwrites_vm], "fail back web-01")
        except ConflictError as exc:
            seen.append(str(exc))
            return Outcome(status=OpStatus.FAILED, error=str(exc))
        ctx.release([overwrites_vm])
        return Outcome()

    async def start(kind: OpKind, work: object) -> int:
        return await ops.start(KINDS[kind], work, target="t", title=kind.value, action="x")  # type: ignore[arg-type]

    first = await start(OpKind.BACKUP, reader)
    await took.wait()
    assert (await ops.wait(await start(OpKind.FAILBACK, overwriter)))["status"] == "failed"
    assert seen == [
        f"cannot fail back web-01 while a backup runs (backup {first} (backup)) — "
        "nothing reads a VM while it is overwritten"
    ]
    release.set()
    await ops.wait(first)
    # Given back with the operation: now the overwrite goes through.
    assert (await ops.wait(await start(OpKind.FAILBACK, overwriter)))["status"] == "success"


async def test_blocking_work_in_a_thread_reports_progress_and_stops_on_cancel(
    ops: Operations,
) -> None:
    entered, stopped = threading.Event(), threading.Event()

    def read(work: ThreadWork) -> int:
        entered.set()
        try:
            while True:
                work.advance(1 << 20)
                threading.Event().wait(0.01)
        finally:
            stopped.set()

    async def work(ctx: OperationContext) -> Outcome:
        await ctx.in_thread(read, total=1 << 40, every=0.05)
        return Outcome()

    op_id = await ops.start(KINDS[OpKind.VERIFY], work, target="", title="", action="")
    for _ in range(200):
        op = await ops.get(op_id)
        if op["bytes"] >= 4 << 20:
            break
        await asyncio.sleep(0.05)
    assert op["bytes"] >= 4 << 20 and op["total_bytes"] == 1 << 40, op
    assert op["speed"] > 0 and op["eta"] is not None, op
    await ops.cancel(op_id)
    op = await ops.wait(op_id)
    # The thread was asked to stop and did, before the operation ended.
    assert stopped.is_set() and op["status"] == "cancelled"


def test_rate_measures_speed_and_eta_over_a_window() -> None:
    now = [100.0]
    rate = Rate(lambda: now[0])
    assert rate.sample(0, 1000) == (0.0, None)
    now[0] += 2
    speed, eta = rate.sample(200, 1000)
    assert (speed, eta) == (100.0, 8.0)
    # Older samples leave the window: a stall shows as a falling speed.
    now[0] += 10
    speed, _ = rate.sample(300, 1000)
    now[0] += 1
    speed, eta = rate.sample(300, 1000)
    assert speed == 0.0 and eta is None


async def test_one_scheduler_loop_runs_every_source() -> None:
    now = [1000.0]
    sched = Scheduler(lambda: now[0])
    seen: list[tuple[str, float]] = []

    async def jobs(t: float) -> float:
        seen.append(("jobs", t))
        return 5.0

    async def broken(t: float) -> float:
        raise RuntimeError("a source that fails does not stop the others")

    async def verify(t: float) -> float:
        seen.append(("verify", t))
        return 120.0

    sched.register("jobs", jobs)
    sched.register("broken", broken)
    sched.register("verify", verify)
    with pytest.raises(ValueError, match="twice"):
        sched.register("jobs", jobs)
    assert await sched.tick() == 5.0
    assert seen == [("jobs", 1000.0), ("verify", 1000.0)]


async def test_every_kind_can_end_with_warnings(ops: Operations) -> None:
    """A work done with something to look at ends as a warning, its first
    warnings as its error line and all of them in its report."""

    async def leaves_things(ctx: OperationContext) -> Outcome:
        return Outcome(report={"n": 1}, warnings=[f"left {i}" for i in range(5)])

    for kind in (OpKind.VERIFY, OpKind.DIAGNOSTICS):
        op = await ops.wait(
            await ops.start(KINDS[kind], leaves_things, target="w", title="w", action="w")
        )
        assert op["status"] == "warning", op
        assert op["error"] == "left 0; left 1; left 2; and 2 more"
        assert op["report"]["warnings"] == [f"left {i}" for i in range(5)]
        assert op["report"]["status"] == "warning" and op["report"]["n"] == 1


async def test_a_summary_agrees_with_its_parts(ops: Operations) -> None:
    """Whatever the work wrote: no sub-task is left running once it ended,
    a failure names a cause, the bytes are what the sub-tasks moved, and
    sub-tasks read under their parent."""

    async def sloppy(ctx: OperationContext) -> Outcome:
        vm_a = await ctx.task(subject="a", name="vm-a", stage="export")
        vm_b = await ctx.task(subject="b", name="vm-b", stage="export")
        disk_b = await ctx.task(subject="b", name="vm-b", stage="export", parent_id=vm_b, part="0")
        disk_a = await ctx.task(subject="a", name="vm-a", stage="export", parent_id=vm_a, part="0")
        await ctx.update_task(disk_a, bytes=3 * 1024, status="failed", error="the pool refused")
        await ctx.update_task(disk_b, bytes=5 * 1024)
        await ctx.progress(0, force=True)
        return Outcome(status=OpStatus.FAILED)  # no error given

    op_id = await ops.start(KINDS[OpKind.BACKUP], sloppy, target="s", title="s", action="s")
    await ops.wait(op_id)
    detail = await ops.detail(op_id)
    assert detail["status"] == "failed"
    assert detail["error"] == "vm-a 0: the pool refused", detail["error"]
    assert detail["bytes"] == 8 * 1024
    order = [(t["name"], t["part"], t["depth"]) for t in detail["tasks"]]
    assert order == [("vm-a", None, 0), ("vm-a", "0", 1), ("vm-b", None, 0), ("vm-b", "0", 1)]
    statuses = {(t["name"], t["part"]): (t["status"], t["error"]) for t in detail["tasks"]}
    assert statuses[("vm-a", "0")] == ("failed", "the pool refused")
    # Left running by the work: closed as the operation ended.
    assert statuses[("vm-b", "0")] == ("failed", "vm-a 0: the pool refused")
    assert all(t["status"] != "running" for t in detail["tasks"])
