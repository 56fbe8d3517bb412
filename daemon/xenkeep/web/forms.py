"""Reading request bodies: forms and JSON, with clear errors."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy

from xenkeep.errors import ValidationError, XenKeepError
from xenkeep.web import keys
from xenkeep.web.flash import local_target

T = TypeVar("T")

MAX_JSON_BYTES = 1 << 20
#: No body of the API nests deeper than a few levels; Python's parser gives
#: up (RecursionError) near 1,000, and whatever walks the value afterwards
#: may give up sooner, so depth is refused well before either.
MAX_JSON_DEPTH = 32

# A string runs to its closing quote or, unterminated, to the end: never
# backtracking, so a hostile body of quotes and backslashes stays linear.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]")


def nests_too_deep(raw: bytes) -> bool:
    """True when ``raw`` nests arrays and objects deeper than MAX_JSON_DEPTH.

    Found without parsing: brackets inside strings do not count; a malformed
    text gets some answer and is refused by the parser afterwards.
    """
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False  # too few brackets to nest that deep: spare the scan
    brackets = _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", raw))
    depth = accumulate(1 if b in b"[{" else -1 for b in brackets)
    return max(depth, default=0) > MAX_JSON_DEPTH


async def in_read_time(request: web.Request, reading: Awaitable[T]) -> T:
    """``reading`` (of the request's body), if the client sends it in time.

    aiohttp waits for a body as long as the client takes; a client sending
    a byte now and then would hold the connection and a handler for ever.
    The answer is 408, and the connection is closed after a short linger.
    """
    seconds = keys.settings(request.app).request_read_seconds
    try:
        async with asyncio.timeout(seconds):
            return await reading
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text=f"the request body did not arrive within {seconds} seconds"
        ) from None


async def read_form(request: web.Request) -> MultiDictProxy[str | bytes | FileField]:
    """The request's urlencoded or multipart form, read in time; a body that
    is no form (a multipart body without its boundary) is ValidationError,
    never a 500 (found by the fuzz, through a route reading its object from
    the body)."""
    try:
        return await in_read_time(request, request.post())
    except ValueError as exc:
        raise ValidationError(f"the body is not a readable form: {exc}") from None


async def form_fields(request: web.Request) -> dict[str, str]:
    """A urlencoded or multipart form as plain strings (files are dropped)."""
    form = await read_form(request)
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def json_body(request: web.Request) -> dict[str, Any]:
    """A JSON object body, or ValidationError with what is wrong."""
    if request.content_type != "application/json":
        raise ValidationError("send a JSON body with Content-Type: application/json")
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise ValidationError("the JSON body is too large")
    raw = await in_read_time(request, request.read())
    if nests_too_deep(raw):
        raise ValidationError(f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(raw)
    # ValueError, not only JSONDecodeError: a number of more than 4,300
    # digits makes the parser raise a plain ValueError (found by the fuzz).
    except ValueError as exc:
        raise ValidationError(f"malformed JSON: {exc}") from None
    except RecursionError:  # not reached after the depth check; never a 500
        raise ValidationError("the JSON body nests too deeply") from None
    if not isinstance(data, dict):
        raise ValidationError("the JSON body must be an object")
    return data


#: Sign-in fields, checked before anything is hashed, stored or logged: no
#: account name is longer (local ones are at most 64 characters; room is
#: left for directory accounts), and a password this long is no safer but
#: costs the hash real time.
MAX_USERNAME_INPUT = 256
MAX_PASSWORD_INPUT = 1024
#: A TOTP code, or a recovery code typed with its dashes (see auth.recovery).
MAX_CODE_INPUT = 32


def limited(value: str, name: str, limit: int) -> str:
    """``value`` if at most ``limit`` characters, else ValidationError naming it."""
    if len(value) > limit:
        raise ValidationError(f"{name!r} is longer than {limit} characters", field=name)
    return value


def text_field(
    data: dict[str, Any],
    name: str,
    *,
    required: bool = True,
    default: str = "",
    max_length: int | None = None,
) -> str:
    """A string member of a JSON body (of at most ``max_length`` characters)."""
    value = data.get(name)
    if value is None:
        if required:
            raise ValidationError(f"{name!r} is required", field=name)
        return default
    if not isinstance(value, str):
        raise ValidationError(f"{name!r} must be a string", field=name)
    return value if max_length is None else limited(value, name, max_length)


def string_list(data: dict[str, Any], name: str, *, max_items: int = 16) -> list[str]:
    """A member of a JSON body that is a short list of strings (absent: empty)."""
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(f"{name!r} must be a list of strings", field=name)
    if len(value) > max_items:
        raise ValidationError(f"{name!r} holds more than {max_items} items", field=name)
    return value


def number_field(data: dict[str, Any], name: str, default: float) -> float:
    """A member of a JSON body that is a number (absent: ``default``)."""
    value = data.get(name, default)
    # bool is an int to Python; true is no number. JSON's parser takes NaN too.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{name!r} must be a number", field=name)
    return float(value)


def sign_in_fields(data: dict[str, Any]) -> tuple[str, str, str]:
    """User name, password and code of a sign-in (form or JSON), bounded."""
    return (
        text_field(data, "username", max_length=MAX_USERNAME_INPUT),
        text_field(data, "password", max_length=MAX_PASSWORD_INPUT),
        text_field(data, "code", required=False, max_length=MAX_CODE_INPUT),
    )


#: SQLite stores 64-bit integers; a bigger id reached the database as an
#: OverflowError and answered 500 (found by the fuzz). No id is that large.
_SQL_INT_RANGE = range(-(2**63), 2**63)


def whole_number(text: str, name: str, message: str) -> int:
    """``text`` as an integer SQLite can hold, or ValidationError(message)."""
    try:
        value = int(text)
    except ValueError:
        raise ValidationError(message, field=name) from None
    if value not in _SQL_INT_RANGE:
        raise ValidationError(message, field=name)
    return value


def int_param(request: web.Request, name: str) -> int:
    """A whole-number path parameter, or ValidationError naming it."""
    return whole_number(request.match_info[name], name, f"not a valid {name}")


def int_query(request: web.Request, name: str, default: int) -> int:
    return whole_number(request.query.get(name, str(default)), name, f"{name} must be a number")


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
