"""The wizard's "Connect a pool" step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from xenkeep.errors import ValidationError
from xenkeep.web import keys
from xenkeep.web.forms import FormError, attempt
from xenkeep.web.wizard import Wizard, WizardStep

from .common import handle_form, owner

#: The wizard step's name (its skipped flag is kept under it, see SetupState).
STEP_NAME = "pool"


async def _step_done(request: web.Request) -> bool:
    if await keys.setup_state(request.app).skipped(STEP_NAME):
        return True
    return bool(await keys.pools(request.app).pools())


async def _step_context(request: web.Request) -> dict[str, Any]:
    user = keys.current_user(request)
    pending = keys.pools(request.app).pending(owner(request)) if user else None
    return {"pending": pending, "form_url": "", "form_username": "root"}


async def _step_submit(request: web.Request, form: Mapping[str, str]) -> None:
    if form.get("action") == "skip":
        keys.pools(request.app).discard(owner(request))
        await keys.setup_state(request.app).skip(STEP_NAME)
        return
    # Until the fingerprint is confirmed the step is not done: the
    # wizard shows it again, now with the fingerprint to check.
    refused = await attempt(handle_form(request, form))
    if isinstance(refused, FormError):
        # Pool trouble (unreachable, wrong password...) is shown on the form.
        raise ValidationError(refused.message, field=refused.field)


def register_pool_step(wizard: Wizard) -> None:
    """The wizard's "Connect a pool" step, between the appliance and the summary."""
    wizard.register(
        WizardStep(
            STEP_NAME,
            "Connect a pool",
            "pools/setup_step.html",
            True,
            _step_done,
            _step_context,
            _step_submit,
            order=50,
            skippable=True,
            description="URL, user and password of the pool master",
        )
    )
