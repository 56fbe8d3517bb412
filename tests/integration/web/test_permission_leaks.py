"""Lists and live streams show only what the caller may see: a viewer of VM
A, given through a group, never meets VM B's name or uuid anywhere — not on
the dashboard, in the pools overview, the backup lists, the operations, the
restore page, nor in the live event stream as the pools change.

Real backups run (two jobs, one VM each) and real restores, against a
simulated pool, so every list has something to hide.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.integration.backup.conftest import TestVm, make_vm
from tests.support.people import World, user_with_grant, world
from tests.support.web import Browser
from xenkeep.auth.grants import Subject, SubjectKind
from xenkeep.auth.permissions import ObjectKind, ObjectRef, ObjectRole
from xenkeep.web import keys
from xenkeep.xapi.client import XapiClient

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Scene:
    world: World
    client: XapiClient
    vm_a: TestVm
    vm_b: TestVm
    job_a: int
    job_b: int
    restore_a: int
    restore_b: int
    #: A member of a group holding viewer on VM A; an operator of job A.
    vera: Browser
    otto: Browser

    def hidden(self) -> list[str]:
        """What vera must never see: VM B, every other VM of pool A, pool B
        (whose demo name is pool A's: its uuid and its VMs' uuids tell)."""
        a = self.world.a
        names = [n for n in a.vms if n not in ("leak-a",)]
        return [
            self.vm_b.uuid,
            *names,
            *(a.vms[n] for n in names),
            *self.world.b.vms.values(),
            self.world.b.pool.uuid,
        ]


async def _finished(admin: Browser, op_id: int) -> dict[str, Any]:
    body = await admin.until_finished(f"/api/v1/operations/{op_id}")
    assert body["status"] == "success", body
    return body


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def scene(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scene]:
    tmp: Path = tmp_path_factory.mktemp("leaks")
    async with world(tmp) as w:
        admin, a = w.admin, w.a
        client = XapiClient(a.sim.url, "root", "demo", timeout=30)
        try:
            vm_a = await make_vm(client, a.sim, "leak-a")
            vm_b = await make_vm(client, a.sim, "leak-b", seed=8)
            store = tmp / "store"
            await asyncio.to_thread(store.mkdir)
            status, body = await admin.api("POST", "/api/v1/backup/storage", {"path": str(store)})
            assert status == 200, body
            jobs = []
            for name in ("leak-a", "leak-b"):
                status, job = await admin.api(
                    "POST",
                    "/api/v1/backup/jobs",
                    {
                        "name": f"job-{name}",
                        "selector": "name",
                        "targets": [name],
                        "pool_id": str(a.pool.id),
                        "retention": 3,
                    },
                )
                assert status == 201, job
                status, started = await admin.api("POST", f"/api/v1/backup/jobs/{job['id']}/run")
                assert status == 202, started
                await _finished(admin, started["run_id"])
                jobs.append(int(job["id"]))
            sr = await client.call("pool.get_default_SR", (await client.call("pool.get_all"))[0])
            sr_uuid = await client.call("SR.get_uuid", sr)
            restores = []
            for vm in (vm_a, vm_b):
                _, points = await admin.api("GET", f"/api/v1/backup/vms/{vm.uuid}/points")
                status, started = await admin.api(
                    "POST",
                    "/api/v1/backup/restore",
                    {
                        "pool_id": str(a.pool.id),
                        "vm_uuid": vm.uuid,
                        "point_id": points["points"][-1]["id"],
                        "sr_uuid": sr_uuid,
                    },
                )
                assert status == 202, started
                await _finished(admin, started["run_id"])
                restores.append(int(started["run_id"]))
            # vera sees VM A through a group; otto operates job A.
            app = w.server.app
            vera_id = await user_with_grant(w.server, "vera")
            group = await keys.groups(app).create("vm-a-viewers", actor="test")
            await keys.groups(app).add_member(group.id, vera_id, actor="test")
            await keys.grants(app).grant(
                Subject(SubjectKind.GROUP, group.id),
                ObjectRef(ObjectKind.VM, vm_a.uuid),
                ObjectRole.VIEWER,
                actor="test",
            )
            await user_with_grant(
                w.server,
                "otto",
                (ObjectRef(ObjectKind.BACKUP_JOB, str(jobs[0])), ObjectRole.OPERATOR),
            )
            yield Scene(
                w,
                client,
                vm_a,
                vm_b,
                jobs[0],
                jobs[1],
                restores[0],
                restores[1],
                await w.browser("vera"),
                await w.browser("otto"),
            )
        finally:
            await client.close()


def assert_hidden(scene: Scene, what: str, text: str) -> None:
    for secret in scene.hidden():
        assert secret not in text, f"{what} shows {secret!r}"
    # The restored copies are named after their source: never VM B's.
    assert "leak-b" not in text, f"{what} names VM B"


LISTS = [
    "/",
    "/api/v1/pools",
    "/api/v1/pools/overview",
    "/api/v1/backup/jobs",
    "/api/v1/backup/runs",
    "/api/v1/backup/vms",
    "/api/v1/operations",
    "/backup",
    "/backup/restore",
    "/operations",
]


async def text_of(b: Browser, path: str) -> tuple[int, str]:
    async with b.session.get(b.url(path), allow_redirects=False) as resp:
        return resp.status, await resp.text()


@pytest.mark.parametrize("path", LISTS)
async def test_no_list_shows_what_vera_may_not_see(scene: Scene, path: str) -> None:
    status, text = await text_of(scene.vera, path)
    assert status == 200, text
    assert_hidden(scene, path, text)


async def test_vera_sees_vm_a_and_its_restore_and_nothing_of_the_jobs(scene: Scene) -> None:
    _, overview = await scene.vera.api("GET", "/api/v1/pools/overview")
    [pool] = overview["pools"]
    assert [v["name"] for v in pool["vms"]] == ["leak-a"]
    assert pool["hosts"] == [] and pool["srs"] == [] and pool["url"] == ""
    _, vms = await scene.vera.api("GET", "/api/v1/backup/vms")
    assert [v["vm_uuid"] for v in vms["vms"]] == [scene.vm_a.uuid]
    _, ops = await scene.vera.api("GET", "/api/v1/operations")
    assert [o["id"] for o in ops["operations"]] == [scene.restore_a]
    _, jobs = await scene.vera.api("GET", "/api/v1/backup/jobs")
    assert jobs["jobs"] == []
    status, _ = await scene.vera.api("GET", f"/api/v1/backup/vms/{scene.vm_a.uuid}/points")
    assert status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/backup/vms/{vm_b}/points",
        "/api/v1/operations/{restore_b}",
        "/api/v1/operations/{restore_b}/events",
        "/api/v1/backup/runs/{restore_b}",
        "/operations/{restore_b}",
        "/api/v1/backup/jobs/{job_a}",
    ],
)
async def test_what_vera_may_not_see_is_refused_and_says_nothing(scene: Scene, path: str) -> None:
    url = path.format(vm_b=scene.vm_b.uuid, restore_b=scene.restore_b, job_a=scene.job_a)
    status, text = await text_of(scene.vera, url)
    assert status == 403, text
    assert_hidden(scene, url, text)


async def test_a_job_operator_sees_that_job_and_its_runs_only(scene: Scene) -> None:
    _, jobs = await scene.otto.api("GET", "/api/v1/backup/jobs")
    assert [j["id"] for j in jobs["jobs"]] == [scene.job_a]
    _, runs = await scene.otto.api("GET", "/api/v1/backup/runs")
    assert {r["job_id"] for r in runs["runs"]} == {scene.job_a}
    _, overview = await scene.otto.api("GET", "/api/v1/pools/overview")
    assert overview["pools"] == []  # a job is not its pool's VMs
    status, text = await text_of(scene.otto, "/backup")
    assert status == 200 and "job-leak-a" in text and "job-leak-b" not in text
    assert "Run now" in text and "Prune now" not in text and 'id="new-job"' not in text


async def _frames(b: Browser, path: str) -> AsyncIterator[tuple[str, str]]:
    async with b.session.get(b.url(path)) as resp:
        assert resp.status == 200
        kind = ""
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                yield kind, line[6:]


async def test_the_live_stream_never_carries_vm_b(scene: Scene) -> None:
    client = scene.client
    seen: list[str] = []
    frames = _frames(scene.vera, "/api/v1/events")
    kind, data = await anext(frames)
    assert kind == "overview"
    seen.append(data)
    assert [v["name"] for p in json.loads(data)["pools"] for v in p["vms"]] == ["leak-a"]
    # VM B changes first, then VM A: the stream must show A's change, never B.
    await client.call("VM.set_name_label", scene.vm_b.ref, "leak-b-renamed")
    await client.call("VM.set_name_label", scene.vm_a.ref, "leak-a-renamed")
    async for _kind, data in frames:
        seen.append(data)
        if "leak-a-renamed" in data:
            break
    await frames.aclose()
    for data in seen:
        assert_hidden(scene, "the event stream", data)
    await client.call("VM.set_name_label", scene.vm_a.ref, "leak-a")
    await client.call("VM.set_name_label", scene.vm_b.ref, "leak-b")


async def test_a_grant_taken_back_hides_at_the_next_change(scene: Scene) -> None:
    app = scene.world.server.app
    await user_with_grant(
        scene.world.server, "brief", (ObjectRef(ObjectKind.VM, scene.vm_a.uuid), ObjectRole.VIEWER)
    )
    brief = await scene.world.browser("brief")
    frames = _frames(brief, "/api/v1/events")
    kind, data = await anext(frames)
    assert "leak-a" in data
    [grant] = [g for g in await keys.grants(app).find() if g.subject_name == "brief"]
    await keys.grants(app).revoke(grant.id, actor="test")
    await scene.client.call("VM.set_name_label", scene.vm_a.ref, "leak-a-again")
    async for kind, data in frames:
        if kind == "removed":
            break
        assert "leak-a" not in data, data
    await frames.aclose()
    await scene.client.call("VM.set_name_label", scene.vm_a.ref, "leak-a")
