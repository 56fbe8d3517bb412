"""The wizard's core steps and its routes.

Steps: setup token → administrator → two-factor (optional) → appliance
name and time zone → summary. Other features register further steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from xenkeep.auth.const import SESSION_COOKIE, SETUP_COOKIE, Role
from xenkeep.system.identity import known_timezones
from xenkeep.web import keys
from xenkeep.web.access import public
from xenkeep.web.cookies import set_cookie
from xenkeep.web.flash import redirect, redirect_to
from xenkeep.web.forms import FormError, attempt, form_fields
from xenkeep.web.wizard import Wizard, WizardStep


def _admin(request: web.Request) -> Any:
    user = keys.current_user(request)
    return user if user is not None and user.role is Role.ADMIN else None


# --- step: setup token ---------------------------------------------------------


async def _token_done(request: web.Request) -> bool:
    auth = keys.auth(request.app)
    if not await auth.setup_required():
        return True
    return await auth.setup_session_valid(request.cookies.get(SETUP_COOKIE))


async def _token_context(request: web.Request) -> dict[str, Any]:
    return {"token_path": str(keys.settings(request.app).setup_token_path)}


async def _token_submit(request: web.Request, form: Mapping[str, str]) -> Mapping[str, str]:
    setup_id = await keys.auth(request.app).begin_setup(
        form.get("token", ""), keys.client_ip(request)
    )
    return {SETUP_COOKIE: setup_id}


# --- step: administrator --------------------------------------------------------


async def _admin_done(request: web.Request) -> bool:
    return not await keys.auth(request.app).setup_required()


async def _admin_context(request: web.Request) -> dict[str, Any]:
    return {"min_length": 12}


async def _admin_submit(request: web.Request, form: Mapping[str, str]) -> Mapping[str, str]:
    auth = keys.auth(request.app)
    ip = keys.client_ip(request)
    user = await auth.create_first_admin(
        request.cookies.get(SETUP_COOKIE),
        form.get("username", ""),
        form.get("password", ""),
        form.get("confirm", ""),
        ip,
    )
    cookie = await auth.create_session(
        user, ip=ip, user_agent=request.headers.get("User-Agent", "")
    )
    return {SESSION_COOKIE: cookie}


# --- step: two-factor authentication ------------------------------------------------


async def _totp_done(request: web.Request) -> bool:
    user = _admin(request)
    if user is None:
        return False
    return await keys.enrolment(request.app).done(user)


async def _totp_context(request: web.Request) -> dict[str, Any]:
    name = (await keys.identity(request.app).get()).name
    offer = await keys.enrolment(request.app).begin(_admin(request), name)
    return {"secret": offer.secret, "qr_svg": offer.qr_svg, "uri": offer.uri}


async def _totp_submit(request: web.Request, form: Mapping[str, str]) -> None:
    user = _admin(request)
    enrolment = keys.enrolment(request.app)
    if form.get("action") == "skip":
        await enrolment.skip(user)
        return
    await enrolment.confirm(user, form.get("code", ""), ip=keys.client_ip(request))


# --- step: appliance identity ------------------------------------------------------


async def _identity_done(request: web.Request) -> bool:
    return (await keys.identity(request.app).get()).configured


async def _identity_context(request: web.Request) -> dict[str, Any]:
    ident = await keys.identity(request.app).get()
    return {"identity": ident, "timezones": known_timezones()}


async def _identity_submit(request: web.Request, form: Mapping[str, str]) -> None:
    user = _admin(request)
    await keys.identity(request.app).set(
        form.get("name", ""),
        form.get("timezone", ""),
        actor=user.username,
        ip=keys.client_ip(request),
    )


# --- step: summary ---------------------------------------------------------------


async def _summary_done(request: web.Request) -> bool:
    if await keys.auth(request.app).setup_required():
        return False
    return await keys.setup_state(request.app).completed()


async def _summary_context(request: web.Request) -> dict[str, Any]:
    user = _admin(request)
    return {
        "identity": await keys.identity(request.app).get(),
        "admin": user,
        "fingerprint": keys.tls(request.app).fingerprint,
    }


async def _summary_submit(request: web.Request, form: Mapping[str, str]) -> None:
    await keys.setup_state(request.app).complete()


def register_core_steps(wizard: Wizard) -> None:
    """The steps every appliance has."""
    wizard.register(
        WizardStep(
            "token",
            "Setup token",
            "setup/token.html",
            False,
            _token_done,
            _token_context,
            _token_submit,
            order=10,
        )
    )
    wizard.register(
        WizardStep(
            "admin",
            "Administrator",
            "setup/admin.html",
            False,
            _admin_done,
            _admin_context,
            _admin_submit,
            order=20,
        )
    )
    wizard.register(
        WizardStep(
            "totp",
            "Two-factor sign-in",
            "setup/totp.html",
            True,
            _totp_done,
            _totp_context,
            _totp_submit,
            order=30,
            skippable=True,
        )
    )
    wizard.register(
        WizardStep(
            "appliance",
            "Appliance",
            "setup/appliance.html",
            True,
            _identity_done,
            _identity_context,
            _identity_submit,
            order=40,
        )
    )
    wizard.register(
        WizardStep(
            "summary",
            "Summary",
            "setup/summary.html",
            True,
            _summary_done,
            _summary_context,
            _summary_submit,
            order=1000,
        )
    )


# --- routes --------------------------------------------------------------------------


async def _resolve(request: web.Request) -> WizardStep:
    wizard = keys.wizard(request.app)
    current = await wizard.current(request)
    if current is None:
        redirect_to(request, "dashboard")
    wanted = request.match_info.get("step")
    if wanted != current.name:
        redirect_to(request, "setup_step", step=current.name)
    if current.needs_admin and _admin(request) is None:
        redirect(f"/login?next=/setup/{current.name}")
    return current


async def _render(
    request: web.Request,
    step: WizardStep,
    error: str | None = None,
    status: int = 200,
    form: Mapping[str, str] | None = None,
) -> web.Response:
    context = await step.context(request)
    # What was typed comes back into the form after an error (never passwords).
    kept = {k: v for k, v in (form or {}).items() if "password" not in k and k != "confirm"}
    context.update(
        {
            "step": step,
            "steps": await keys.wizard(request.app).progress(request),
            "error": error,
            "form": kept,
        }
    )
    return aiohttp_jinja2.render_template(step.template, request, context, status=status)


@public
async def setup_index(request: web.Request) -> web.StreamResponse:
    """Send the browser to the wizard's current step."""
    await _resolve(request)
    raise AssertionError("unreachable")  # _resolve always redirects here


@public
async def setup_step(request: web.Request) -> web.StreamResponse:
    """Show the current step."""
    step = await _resolve(request)
    return await _render(request, step)


@public
async def setup_step_submit(request: web.Request) -> web.StreamResponse:
    """Run the current step's form, then go on to the next step."""
    step = await _resolve(request)
    form = await form_fields(request)
    cookies = await attempt(step.submit(request, form))
    if isinstance(cookies, FormError):
        return await _render(request, step, error=cookies.message, status=cookies.status, form=form)
    response = web.HTTPSeeOther("/setup")
    for name, value in (cookies or {}).items():
        set_cookie(response, name, value)
    raise response
