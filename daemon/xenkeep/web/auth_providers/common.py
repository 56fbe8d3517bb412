"""What the provider pages and API share: the appliance's address, reading
a provider form, a provider as JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from xenkeep.auth.providers.base import CheckResult, FieldSpec, ProviderRecord, ProviderType
from xenkeep.auth.providers.store import GroupMapping
from xenkeep.web import keys
from xenkeep.web.server import own_https_host

#: Fields every provider form has besides its kind's own.
COMMON_FIELDS = ("name", "slug", "enabled")


async def base_url(request: web.Request) -> str:
    """The address identity providers send the browser back to.

    The administrator's setting if there is one; otherwise the name the
    browser used when it is one of the appliance's own (never a forged Host
    header), else the address it connected to, with the port it used.
    """
    configured = await keys.providers(request.app).public_url()
    if configured:
        return configured
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    local = str(sockname[0]) if sockname else "localhost"
    port = int(sockname[1]) if sockname else 443
    host = own_https_host(request.host, {keys.settings(request.app).effective_hostname}, local)
    return f"https://{host}" + ("" if port == 443 else f":{port}")


def form_values(data: Mapping[str, Any], ptype: ProviderType) -> dict[str, str]:
    """A provider's settings from a form or JSON body, as strings; unknown
    keys are ignored, booleans become "on" / ""."""
    names = {*COMMON_FIELDS, *(f.name for f in ptype.fields)}
    values: dict[str, str] = {}
    for name in names:
        value = data.get(name)
        if isinstance(value, bool):
            values[name] = "on" if value else ""
        elif isinstance(value, int | float) and not isinstance(value, bool):
            values[name] = str(value)
        elif isinstance(value, str):
            values[name] = value
    return values


def shown_config(record: ProviderRecord, ptype: ProviderType) -> dict[str, Any]:
    """A provider's settings as the form and API show them: secrets only
    as whether one is stored, never their value."""
    shown: dict[str, Any] = {}
    for spec in ptype.fields:
        if spec.kind == "secret":
            shown[spec.name] = bool(record.secrets.get(spec.name))
        else:
            shown[spec.name] = record.config.get(spec.name, spec.default)
    return shown


def field_json(spec: FieldSpec) -> dict[str, Any]:
    """One setting's description, for API clients that build forms."""
    return {
        "name": spec.name,
        "label": spec.label,
        "kind": spec.kind,
        "required": spec.required,
        "help": spec.help,
        "default": spec.default,
        "choices": [list(c) for c in spec.choices],
    }


def provider_json(
    record: ProviderRecord, ptype: ProviderType, mappings: list[GroupMapping]
) -> dict[str, Any]:
    """A provider as the API shows it (no secret values)."""
    return {
        "id": record.id,
        "kind": str(record.kind),
        "name": record.name,
        "slug": record.slug,
        "enabled": record.enabled,
        "default": record.is_default,
        "style": str(record.style),
        "config": shown_config(record, ptype),
        "mappings": [{"group": m.external_group, "group_id": m.group_id} for m in mappings],
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def check_json(result: CheckResult) -> dict[str, Any]:
    """A configuration test's answer."""
    identity = result.identity
    return {
        "ok": result.ok,
        "steps": [{"label": s.label, "ok": s.ok, "detail": s.detail} for s in result.steps],
        "identity": None
        if identity is None
        else {
            "subject": identity.subject,
            "username": identity.username,
            "display_name": identity.display_name,
            "email": identity.email,
            "groups": list(identity.groups),
        },
    }
