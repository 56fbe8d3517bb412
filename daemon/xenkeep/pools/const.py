"""Limits of pool registrations."""

from __future__ import annotations

#: The longest user name (or other text field) a registration accepts.
MAX_FIELD = 256
#: How long a staged registration waits for its fingerprint to be confirmed.
PENDING_SECONDS = 15 * 60
#: The longest connection error kept on a pool's row.
MAX_ERROR = 1000
