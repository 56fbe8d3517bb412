"""Reading request bodies: forms and JSON, with clear errors."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from xenkeep.errors import ValidationError

MAX_JSON_BYTES = 1 << 20


async def form_fields(request: web.Request) -> dict[str, str]:
    """A urlencoded or multipart form as plain strings (files are dropped)."""
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def json_body(request: web.Request) -> dict[str, Any]:
    """A JSON object body, or ValidationError with what is wrong."""
    if request.content_type != "application/json":
        raise ValidationError("send a JSON body with Content-Type: application/json")
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise ValidationError("the JSON body is too large")
    raw = await request.read()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValidationError("the JSON body must be an object")
    return data


def text_field(data: dict[str, Any], name: str, *, required: bool = True, default: str = "") -> str:
    """A string member of a JSON body."""
    value = data.get(name)
    if value is None:
        if required:
            raise ValidationError(f"{name!r} is required", field=name)
        return default
    if not isinstance(value, str):
        raise ValidationError(f"{name!r} must be a string", field=name)
    return value


def int_param(request: web.Request, name: str) -> int:
    """A whole-number path parameter, or ValidationError naming it."""
    try:
        return int(request.match_info[name])
    except ValueError:
        raise ValidationError(f"not a valid {name}", field=name) from None


def safe_next(target: str | None, default: str = "/") -> str:
    """A post-sign-in destination that stays on this appliance."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
