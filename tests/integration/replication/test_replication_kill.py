"""SIGKILL of the daemon in the middle of a replication run (while a disk
moves, right after the source snapshot, right after the replica point,
during a first run): after a restart the replica is at a complete point
equal to its source snapshot, the next run recovers, and nothing is left
behind in either pool."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.integration.backup.conftest import TestVm, make_vm
from tests.integration.backup.test_backup_kill import Daemon
from tests.integration.replication.conftest import default_sr, first_disk_sha
from xapisim import RunningSimulator
from xenkeep.replication.const import CREATING_KEY, MARKER, REFERENCE_KEY, REPLICA_OF_KEY
from xenkeep.xapi.client import XapiClient

pytestmark = pytest.mark.slow


async def _wait_op(d: Daemon, op_id: int) -> dict[str, Any]:
    for _ in range(1200):
        status, op = await d.api("GET", f"/api/v1/operations/{op_id}")
        assert status == 200, op
        if op["status"] not in ("pending", "running"):
            return dict(op)
        await asyncio.sleep(0.1)
    raise AssertionError(f"operation {op_id} never finished")


def _show(op: dict[str, Any]) -> str:
    return json.dumps({"error": op["error"], "log": [x["message"] for x in op["log"]]}, indent=1)


async def _leftovers(a: XapiClient, b: XapiClient, vm: TestVm) -> dict[str, Any]:
    """What XenKeep may have left: marked snapshots, half-made replicas and disks."""
    out: dict[str, Any] = {"marked": [], "creating": [], "replicas": 0, "references": 0}
    for client in (a, b):
        for rec in (await client.call("VM.get_all_records")).values():
            name = str(rec["name_label"])
            other = rec["other_config"]
            if rec["is_a_snapshot"] and f" {MARKER}-" in name and REFERENCE_KEY not in other:
                out["marked"].append(name)
            if CREATING_KEY in other:
                out["creating"].append(name)
            if REPLICA_OF_KEY in other and not rec["is_a_snapshot"]:
                out["replicas"] += 1
        for rec in (await client.call("VDI.get_all_records")).values():
            if CREATING_KEY in rec["other_config"]:
                out["creating"].append(rec["uuid"])
    for snap in await a.call("VM.get_snapshots", vm.ref):
        if REFERENCE_KEY in await a.call("VM.get_other_config", snap):
            out["references"] += 1
    return out


@pytest.mark.parametrize(
    "kill_at",
    ["transfer", "first transfer", "xapi:VM.snapshot:after:1", "xapi:VM.snapshot:after:2"],
)
async def test_kill_during_a_replication_run(
    tmp_path: Path, sim_a: RunningSimulator, sim_b: RunningSimulator, kill_at: str
) -> None:
    a = XapiClient(sim_a.url, "root", "demo")
    b = XapiClient(sim_b.url, "root", "demo")
    d = Daemon(tmp_path)
    try:
        vm = await make_vm(a, sim_a, "kill-rep-01")
        hook = kill_at if kill_at.startswith("xapi:") else ""
        await d.start(hook)
        await d.setup()
        ids = []
        for sim in (sim_a, sim_b):
            status, body = await d.api(
                "POST", "/api/v1/pools", {"url": sim.url, "username": "root", "password": "demo"}
            )
            assert status == 201, body
            ids.append(str(body["pool"]["id"]))
        status, job = await d.api(
            "POST",
            "/api/v1/replication/jobs",
            {
                "name": "k",
                "selector": "tag",
                "targets": ["xk-test"],
                "pool_id": ids[0],
                "target_pool_id": ids[1],
                "target_sr_uuid": await default_sr(b),
                "retention": 2,
            },
        )
        assert status == 201, job
        run_path = f"/api/v1/replication/jobs/{job['id']}/run"
        shas: dict[str, str] = {}  # point uuid -> content
        if kill_at != "first transfer":
            status, body = await d.api("POST", run_path)
            op = await _wait_op(d, body["operation_id"])
            assert op["status"] == "success", _show(op)
            shas[op["report"]["vms"][0]["point_id"]] = await vm.sha256()
            await vm.scribble(writes=4)
        cut_sha = await vm.sha256()

        # The next run dies where chosen.
        if kill_at.endswith("transfer"):
            await b.call("sim.inject_fault", "throttle", {"bytes_per_second": 256 * 1024})
            status, body = await d.api("POST", run_path)
            assert status == 202, body
            for _ in range(2400):
                _, op = await d.api("GET", f"/api/v1/operations/{body['operation_id']}")
                if any(t["part"] is not None and t["bytes"] > 0 for t in op["tasks"]):
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the copy never started")
            d.kill()
            await b.call("sim.clear_faults")
        else:
            d.armed.touch()
            status, body = await d.api("POST", run_path)
            assert status == 202, body
            assert await d.wait_exit() == -signal.SIGKILL
        await d.stop()
        d.armed.unlink(missing_ok=True)

        # Restart: the killed run is interrupted; the replica's newest point,
        # if any, equals the source snapshot it names.
        await d.start()
        await d.sign_in()
        _, op = await d.api("GET", f"/api/v1/operations/{body['operation_id']}")
        assert op["status"] == "interrupted", op
        status, listed = await d.api("GET", "/api/v1/replication/replicas")
        for replica in listed["replicas"]:
            status, points = await d.api(
                "GET", f"/api/v1/replication/replicas/{replica['id']}/points"
            )
            for p in points["points"]:
                want = shas.get(p["uuid"], cut_sha)
                assert await first_disk_sha(b, await b.call("VM.get_by_uuid", p["uuid"])) == want
            if kill_at == "xapi:VM.snapshot:after:2":
                assert len(points["points"]) == 2  # the point was made: it counts

        # The next run recovers, and nothing is left behind on either site.
        status, body = await d.api("POST", run_path)
        op = await _wait_op(d, body["operation_id"])
        assert op["status"] == "success", _show(op)
        [replica] = (await d.api("GET", "/api/v1/replication/replicas"))[1]["replicas"]
        latest = await b.call("VM.get_by_uuid", replica["latest_point_uuid"])
        assert await first_disk_sha(b, latest) == await vm.sha256()
        rvm = await b.call("VM.get_by_uuid", replica["vm_uuid"])
        assert await first_disk_sha(b, rvm) == await vm.sha256()
        for _ in range(300):  # the sweep at start runs beside the run
            left = await _leftovers(a, b, vm)
            if not left["marked"] and not left["creating"]:
                break
            await asyncio.sleep(0.1)
        assert left == {"marked": [], "creating": [], "replicas": 1, "references": 1}, left
        assert replica["points"] <= 2
    finally:
        await d.stop()
        await a.close()
        await b.close()
