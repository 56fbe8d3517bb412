"""Settings → Network: the address, gateway, DNS and NTP servers, changed as checkpoints.

A change is applied by the privileged helper and comes back by itself
unless the administrator keeps it in time, from wherever the appliance
answers afterwards (its new address, for an address change). So the page
says where to go before anything moves, shows the change waiting with its
countdown and two buttons, Keep and Revert now, and how the last change
ended. Post/Redirect/Get: a refused form is rendered again with its error.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from xenkeep.system.console import url_for
from xenkeep.system.network import ADDRESS_CHANGE_DELAY
from xenkeep.web import keys
from xenkeep.web.access import admin
from xenkeep.web.flash import redirect_to
from xenkeep.web.forms import FormError, attempt, form_fields

#: The two forms of the page, each shown again with its own error.
NETWORK_FORM = "network"
NTP_FORM = "ntp"


async def _page(
    request: web.Request,
    *,
    error: FormError | None = None,
    form: str = "",
    typed: dict[str, str] | None = None,
) -> web.Response:
    service = keys.network(request.app)
    shown: dict[str, Any] | FormError | None = None
    if await service.is_available():
        shown = await attempt(service.show())
    state = shown if isinstance(shown, dict) else None
    settings = (state or {}).get("settings") or {}
    values = {
        "mode": settings.get("mode", "dhcp"),
        "address": settings.get("address") or "",
        "gateway": settings.get("gateway") or "",
        "dns": " ".join(settings.get("dns") or []),
        "ntp": " ".join(settings.get("ntp") or []),
    }
    values.update(typed or {})
    context = {
        "available": shown is not None,
        "unreachable": shown.message if isinstance(shown, FormError) else None,
        "state": state,
        "values": values,
        "error": error.message if error else None,
        "error_field": error.field if error else None,
        "error_form": form,
        "here": keys.local_address(request),
        "now": time.time(),
    }
    return aiohttp_jinja2.render_template(
        "network.html", request, context, status=error.status if error else 200
    )


@admin
async def network_page(request: web.Request) -> web.StreamResponse:
    """The settings, what the interfaces have now, the change waiting, the last one's end."""
    return await _page(request)


def _where_to_keep(request: web.Request, pending: dict[str, Any]) -> str:
    """Where the administrator goes to keep ``pending``, in words."""
    port = keys.settings(request.app).https_port
    after = pending.get("after") or {}
    seconds = f"{pending.get('timeout', 0):g} s"
    if pending.get("op") == "network.dhcp":
        return (
            f"The appliance switches to DHCP in {ADDRESS_CHANGE_DELAY:g} s. Its new address is "
            f"shown on its console (and in XenCenter); open Settings → Network there within "
            f"{seconds} and choose Keep, or the previous settings come back by themselves."
        )
    new = str(after.get("address") or "").partition("/")[0]
    if pending.get("op") == "network.static" and new and new != keys.local_address(request):
        url = url_for(str(ipaddress.ip_address(new)), port)
        return (
            f"The appliance moves to {new} in {ADDRESS_CHANGE_DELAY:g} s. Open "
            f"{url}admin/network within {seconds} and choose Keep, or the previous settings "
            "come back by themselves."
        )
    return (
        f"Applied. Choose Keep below within {seconds} once you have checked it works, "
        "or the previous settings come back by themselves."
    )


@admin
async def network_submit(request: web.Request) -> web.StreamResponse:
    """Change the address: DHCP, or a static address, gateway and DNS servers."""
    form = await form_fields(request)
    service = keys.network(request.app)
    actor, ip = keys.require_user(request).username, keys.client_ip(request)
    if form.get("mode", "") == "dhcp":
        work = service.set_dhcp(delay=ADDRESS_CHANGE_DELAY, actor=actor, ip=ip)
    else:
        work = service.set_static(
            form.get("address", ""),
            form.get("gateway", ""),
            form.get("dns", ""),
            delay=ADDRESS_CHANGE_DELAY,
            actor=actor,
            ip=ip,
        )
    done = await attempt(work)
    if isinstance(done, FormError):
        typed = {k: form.get(k, "") for k in ("mode", "address", "gateway", "dns")}
        return await _page(request, error=done, form=NETWORK_FORM, typed=typed)
    redirect_to(request, "network", _where_to_keep(request, done["pending"]), "success")


@admin
async def network_ntp_submit(request: web.Request) -> web.StreamResponse:
    """Change the NTP servers (none: the image's defaults)."""
    form = await form_fields(request)
    done = await attempt(
        keys.network(request.app).set_ntp(
            form.get("ntp", ""),
            actor=keys.require_user(request).username,
            ip=keys.client_ip(request),
        )
    )
    if isinstance(done, FormError):
        return await _page(request, error=done, form=NTP_FORM, typed={"ntp": form.get("ntp", "")})
    redirect_to(request, "network", _where_to_keep(request, done["pending"]), "success")


async def _decide(request: web.Request, keep: bool) -> web.StreamResponse:
    form = await form_fields(request)
    service = keys.network(request.app)
    who = keys.require_user(request).username, keys.client_ip(request)
    checkpoint = form.get("checkpoint", "")
    if keep:
        work = service.keep(checkpoint, actor=who[0], ip=who[1], via=keys.local_address(request))
    else:
        work = service.revert(checkpoint, actor=who[0], ip=who[1])
    done = await attempt(work)
    if isinstance(done, FormError):
        return await _page(request, error=done)
    if keep:
        redirect_to(request, "network", "Kept: these are the appliance's settings now.", "success")
    redirect_to(request, "network", "The previous settings are back.", "success")


@admin
async def network_keep(request: web.Request) -> web.StreamResponse:
    """Keep the change waiting for confirmation."""
    return await _decide(request, keep=True)


@admin
async def network_revert(request: web.Request) -> web.StreamResponse:
    """Put the previous settings back now."""
    return await _decide(request, keep=False)
