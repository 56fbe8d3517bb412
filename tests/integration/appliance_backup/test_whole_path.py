"""The whole path, as an administrator lives it: an appliance is configured
(a pool, its backup disk, a job, an administrator with two-factor sign-in, an
API token), backs up a VM and itself; it is lost (its state directory gone);
a fresh appliance gets the old backup disk, restores the configuration in
its first-boot wizard, lists the old restore points, and its next backup of
the VM is a delta, not a full.

Real daemon, real SQLite, the simulator's pool, a real privileged helper
formatting and mounting a real loop disk (root)."""

from __future__ import annotations

import asyncio
import html as htmllib
import re
import shutil
from pathlib import Path

import pyotp
import pytest

from tests.integration.appliance_backup.conftest import PASSPHRASE, first_copy
from tests.integration.backup.conftest import make_vm
from tests.support.privhelper import Appliance
from tests.support.web import ADMIN_PASSWORD, Browser, complete_setup, make_settings
from xapisim import RunningSimulator
from xenkeep.app import create_app
from xenkeep.config import Settings
from xenkeep.web import keys
from xenkeep.web.server import start_server
from xenkeep.xapi.client import XapiClient

pytestmark = [pytest.mark.root, pytest.mark.slow]


async def appliance_settings(root: Path, appliance: Appliance) -> Settings:
    """An appliance's settings under ``root``, with the test's privileged helper."""
    await asyncio.to_thread(root.mkdir)
    return await asyncio.to_thread(make_settings, root, privhelper_socket=appliance.socket)


async def wait_run(b: Browser, run_id: int) -> dict[str, object]:
    run = await b.until_finished(f"/api/v1/backup/runs/{run_id}")
    assert run["status"] == "success", run
    return run


