"""Quota arithmetic and race-free reservations on a real SQLite database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from xenkeep.selfservice.sets import Amounts, QuotaExceededError, ResourceSets, over
from xenkeep.store import Database, open_database

GiB = 1 << 30


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database(tmp_path / "x.db")
    await database.insert(
        "INSERT INTO users (username, role, created_at) VALUES ('ann', 'user', 0)"
    )
    await database.insert("INSERT INTO groups (name, created_at) VALUES ('devs', 0)")
    await database.insert(
        "INSERT INTO users (username, role, created_at) VALUES ('bob', 'user', 0)"
    )
    await database.insert(
        "INSERT INTO group_members (group_id, user_id, added_at) VALUES (1, 2, 0)"
    )
    yield database
    await database.close()


def test_over_names_each_limit_with_numbers() -> None:
    limits = {"cpus": 4, "memory": 4 * GiB}
    assert over(limits, Amounts(cpus=2), Amounts(cpus=2, memory=GiB)) == []
    words = over(limits, Amounts(cpus=3, memory=3 * GiB), Amounts(cpus=2, memory=2 * GiB))
    assert words == [
        "cpus: 3 used + 2 asked > 4 allowed",
        f"memory: {3 * GiB} used + {2 * GiB} asked > {4 * GiB} allowed",
    ]


async def test_sets_of_users_directly_and_through_groups(db: Database) -> None:
    sets = ResourceSets(db)
    made = await sets.save(
        name="team",
        limits={"vms": 2},
        subjects=["user:1", "group:1"],
        objects={"template": ["t1"], "sr": ["s1"], "network": ["n1"]},
    )
    assert made.allows("sr", "s1") and not made.allows("sr", "s2")
    assert [s.name for s in await sets.of_user(1)] == ["team"]
    assert [s.name for s in await sets.of_user(2)] == ["team"]
    await db.execute("DELETE FROM group_members")
    assert await sets.of_user(2) == []


async def test_concurrent_reservations_never_pass_the_limit(db: Database) -> None:
    sets = ResourceSets(db)
    team = await sets.save(name="team", limits={"cpus": 10, "vms": 100}, subjects=["user:1"])
    need = Amounts(cpus=3, memory=GiB, disk=GiB, disks=1, vms=1)

    async def one(i: int) -> int | None:
        try:
            return await sets.reserve(team.id, user_id=1, pool_id=1, name=f"v{i}", need=need)
        except QuotaExceededError:
            return None

    got = await asyncio.gather(*(one(i) for i in range(20)))
    assert sum(g is not None for g in got) == 3
    assert (await sets.usage(team.id)).cpus == 9
    with pytest.raises(QuotaExceededError, match="cpus: 9 used \\+ 3 asked > 10 allowed"):
        await sets.reserve(team.id, user_id=1, pool_id=1, name="x", need=need)
    first = next(g for g in got if g is not None)
    await sets.release(first)
    assert (await sets.usage(team.id)).cpus == 6


async def test_live_records_count_over_the_charge(db: Database) -> None:
    live = {"u1": Amounts(cpus=4, memory=2 * GiB, disk=20 * GiB, disks=2, vms=1)}
    sets = ResourceSets(db, lambda _pool, uuid, _snaps: live.get(uuid))
    team = await sets.save(name="team", limits={"disk": 30 * GiB}, subjects=["user:1"])
    a = await sets.reserve(
        team.id, user_id=1, pool_id=1, name="v", need=Amounts(1, GiB, 10 * GiB, 1, 1)
    )
    await sets.activate(a, "u1")
    # The VM's disk grew to 20 GiB since (a resize, an added disk): it counts.
    assert (await sets.usage(team.id)).disk == 20 * GiB
    with pytest.raises(QuotaExceededError, match="disk"):
        await sets.reserve(
            team.id, user_id=1, pool_id=1, name="w", need=Amounts(1, GiB, 11 * GiB, 1, 1)
        )
    await sets.release_vm("u1")
    assert await sets.usage(team.id) == Amounts()
