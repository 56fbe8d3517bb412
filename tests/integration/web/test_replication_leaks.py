"""Replication jobs are grantable objects: a viewer of pool A sees pool A's
replication job, its replica and its runs, and nothing of pool B's job —
not in the lists, the pages, the operations, nor the dashboard; a person
given a role on one replication job directly (through the grants API, as
an administrator would) sees and does exactly that job's part.

Real runs copy a VM each way between two simulated pools (job A reads pool
A and writes to pool B, job B the other way), so every list has something
to hide and every replica really exists.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.integration.backup.conftest import TestVm, make_vm
from tests.integration.replication.conftest import default_sr
from tests.support.people import World, user_with_grant, world
from tests.support.web import Browser
from xenkeep.auth.permissions import ObjectRole
from xenkeep.xapi.client import XapiClient

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Job:
    """A replication job as the scene made it, with what it produced."""

    id: int
    name: str
    vm: TestVm
    vm_name: str
    run_id: int
    replica_id: int


@dataclass
class Scene:
    world: World
    a: Job
    b: Job
    #: A viewer of pool A; an operator given replication job B directly.
    paula: Browser
    jon: Browser


def secrets_of(job: Job) -> list[str]:
    """What tells a job apart in any answer: its name, its VM's name and uuid."""
    return [job.name, job.vm_name, job.vm.uuid]


async def _job(
    admin: Browser, name: str, source: str, target: str, sr: str, vm: TestVm, vm_name: str
) -> Job:
    status, job = await admin.api(
        "POST",
        "/api/v1/replication/jobs",
        {
            "name": name,
            "selector": "name",
            "targets": [vm_name],
            "pool_id": source,
            "target_pool_id": target,
            "target_sr_uuid": sr,
            "schedule": "",
            "retention": 2,
        },
    )
    assert status == 201, job
    status, started = await admin.api("POST", f"/api/v1/replication/jobs/{job['id']}/run")
    assert status == 202, started
    run = await admin.until_finished(f"/api/v1/operations/{started['operation_id']}")
    assert run["status"] == "success", run["error"]
    _, listed = await admin.api("GET", f"/api/v1/replication/replicas?job_id={job['id']}")
    [replica] = listed["replicas"]
    return Job(int(job["id"]), name, vm, vm_name, int(run["id"]), int(replica["id"]))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def scene(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scene]:
    tmp: Path = tmp_path_factory.mktemp("replication-leaks")
    async with world(tmp) as w:
        clients = [XapiClient(p.sim.url, "root", "demo", timeout=30) for p in (w.a, w.b)]
        try:
            vm_a = await make_vm(clients[0], w.a.sim, "alpha-web")
            vm_b = await make_vm(clients[1], w.b.sim, "bravo-db", seed=8)
            pool_a, pool_b = str(w.a.pool.id), str(w.b.pool.id)
            sr_a, sr_b = await default_sr(clients[0]), await default_sr(clients[1])
            job_a = await _job(w.admin, "dr-alpha", pool_a, pool_b, sr_b, vm_a, "alpha-web")
            job_b = await _job(w.admin, "dr-bravo", pool_b, pool_a, sr_a, vm_b, "bravo-db")
            await user_with_grant(w.server, "paula", (w.a.ref, ObjectRole.VIEWER))
            jon_id = await user_with_grant(w.server, "jon")
            # Given as an administrator gives it: the grant form's object value.
            status, _ = await w.admin.api(
                "POST",
                "/api/v1/grants",
                {
                    "subject": f"user:{jon_id}",
                    "object": f"replication-job:{job_b.id}",
                    "role": "operator",
                },
            )
            assert status == 201
            yield Scene(w, job_a, job_b, await w.browser("paula"), await w.browser("jon"))
        finally:
            for client in clients:
                await client.close()


async def text_of(b: Browser, path: str) -> tuple[int, str]:
    async with b.session.get(b.url(path), allow_redirects=False) as resp:
        return resp.status, await resp.text()


LISTS = [
    "/",
    "/replication",
    "/operations",
    "/api/v1/replication/jobs",
    "/api/v1/replication/replicas",
    "/api/v1/replication/runs",
    "/api/v1/operations",
]


@pytest.mark.parametrize("path", LISTS)
async def test_a_viewer_of_pool_a_sees_only_pool_as_replication(scene: Scene, path: str) -> None:
    status, text = await text_of(scene.paula, path)
    assert status == 200, text[:300]
    for secret in secrets_of(scene.b):
        assert secret not in text, f"{path} shows {secret!r} to a viewer of pool A"
    if path != "/":
        assert scene.a.name in text or scene.a.vm_name in text, f"{path} hides job A: {text[:300]}"


@pytest.mark.parametrize("path", LISTS)
async def test_a_grant_on_one_job_shows_that_job_only(scene: Scene, path: str) -> None:
    status, text = await text_of(scene.jon, path)
    assert status == 200, text[:300]
    for secret in secrets_of(scene.a):
        assert secret not in text, f"{path} shows {secret!r} to an operator of job B"


async def test_the_lists_hold_exactly_what_each_may_see(scene: Scene) -> None:
    a, b = scene.a, scene.b
    for who, job in ((scene.paula, a), (scene.jon, b)):
        _, jobs = await who.api("GET", "/api/v1/replication/jobs")
        assert [j["id"] for j in jobs["jobs"]] == [job.id]
        _, replicas = await who.api("GET", "/api/v1/replication/replicas")
        assert [r["id"] for r in replicas["replicas"]] == [job.replica_id]
        _, runs = await who.api("GET", "/api/v1/replication/runs")
        assert [r["id"] for r in runs["runs"]] == [job.run_id]
        _, ops = await who.api("GET", "/api/v1/operations?kind=replication")
        assert [o["id"] for o in ops["operations"]] == [job.run_id]
    # The super-administrator sees both.
    _, jobs = await scene.world.admin.api("GET", "/api/v1/replication/jobs")
    assert {j["id"] for j in jobs["jobs"]} == {a.id, b.id}


