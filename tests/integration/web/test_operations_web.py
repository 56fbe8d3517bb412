"""Operations through the daemon's web UI and JSON API: one list, one detail,
one event stream and one page for every kind; verify cancelled midway."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.backup.conftest import MiB, make_vm, storage_and_job
from tests.support.web import Browser
from xapisim import RunningSimulator
from xenkeep.ops.context import ThreadWork
from xenkeep.pools.pool import Pool
from xenkeep.xapi.client import XapiClient


async def stream_of(browser: Browser, op_id: int) -> list[dict[str, Any]]:
    """Every ``operation`` event of an operation's stream, which ends by itself."""
    return await browser.events(f"/api/v1/operations/{op_id}/events", "operation")


async def wait_op(browser: Browser, op_id: int) -> dict[str, Any]:
    return await browser.until_finished(f"/api/v1/operations/{op_id}")


async def test_every_kind_is_followed_the_same_way(
    browser: Browser,
    pool_sim: RunningSimulator,
    admin_pool: tuple[Pool, XapiClient],
    tmp_path: Path,
) -> None:
    pool, client = admin_pool
    vm = await make_vm(client, pool_sim, "ops-web-01")
    job = await storage_and_job(browser, pool.id, tmp_path / "store", "nightly")

    status, started = await browser.api("POST", f"/api/v1/backup/jobs/{job['id']}/run")
    assert status == 202, started
    backup = await stream_of(browser, started["run_id"])

    status, points = await browser.api("GET", f"/api/v1/backup/vms/{vm.uuid}/points")
    sr = await client.call(
        "SR.get_uuid",
        await client.call("pool.get_default_SR", (await client.call("pool.get_all"))[0]),
    )
    status, started = await browser.api(
        "POST",
        "/api/v1/backup/restore",
        {
            "vm_uuid": vm.uuid,
            "point_id": points["points"][0]["id"],
            "pool_id": str(pool.id),
            "sr_uuid": sr,
        },
    )
    assert status == 202, started
    restore = await stream_of(browser, started["run_id"])

    status, started = await browser.api("POST", "/api/v1/backup/verify", {})
    assert status == 202, started
    verify = await stream_of(browser, started["operation_id"])

    for kind, events in (("backup", backup), ("restore", restore), ("verify", verify)):
        last = events[-1]
        assert (last["kind"], last["status"]) == (kind, "success"), last
        ids = [line["id"] for e in events for line in e["log"]]
        assert ids == sorted(set(ids)) and ids, (kind, ids)  # each line once, in order
        # The page of any kind renders its state, log and report.
        status, html, _ = await browser.get(f"/operations/{last['id']}")
        assert status == 200 and f'data-kind="{kind}"' in html and 'id="report"' in html, kind
        assert last["log"][-1]["message"] in html if last["log"] else True
    assert backup[-1]["target"] == f"backup-job:{job['id']}"
    assert any(t["part"] == "0" and t["transfer"] == "full" for t in backup[-1]["tasks"])
    assert restore[-1]["target"] == f"vm:{vm.uuid}"
    # A verify counts the bytes it re-read against what is stored.
    assert verify[-1]["report"]["status"] == "ok"
    assert verify[-1]["bytes"] == verify[-1]["total_bytes"] > 0, verify[-1]

    status, body = await browser.api("GET", "/api/v1/operations")
    assert status == 200
    assert [o["kind"] for o in body["operations"]] == ["verify", "restore", "backup"]
    status, body = await browser.api("GET", "/api/v1/operations?kind=verify,restore")
    assert [o["kind"] for o in body["operations"]] == ["verify", "restore"]
    status, body = await browser.api(
        "GET", f"/api/v1/operations?target=backup-job:{job['id']}&status=success"
    )
    assert [o["id"] for o in body["operations"]] == [backup[-1]["id"]]
    status, body = await browser.api("GET", "/api/v1/operations?kind=nonsense")
    assert status == 400 and body["error"]["field"] == "kind", body
    status, body = await browser.api("GET", "/api/v1/operations/99999")
    assert status == 404, body
    status, body = await browser.api("POST", f"/api/v1/operations/{backup[-1]['id']}/cancel")
    assert status == 409 and "already finished" in body["error"]["message"], body
    status, html, _ = await browser.get("/operations")
    assert status == 200 and html.count('data-status="success"') == 3
    # The run's own URLs are the same operation.
    status, html, _ = await browser.get(f"/backup/runs/{backup[-1]['id']}")
    assert status == 200 and 'data-kind="backup"' in html


async def test_verify_cancelled_midway_keeps_its_log_and_frees_the_storage(
    browser: Browser,
    pool_sim: RunningSimulator,
    admin_pool: tuple[Pool, XapiClient],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool, client = admin_pool
    vm = await make_vm(client, pool_sim, "ops-web-02", size=32 * MiB)
    await vm.write(0, vm.rng.randbytes(24 * MiB))  # 12 blocks to re-read
    job = await storage_and_job(browser, pool.id, tmp_path / "store", "nightly")
    status, started = await browser.api("POST", f"/api/v1/backup/jobs/{job['id']}/run")
    assert (await wait_op(browser, started["run_id"]))["status"] == "success"

    # Slow each block down (in the verify's own thread) so the cancel lands midway.
    advance = ThreadWork.advance

    def slow(self: ThreadWork, nbytes: int) -> None:
        time.sleep(0.2)
        advance(self, nbytes)

    monkeypatch.setattr(ThreadWork, "advance", slow)
    status, started = await browser.api("POST", "/api/v1/backup/verify", {})
    assert status == 202, started
    op_id = started["operation_id"]
    status, body = await browser.api("POST", "/api/v1/backup/verify", {})
    assert status == 409 and "one verify at a time" in body["error"]["message"], body
    for _ in range(600):
        status, op = await browser.api("GET", f"/api/v1/operations/{op_id}")
        if op["bytes"] > 0:
            break
        await asyncio.sleep(0.05)
    assert 0 < op["bytes"] < op["total_bytes"], op
    assert op["stage"] == "read" and op["cancellable"], op
    status, body = await browser.api("POST", f"/api/v1/operations/{op_id}/cancel")
    assert status == 202, body
    op = await wait_op(browser, op_id)
    assert op["status"] == "cancelled" and op["bytes"] < op["total_bytes"], op
    assert any(line["message"] == "cancel requested" for line in op["log"]), op["log"]
    status, last = await browser.api("GET", "/api/v1/backup/verify")
    assert last["status"] == "cancelled" and last["operation_id"] == op_id, last

    # Nothing is left holding the storage: it can change, and a new verify runs.
    monkeypatch.setattr(ThreadWork, "advance", advance)
    status, started = await browser.api("POST", "/api/v1/backup/verify", {})
    assert status == 202, started
    assert (await wait_op(browser, started["operation_id"]))["status"] == "success"
    other = tmp_path / "other"
    other.mkdir()
    status, body = await browser.api("POST", "/api/v1/backup/storage", {"path": str(other)})
    assert status == 200 and body["path"] == str(other), body
