"""Sign-in throttling: how long to wait after repeated failures.

A pure function so the policy is tested on numbers; the manager keeps the
counters in the database so a restart does not reset them.
"""

from __future__ import annotations

FREE_ATTEMPTS = 5
MAX_DELAY_SECONDS = 15 * 60
# A counter older than this is forgotten.
RESET_AFTER_SECONDS = 60 * 60


def required_delay(failures: int) -> int:
    """Seconds to wait after the last failure, given consecutive failures."""
    if failures < FREE_ATTEMPTS:
        return 0
    return int(min(2 ** (failures - FREE_ATTEMPTS + 1), MAX_DELAY_SECONDS))


def retry_after(failures: int, last_failure: float, now: float) -> int:
    """Seconds until another attempt is allowed (0 = now)."""
    if now - last_failure > RESET_AFTER_SECONDS:
        return 0
    remaining = required_delay(failures) - (now - last_failure)
    return max(0, int(remaining + 0.999))
