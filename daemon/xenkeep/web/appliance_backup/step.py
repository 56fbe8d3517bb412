"""The wizard's "Restore a configuration" step: attach the backup disk of a
lost XenKeep, open one of its copies with the passphrase, see what it holds,
restore it. Skipped by anyone starting afresh."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from xenkeep.errors import ValidationError, XenKeepError
from xenkeep.web import keys
from xenkeep.web.flash import redirect_to
from xenkeep.web.wizard import Wizard, WizardStep

from .common import owner

STEP_NAME = "restore"


async def _step_done(request: web.Request) -> bool:
    state = keys.setup_state(request.app)
    # An appliance set up before this step existed has nothing to restore.
    return await state.completed() or await state.skipped(STEP_NAME)


async def _step_context(request: web.Request) -> dict[str, Any]:
    manager = keys.backup(request.app)
    service = keys.appliance_backup(request.app)
    try:
        disks = await manager.disks()
    except XenKeepError as exc:
        disks = {"available": True, "disks": [], "mounted": None, "problem": exc.message}
    user = keys.current_user(request)
    return {
        "storage": await manager.storage_status(),
        "disks": disks,
        "copies": await service.copies(),
        "opened": await service.opened(owner(request)) if user else None,
    }


async def _step_submit(request: web.Request, form: Mapping[str, str]) -> None:
    action = form.get("action", "")
    service = keys.appliance_backup(request.app)
    manager = keys.backup(request.app)
    if action == "skip":
        await service.discard(owner(request))
        await keys.setup_state(request.app).skip(STEP_NAME)
    elif action == "attach":
        await manager.attach_disk(form.get("device", ""))
    elif action == "directory":
        await manager.use_directory(form.get("path", ""))
    elif action == "open":
        await service.open_copy(owner(request), form.get("copy", ""), form.get("secret", ""))
    elif action == "discard":
        await service.discard(owner(request))
    elif action == "restore":
        user = keys.require_user(request)
        summary = await service.restore(
            owner(request),
            confirm=None,
            actor=user.username,
            ip=keys.client_ip(request),
            where="wizard",
        )
        # The configuration came from a set-up appliance: nothing is left to set up.
        await keys.setup_state(request.app).complete()
        redirect_to(
            request,
            "login",
            f"The configuration of {summary['appliance']} is restored: sign in with one of "
            "its accounts (the administrator created a moment ago was replaced).",
            "success",
        )
    else:
        raise ValidationError("choose what to do")


def register_restore_step(wizard: Wizard) -> None:
    """The step, after the administrator and before the appliance's name."""
    wizard.register(
        WizardStep(
            STEP_NAME,
            "Restore a configuration",
            "appliance_backup/setup_step.html",
            True,
            _step_done,
            _step_context,
            _step_submit,
            order=35,
            skippable=True,
            description="from the backup disk of a previous XenKeep",
        )
    )
