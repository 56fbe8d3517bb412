"""SIGKILL of the daemon process during a restore and during a verify: after
the restart each operation reads *interrupted*, with the log it had written
and one line saying why, through the one operations API; nothing stays
claimed, so the same work runs again at once."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.integration.backup.conftest import MiB, make_vm
from tests.integration.backup.test_backup_kill import Daemon
from xapisim import RunningSimulator
from xenkeep.xapi.client import XapiClient

pytestmark = pytest.mark.slow


async def interrupted(d: Daemon, op_id: int, kind: str) -> dict[str, Any]:
    status, op = await d.api("GET", f"/api/v1/operations/{op_id}")
    assert status == 200, op
    assert (op["kind"], op["status"]) == (kind, "interrupted"), op
    messages = [line["message"] for line in op["log"]]
    assert len(messages) >= 2, messages  # what it had said is kept...
    assert messages[-1].startswith("the daemon stopped during this operation"), messages
    return dict(op)


async def test_a_killed_restore_and_verify_read_interrupted_after_restart(
    tmp_path: Path, sim: RunningSimulator
) -> None:
    client = XapiClient(sim.url, "root", "demo")
    d = Daemon(tmp_path)
    try:
        vm = await make_vm(client, sim, "kill-ops-01", size=16 * MiB)
        sr = await client.call(
            "SR.get_uuid",
            await client.call("pool.get_default_SR", (await client.call("pool.get_all"))[0]),
        )
        store = tmp_path / "store"
        store.mkdir()
        await d.start("verify:2")
        await d.setup()
        status, body = await d.api(
            "POST", "/api/v1/pools", {"url": sim.url, "username": "root", "password": "demo"}
        )
        assert status == 201, body
        pool_id = body["pool"]["id"]
        await d.api("POST", "/api/v1/backup/storage", {"path": str(store)})
        status, job = await d.api(
            "POST",
            "/api/v1/backup/jobs",
            {"name": "k", "selector": "tag", "targets": ["xk-test"], "pool_id": str(pool_id)},
        )
        status, body = await d.api("POST", f"/api/v1/backup/jobs/{job['id']}/run")
        assert (await d.wait_run(body["run_id"]))["status"] == "success"
        status, listed = await d.api("GET", f"/api/v1/backup/vms/{vm.uuid}/points")
        point = listed["points"][0]["id"]

        # A verify dies at its second block.
        d.armed.touch()
        status, body = await d.api("POST", "/api/v1/backup/verify", {})
        assert status == 202, body
        verify_id = body["operation_id"]
        assert await d.wait_exit() == -signal.SIGKILL
        d.armed.unlink()
        await d.stop()

        # A restore dies while its disk is streaming in.
        await d.start()
        await d.sign_in()
        await interrupted(d, verify_id, "verify")
        status, last = await d.api("GET", "/api/v1/backup/verify")
        assert last["status"] == "interrupted" and last["operation_id"] == verify_id, last
        vms_before = set(await client.call("VM.get_all"))
        vdis_before = set(await client.call("VDI.get_all"))
        await client.call("sim.inject_fault", "throttle", {"bytes_per_second": 512 * 1024})
        restore = {"pool_id": str(pool_id), "vm_uuid": vm.uuid, "point_id": point, "sr_uuid": sr}
        status, body = await d.api("POST", "/api/v1/backup/restore", restore)
        assert status == 202, body
        restore_id = body["run_id"]
        for _ in range(2400):
            _, op = await d.api("GET", f"/api/v1/operations/{restore_id}")
            if op["bytes"] > 0:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the restore never moved a byte")
        d.kill()
        await client.call("sim.clear_faults")
        await d.stop()

        await d.start()
        await d.sign_in()
        op = await interrupted(d, restore_id, "restore")
        assert all(t["status"] != "running" for t in op["tasks"]), op["tasks"]
        # The half-restored VM and its disk are removed once the daemon is up.
        for _ in range(600):
            vms = set(await client.call("VM.get_all"))
            vdis = set(await client.call("VDI.get_all"))
            if vms == vms_before and vdis == vdis_before:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"left behind: {vms - vms_before} {vdis - vdis_before}")
        status, body = await d.api("GET", "/api/v1/operations?status=interrupted")
        assert sorted(o["id"] for o in body["operations"]) == sorted([verify_id, restore_id])
        # Nothing is left claimed: both run again, to the end.
        status, body = await d.api("POST", "/api/v1/backup/verify", {})
        assert status == 202, body
        status, body = await d.api("POST", "/api/v1/backup/restore", restore)
        assert (await d.wait_run(body["run_id"]))["status"] == "success"
        status, last = await d.api("GET", "/api/v1/backup/verify")
        for _ in range(600):
            if last["status"] != "running":
                break
            await asyncio.sleep(0.1)
            status, last = await d.api("GET", "/api/v1/backup/verify")
        assert last["status"] == "ok", last
    finally:
        await d.stop()
        await client.close()
