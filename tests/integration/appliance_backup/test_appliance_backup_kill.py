"""SIGKILL of the daemon while it writes a copy of the appliance (in the
middle of the configuration's lines, or with everything synced but the
rename): after a restart the earlier copy is listed and opens whole, the
cut one never appears, its temporary file goes with the next copy, and the
operation says it was interrupted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.integration.appliance_backup.conftest import PASSPHRASE, copies_done, first_copy
from tests.integration.backup.test_backup_kill import Daemon


def leftovers(store: Path) -> list[str]:
    return sorted(p.name for p in store.rglob("appliance/**/.*.tmp-*"))


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["copy-write:3", "copy-commit"])
async def test_kill_while_a_copy_is_written(tmp_path: Path, kill_at: str) -> None:
    d = Daemon(tmp_path)
    store = tmp_path / "store"
    await asyncio.to_thread(store.mkdir)
    try:
        await d.start(kill_at)
        await d.setup()
        status, body = await d.api("POST", "/api/v1/backup/storage", {"path": str(store)})
        assert status == 200, body
        first, kept = await first_copy(d)

        await asyncio.to_thread(d.armed.touch)
        status, body = await d.api("POST", "/api/v1/appliance-backup/run")
        assert status == 202, body
        assert await d.wait_exit() != 0
        assert len(await asyncio.to_thread(leftovers, store)) == 1

        await d.start()
        await d.sign_in()
        status, body = await d.api("GET", f"/api/v1/operations/{body['operation_id']}")
        assert body["status"] == "interrupted", body
        status, body = await d.api("GET", "/api/v1/appliance-backup/copies")
        assert [c["id"] for c in body["copies"]] == [kept["id"]], body
        status, summary = await d.api(
            "POST",
            f"/api/v1/appliance-backup/copies/{kept['id']}/open",
            {"secret": PASSPHRASE},
        )
        assert status == 200 and summary["counts"]["users"] == 1, summary

        # The next copy clears what the killed one left.
        status, body = await d.api("POST", "/api/v1/appliance-backup/run")
        assert status == 202, body
        [done] = await copies_done(d, after=first["id"] + 1)
        assert done["status"] == "success", done
        assert await asyncio.to_thread(leftovers, store) == []
        status, body = await d.api("GET", "/api/v1/appliance-backup/copies")
        assert len(body["copies"]) == 2
    finally:
        await d.stop()