def _paths_of(job: Job) -> list[str]:
    return [
        f"/replication/jobs/{job.id}",
        f"/api/v1/replication/jobs/{job.id}",
        f"/api/v1/replication/replicas/{job.replica_id}",
        f"/api/v1/replication/replicas/{job.replica_id}/points",
        f"/operations/{job.run_id}",
        f"/api/v1/operations/{job.run_id}",
        f"/api/v1/operations/{job.run_id}/events",
    ]


async def test_each_sees_their_jobs_pages_and_is_refused_the_others(scene: Scene) -> None:
    for who, mine, other in ((scene.paula, scene.a, scene.b), (scene.jon, scene.b, scene.a)):
        for path in _paths_of(mine):
            if path.endswith("/events"):
                continue  # a finished operation's stream: read below
            status, text = await text_of(who, path)
            assert status == 200, (path, text[:300])
        for path in _paths_of(other):
            status, text = await text_of(who, path)
            assert status == 403, (path, status)
            for secret in secrets_of(other):
                assert secret not in text, f"the refusal of {path} tells {secret!r}"
    frames = await scene.jon.events(f"/api/v1/operations/{scene.b.run_id}/events", "operation")
    assert frames and frames[-1]["status"] == "success"


async def test_what_each_may_do_is_their_roles(scene: Scene) -> None:
    paula, jon, a, b = scene.paula, scene.jon, scene.a, scene.b
    # A viewer may not run, start a replica or change the job.
    status, _ = await paula.api("POST", f"/api/v1/replication/jobs/{a.id}/run")
    assert status == 403
    status, _ = await paula.api("POST", f"/api/v1/replication/replicas/{a.replica_id}/start")
    assert status == 403
    # The job's operator runs it now (the run is seen, and only by them and
    # pool B's viewers), but may neither change it nor fail over.
    status, started = await jon.api("POST", f"/api/v1/replication/jobs/{b.id}/run")
    assert status == 202, started
    run = await jon.until_finished(f"/api/v1/operations/{started['operation_id']}")
    assert run["status"] == "success", run["error"]
    status, _ = await text_of(paula, f"/operations/{run['id']}")
    assert status == 403
    # Who ran it is kept, as for a backup job's run.
    _, log = await scene.world.admin.api("GET", "/api/v1/audit?limit=50")
    assert any(
        e["event"] == "replication_run_started"
        and e["username"] == "jon"
        and e["detail"] == {"job": b.id, "operation": run["id"]}
        for e in log["entries"]
    ), log["entries"][:5]
    status, _ = await jon.api("POST", f"/api/v1/replication/jobs/{a.id}/run")
    assert status == 403
    for method, path in (
        ("DELETE", f"/api/v1/replication/jobs/{b.id}"),
        ("POST", f"/api/v1/replication/replicas/{b.replica_id}/start"),
        ("POST", f"/api/v1/replication/replicas/{b.replica_id}/failback"),
        ("DELETE", f"/api/v1/replication/replicas/{b.replica_id}"),
    ):
        status, body = await jon.api(method, path, {})
        assert status == 403, (method, path, body)
    # The page offers what they may do, no more.
    _, page = await text_of(jon, f"/replication/jobs/{b.id}")
    assert "run-now" in page and "Delete the job" not in page and "start-replica" not in page
    _, page = await text_of(paula, f"/replication/jobs/{a.id}")
    assert "run-now" not in page and "start-replica" not in page


async def test_the_grant_picker_offers_replication_jobs(scene: Scene) -> None:
    status, body = await scene.world.admin.api("GET", "/api/v1/grants/objects")
    assert status == 200
    [group] = [g for g in body["groups"] if g["label"] == "Replication jobs"]
    assert {o["object"] for o in group["objects"]} == {
        f"replication-job:{scene.a.id}",
        f"replication-job:{scene.b.id}",
    }
    assert any(o["name"].startswith("dr-alpha (pool ") for o in group["objects"])
    status, page = await text_of(scene.world.admin, "/admin/grants")
    assert status == 200
    assert f'value="replication-job:{scene.b.id}"' in page and "dr-bravo" in page


def _ids(body: dict[str, Any], key: str) -> list[int]:
    return [int(x["id"]) for x in body[key]]


async def test_a_deleted_job_takes_its_grants_and_leaves_its_replica_to_its_pool(
    scene: Scene,
) -> None:
    # Last: it deletes job B. Its replica stays, now in pool B (its source) only.
    admin, jon, b = scene.world.admin, scene.jon, scene.b
    status, _ = await admin.api("DELETE", f"/api/v1/replication/jobs/{b.id}")
    assert status == 200
    _, grants = await admin.api("GET", "/api/v1/grants")
    assert all(g["object"] != f"replication-job:{b.id}" for g in grants["grants"])
    _, replicas = await jon.api("GET", "/api/v1/replication/replicas")
    assert _ids(replicas, "replicas") == []
    status, _ = await jon.api("GET", f"/api/v1/replication/replicas/{b.replica_id}")
    assert status == 403
    _, replicas = await scene.paula.api("GET", "/api/v1/replication/replicas")
    assert _ids(replicas, "replicas") == [scene.a.replica_id]
    _, replicas = await admin.api("GET", "/api/v1/replication/replicas")
    assert b.replica_id in _ids(replicas, "replicas")
