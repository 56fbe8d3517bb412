"""The wizard's flags, under the keys older versions wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from xenkeep.store import open_database
from xenkeep.system.setup_state import SetupState


async def test_flags_round_trip_under_the_old_keys(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "xenkeep.db")
    try:
        state = SetupState(db)
        assert not await state.completed() and not await state.skipped("pool")
        await state.skip("pool")
        await state.complete()
        assert await state.completed() and await state.skipped("pool")
        assert not await state.skipped("network")
        # An appliance set up by an older XenKeep stays set up.
        assert await db.get_setting("wizard.completed") == "1"
        assert await db.get_setting("wizard.pool_skipped") == "1"
        with pytest.raises(ValueError, match="step name"):
            await state.skip("../x")
    finally:
        await db.close()
