"""Where the first-boot wizard stands: finished or not, and which optional
steps the administrator chose to skip.

Kept in the ``settings`` table under the keys the web layer used before it
had this service (``wizard.completed``, ``wizard.<step>_skipped``), so an
appliance set up by an older XenKeep stays set up.
"""

from __future__ import annotations

import re

from xenkeep.store import Database

COMPLETED_KEY = "wizard.completed"
_STEP_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _skipped_key(step: str) -> str:
    # Step names come from the code (the wizard's registrations), never from
    # a request; the check keeps a typo from writing a stray key.
    if not _STEP_NAME.match(step):
        raise ValueError(f"not a wizard step name: {step!r}")
    return f"wizard.{step}_skipped"


class SetupState:
    """The wizard's persistent flags."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def completed(self) -> bool:
        """True once the administrator finished the wizard's summary."""
        return await self._db.get_setting(COMPLETED_KEY) == "1"

    async def complete(self) -> None:
        """The administrator finished the wizard."""
        await self._db.set_setting(COMPLETED_KEY, "1")

    async def skipped(self, step: str) -> bool:
        """True when the optional ``step`` was skipped."""
        return await self._db.get_setting(_skipped_key(step)) == "1"

    async def skip(self, step: str) -> None:
        """Skip the optional ``step`` (it counts as done)."""
        await self._db.set_setting(_skipped_key(step), "1")
