"""Saving a job checks it against the pools as they are now: unknown VM
names, SRs and networks are refused with the field to fix; network names
become uuids."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.backup.conftest import TestVm
from tests.integration.replication.conftest import Sites, default_sr, job_input, sr_named
from xenkeep.errors import NotFoundError, ValidationError


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"selector": "name", "targets": ["rep-test-01", "nope"]}, "targets", "no VM named 'nope'"),
        ({"exclude": ["ghost"]}, "exclude", "no VM to exclude named 'ghost'"),
        ({"target_sr_uuid": "0b4a3f39-8a4e-4c43-9c2b-1f1f1f1f1f1f"}, "target_sr_uuid", "has no SR"),
        ({"target_pool_id": "9"}, "target_pool_id", "no pool 9"),
        (
            {"networks": "no such net = Pool-wide network associated with eth0"},
            "networks",
            "no network",
        ),
        (
            {"networks": {"Pool-wide network associated with eth0": "dmz"}},
            "networks",
            "no network 'dmz'",
        ),
    ],
)
async def test_what_the_pools_do_not_have_is_refused(
    sites: Sites, vm: TestVm, change: dict[str, Any], field: str, words: str
) -> None:
    data = job_input(await default_sr(sites.b), **change)
    with pytest.raises(ValidationError, match=words) as info:
        await sites.manager.create_job(data)
    assert info.value.field == field
    assert await sites.manager.jobs() == []


async def test_an_iso_library_cannot_hold_replicas(sites: Sites, vm: TestVm) -> None:
    # The demo pool has no ISO library: one of its SRs becomes one (no call does that).
    uuid = await sr_named(sites.b, "Local storage")
    pool = sites.sim_b.pool
    pool.db.set("SR", pool.db.by_uuid[uuid], type="iso", content_type="iso")
    with pytest.raises(ValidationError, match="holds no VM disks") as info:
        await sites.manager.create_job(job_input(uuid))
    assert info.value.field == "target_sr_uuid"


async def test_a_source_pool_that_is_not_there_is_a_404(sites: Sites) -> None:
    with pytest.raises(NotFoundError):
        await sites.manager.create_job(job_input(await default_sr(sites.b), pool_id="7"))


async def test_network_names_become_uuids(sites: Sites, vm: TestVm) -> None:
    net = "Pool-wide network associated with eth0"
    job = await sites.manager.create_job(
        job_input(await sr_named(sites.b, "Local storage"), networks=f"{net} = {net}")
    )
    [(source, target)] = job.spec.networks
    uuids_a = {r["uuid"] for r in (await sites.a.call("network.get_all_records")).values()}
    uuids_b = {r["uuid"] for r in (await sites.b.call("network.get_all_records")).values()}
    assert source in uuids_a and target in uuids_b
    # Stored as uuids, read back as such, and the edit keeps them.
    again = await sites.manager.update_job(job.id, {**job.spec.as_dict()})
    assert again.spec.networks == job.spec.networks
