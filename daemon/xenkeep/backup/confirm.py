"""Typed confirmations: what an administrator types to say "yes, lose this".

An action that loses data (erasing a disk, deleting restore points) is
refused unless the form repeats the name of what goes, so a stray click or
a form posted by someone else's page cannot do it.
"""

from __future__ import annotations

from xenkeep.errors import ValidationError


def require_typed(expected: str, typed: str | None, consequence: str) -> None:
    """Refuse unless ``typed`` repeats ``expected``; the error says what to type."""
    if (typed or "").strip() != expected:
        raise ValidationError(f"type {expected} to confirm that {consequence}", field="confirm")
