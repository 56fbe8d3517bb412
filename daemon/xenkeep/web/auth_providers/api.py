"""The sign-in providers' JSON API (super-administrators)."""

from __future__ import annotations

from aiohttp import web

from xenkeep.auth.providers import catalog
from xenkeep.errors import ValidationError
from xenkeep.web import keys
from xenkeep.web.access import admin
from xenkeep.web.auth_providers.common import (
    base_url,
    check_json,
    field_json,
    form_values,
    provider_json,
)
from xenkeep.web.forms import (
    MAX_PASSWORD_INPUT,
    MAX_USERNAME_INPUT,
    int_param,
    json_body,
    text_field,
)


async def _shown(request: web.Request, provider_id: int) -> web.Response:
    service = keys.providers(request.app)
    record = await service.get(provider_id)
    ptype = catalog.provider_type(record.kind)
    return web.json_response(provider_json(record, ptype, await service.mappings(record.id)))


@admin
async def api_provider_types(request: web.Request) -> web.StreamResponse:
    """The kinds of provider this build offers and their settings."""
    return web.json_response(
        {
            "types": [
                {"kind": str(t.kind), "label": t.label, "fields": [field_json(f) for f in t.fields]}
                for t in catalog.available()
            ]
        }
    )


@admin
async def api_providers(request: web.Request) -> web.StreamResponse:
    """Every configured provider and the sign-in address."""
    service = keys.providers(request.app)
    shown = []
    for record in await service.all():
        ptype = catalog.provider_type(record.kind)
        shown.append(provider_json(record, ptype, await service.mappings(record.id)))
    return web.json_response(
        {
            "providers": shown,
            "public_url": await service.public_url(),
            "effective_url": await base_url(request),
        }
    )


@admin
async def api_provider_create(request: web.Request) -> web.StreamResponse:
    """Add a provider: ``{"kind", "name", "slug"?, "enabled"?, <its settings>}``."""
    body = await json_body(request)
    kind = text_field(body, "kind", max_length=16)
    ptype = catalog.provider_type(kind)
    record = await keys.providers(request.app).create(
        kind,
        form_values(body, ptype),
        actor=keys.require_user(request).username,
        ip=keys.client_ip(request),
    )
    response = await _shown(request, record.id)
    response.set_status(201)
    return response


@admin
async def api_provider(request: web.Request) -> web.StreamResponse:
    """One provider."""
    return await _shown(request, int_param(request, "provider_id"))


@admin
async def api_provider_update(request: web.Request) -> web.StreamResponse:
    """Change a provider: the whole settings object (secrets omitted keep theirs);
    ``mappings`` (a list of ``{"group", "group_id"}``), ``default`` optional."""
    service = keys.providers(request.app)
    record = await service.get(int_param(request, "provider_id"))
    body = await json_body(request)
    actor = keys.require_user(request).username
    ip = keys.client_ip(request)
    ptype = catalog.provider_type(record.kind)
    values = form_values(body, ptype)
    values.setdefault("name", record.name)
    await service.update(record.id, values, actor=actor, ip=ip)
    if "mappings" in body:
        mappings = body["mappings"]
        if not isinstance(mappings, list) or not all(
            isinstance(m, dict)
            and isinstance(m.get("group"), str)
            and isinstance(m.get("group_id"), int)
            and not isinstance(m.get("group_id"), bool)
            for m in mappings
        ):
            raise ValidationError(
                '\'mappings\' is a list of {"group": text, "group_id": number}', field="mappings"
            )
        await service.set_mappings(
            record.id, [(m["group"], m["group_id"]) for m in mappings], actor=actor, ip=ip
        )
    if body.get("default") is True:
        await service.set_default(record.id, actor=actor, ip=ip)
    return await _shown(request, record.id)


@admin
async def api_provider_delete(request: web.Request) -> web.StreamResponse:
    """Remove a provider and the accounts it brought."""
    removed = await keys.providers(request.app).delete(
        int_param(request, "provider_id"),
        actor=keys.require_user(request).username,
        ip=keys.client_ip(request),
    )
    return web.json_response({"deleted": True, "accounts_removed": removed})


@admin
async def api_provider_test(request: web.Request) -> web.StreamResponse:
    """Test a provider: ``{"username"?, "password"?}`` to look a user up (LDAP)."""
    body = await json_body(request) if request.can_read_body else {}
    result = await keys.providers(request.app).check(
        int_param(request, "provider_id"),
        await base_url(request),
        username=text_field(body, "username", required=False, max_length=MAX_USERNAME_INPUT),
        password=text_field(body, "password", required=False, max_length=MAX_PASSWORD_INPUT),
        actor=keys.require_user(request).username,
        ip=keys.client_ip(request),
    )
    return web.json_response(check_json(result))


@admin
async def api_providers_settings(request: web.Request) -> web.StreamResponse:
    """``{"public_url": "https://..."}`` ('' derives it from the request)."""
    body = await json_body(request)
    await keys.providers(request.app).set_public_url(
        text_field(body, "public_url", max_length=300),
        actor=keys.require_user(request).username,
        ip=keys.client_ip(request),
    )
    return await api_providers(request)
