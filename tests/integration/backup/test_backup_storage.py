"""The datastore the manager opens at start: a missing backup disk is reported, not hidden."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.mounts import mounted_tmpfs
from xenkeep.backup.manager import DATASTORE_KEY, BackupManager
from xenkeep.pools.access import StaticPools
from xenkeep.store import open_database


async def test_a_missing_backup_disk_is_reported_at_start(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "x.db")
    mountpoint = tmp_path / "srv-xenkeep"
    await asyncio.to_thread(mountpoint.mkdir)
    m = BackupManager(db, StaticPools({}))
    await m.start(scheduler=False)
    await m.use_directory(str(mountpoint))
    await m.stop()

    # Restarted with the disk not mounted: the directory is empty.
    await asyncio.to_thread((mountpoint / "datastore.json").unlink)
    await asyncio.to_thread((mountpoint / "vms").rmdir)
    m = BackupManager(db, StaticPools({}))
    await m.start(scheduler=False)
    status = await m.storage_status()
    assert status["configured"] is False
    assert str(mountpoint) in status["problem"]
    # Nothing is written into the empty mountpoint meanwhile.
    assert await asyncio.to_thread(lambda: list(mountpoint.iterdir())) == []
    assert await db.get_setting(DATASTORE_KEY) == str(mountpoint)
    await m.stop()
    await db.close()


def test_an_almost_full_storage_is_flagged(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "small", "16m") as mnt:

        async def status() -> dict[str, object]:
            db = await open_database(tmp_path / "x.db")
            m = BackupManager(db, StaticPools({}))
            try:
                await m.start(scheduler=False)
                return await m.use_directory(str(mnt))
            finally:
                await m.stop()
                await db.close()

        assert asyncio.run(status())["low_space"] is False
        with (mnt / "filler").open("wb") as f:
            f.write(b"\1" * (15 << 20))
        assert asyncio.run(status())["low_space"] is True
