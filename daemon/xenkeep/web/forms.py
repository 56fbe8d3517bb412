"""Reading request bodies: forms and JSON, with clear errors."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from xenkeep.errors import ValidationError, XenKeepError
from xenkeep.web.flash import local_target

T = TypeVar("T")

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


def int_query(request: web.Request, name: str, default: int) -> int:
    try:
        return int(request.query.get(name, str(default)))
    except ValueError:
        raise ValidationError(f"{name} must be a number", field=name) from None


def safe_next(target: str | None, default: str = "/") -> str:
    """A post-sign-in destination that stays on this appliance (see
    :func:`flash.local_target`), or ``default``."""
    return local_target(target) or default


@dataclass(frozen=True)
class FormError:
    """What a form needs to show a refusal again: the words, the field, the status."""

    message: str
    field: str | None
    status: int

    @classmethod
    def of(cls, exc: XenKeepError) -> FormError:
        """The form's view of ``exc``."""
        message = exc.message + (f" ({exc.hint})" if exc.hint else "")
        # A pool's refusal (502) is about what was typed in the form: 400.
        status = exc.status if exc.status < 500 or exc.status == 503 else 400
        return cls(message, exc.field, status)


async def attempt(work: Awaitable[T]) -> T | FormError:
    """Await a service call from a form handler: its result, or the refusal
    to render the form again with (:attr:`XenKeepError.shown_on_form`).

    Other errors go on to the error middleware, so handlers never branch on
    codes or statuses.
    """
    try:
        return await work
    except XenKeepError as exc:
        if not exc.shown_on_form:
            raise
        return FormError.of(exc)