async def test_lost_appliance_comes_back_on_a_new_one(
    tmp_path: Path, appliance: Appliance, sim: RunningSimulator, client: XapiClient
) -> None:
    vm = await make_vm(client, sim, "path-vm-01")
    disk = await asyncio.to_thread(appliance.new_disk)

    # --- the first appliance, configured and backing up ------------------------------
    old = await appliance_settings(tmp_path / "old", appliance)
    async with start_server(create_app(old)) as server:
        b = Browser(server)
        try:
            await complete_setup(b, old, "alice")
            await b.get("/setup/totp")
            secret = (await b.get("/setup/totp"))[1].split('id="totp-secret">')[1].split("<")[0]
            status, _, _ = await b.post_form(
                "/setup/totp", {"action": "enable", "code": pyotp.TOTP(secret).now()}
            )
            assert status == 303
            status, _ = await b.api(
                "PUT", "/api/v1/appliance", {"name": "keep-paris", "timezone": "Europe/Paris"}
            )
            assert status == 200
            status, token = await b.api("POST", "/api/v1/tokens", {"name": "monitoring"})
            assert status == 201, token
            pool = await keys.pools(server.app).add(sim.url, "root", "demo")
            status, body = await b.api(
                "POST", f"/api/v1/backup/disks/{disk}/format", {"confirm": disk}
            )
            assert status == 200 and body["configured"], body
            status, job = await b.api(
                "POST",
                "/api/v1/backup/jobs",
                {
                    "name": "nightly",
                    "selector": "tag",
                    "targets": ["xk-test"],
                    "pool_id": str(pool.id),
                    "retention": 5,
                },
            )
            assert status == 201, job
            status, body = await b.api("POST", f"/api/v1/backup/jobs/{job['id']}/run")
            assert status == 202, body
            run = await wait_run(b, body["run_id"])
            assert run["report"]["vms"][0]["transfers"] == {"0": "full"}, run
            status, body = await b.api("GET", f"/api/v1/backup/vms/{vm.uuid}/points")
            points = [p["id"] for p in body["points"]]
            assert len(points) == 1

            daily, copy = await first_copy(b)
            assert daily["trigger"] == "daily" and daily["report"]["pools"], daily
        finally:
            await b.close()
    # The appliance is lost: its state (database, keys, certificate) is gone, and
    # its backup disk is attached to the new VM (not mounted there yet).
    await asyncio.to_thread(shutil.rmtree, tmp_path / "old")
    await appliance.call("storage.detach")

    # --- a fresh appliance, restoring in its wizard -----------------------------------
    new = await appliance_settings(tmp_path / "new", appliance)
    async with start_server(create_app(new)) as server:
        b = Browser(server)
        try:
            await complete_setup(b, new, "bob")
            await b.get("/setup/totp")
            status, _, _ = await b.post_form("/setup/totp", {"action": "skip"})
            assert status == 303
            status, _, resp = await b.get("/setup")
            assert resp.headers["Location"] == "/setup/restore"
            status, page, _ = await b.get("/setup/restore")
            assert status == 200 and f'data-device="{disk}"' in page, page
            status, page, _ = await b.post_form(
                "/setup/restore", {"action": "attach", "device": disk}
            )
            assert status == 303, page
            status, page, _ = await b.get("/setup/restore")
            assert copy["id"] in page and "keep-paris" in page

            status, page, _ = await b.post_form(
                "/setup/restore",
                {"action": "open", "copy": copy["id"], "secret": "a wrong passphrase here"},
            )
            assert status == 400 and "does not open this copy" in htmllib.unescape(page)
            status, page, _ = await b.post_form(
                "/setup/restore", {"action": "open", "copy": copy["id"], "secret": PASSPHRASE}
            )
            assert status == 303
            status, page, _ = await b.get("/setup/restore")
            summary = htmllib.unescape(page)
            assert re.search(r'id="copy-jobs">1: nightly<', summary), summary
            assert 'id="copy-users">1: alice<' in summary
            assert 'id="copy-appliance">keep-paris<' in summary

            status, page, resp = await b.post_form("/setup/restore", {"action": "restore"})
            assert status == 303 and resp.headers["Location"] == "/login", page

            # The accounts are the old appliance's: bob is gone, alice signs in
            # with her password and her authenticator.
            b.csrf = ""
            status, body = await b.api(
                "POST", "/api/v1/session", {"username": "bob", "password": ADMIN_PASSWORD}
            )
            assert status == 401, body
            status, body = await b.api(
                "POST",
                "/api/v1/session",
                {"username": "alice", "password": ADMIN_PASSWORD, "code": pyotp.TOTP(secret).now()},
            )
            assert status in (200, 201), body
            status, _, resp = await b.get("/setup")
            assert resp.headers["Location"] == "/", "the wizard is finished"
            status, appliance_id = await b.api("GET", "/api/v1/appliance")
            assert appliance_id["name"] == "keep-paris"
            assert appliance_id["timezone"] == "Europe/Paris"

            # The old API token works here.
            async with b.session.get(
                b.url("/api/v1/backup/jobs"),
                headers={"Authorization": f"Bearer {token['token']}"},
            ) as r:
                assert r.status == 200
                jobs = (await r.json())["jobs"]
            assert [(j["id"], j["name"]) for j in jobs] == [(job["id"], "nightly")]

            # The restore points are listed again, and the pool is connected.
            status, body = await b.api("GET", f"/api/v1/backup/vms/{vm.uuid}/points")
            assert [p["id"] for p in body["points"]] == points
            for _ in range(100):
                status, pools = await b.api("GET", "/api/v1/pools")
                if pools["pools"][0]["status"]["state"] == "connected":
                    break
                await asyncio.sleep(0.1)
            assert pools["pools"][0]["status"]["state"] == "connected", pools

            # The next backup continues the chain: a delta.
            await vm.scribble(writes=2)
            status, body = await b.api("POST", f"/api/v1/backup/jobs/{job['id']}/run")
            assert status == 202, body
            run = await wait_run(b, body["run_id"])
            assert run["report"]["vms"][0]["transfers"] == {"0": "delta"}, run
            [event] = [
                e
                for e in (await b.api("GET", "/api/v1/audit?limit=200"))[1]["entries"]
                if e["event"] == "config_restored"
            ]
            assert event["username"] == "bob" and event["detail"]["where"] == "wizard"
            # This appliance goes on copying itself with the same passphrase.
            status, status_body = await b.api("GET", "/api/v1/appliance-backup")
            assert status_body["key"]["key_id"] == copy["key_id"]
        finally:
            await b.close()
