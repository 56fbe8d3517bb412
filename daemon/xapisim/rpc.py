"""The two RPC front ends: XML-RPC at ``/`` and JSON-RPC at ``/jsonrpc``.

XML-RPC answers are structs ``{"Status": "Success", "Value": v}`` or
``{"Status": "Failure", "ErrorDescription": [code, *params]}``; 64-bit ints
travel as decimal strings and datetimes as ``dateTime.iso8601``, as XAPI
sends them. JSON-RPC follows xen-api's wire-protocol document: version 1.0
answers ``{"result", "error": [code, *params], "id"}``, version 2.0 answers
``{"jsonrpc": "2.0", "result"|"error": {"code": 1, "message": code,
"data": params}, "id"}``; ints are JSON numbers there. Malformed requests get
HTTP 500, as on a real host.
"""

from __future__ import annotations

import json
import logging
import xmlrpc.client
from typing import Any

from aiohttp import web

from . import dispatch
from .errors import INTERNAL_ERROR, XapiError
from .pool import SimPool
from .schema import XDateTime

log = logging.getLogger(__name__)


def to_xmlrpc(value: Any) -> Any:
    """Adapt a value to XAPI's XML-RPC conventions."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return "" if value is None else value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, XDateTime):
        return xmlrpc.client.DateTime(str(value))
    if isinstance(value, dict):
        return {str(k): to_xmlrpc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_xmlrpc(v) for v in value]
    return value


def from_xmlrpc(value: Any) -> Any:
    """Turn XML-RPC objects into plain values (datetimes into XAPI text)."""
    if isinstance(value, xmlrpc.client.DateTime):
        return XDateTime(value.value)
    if isinstance(value, dict):
        return {k: from_xmlrpc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [from_xmlrpc(v) for v in value]
    return value


async def _invoke(pool: SimPool, method: str, params: list[Any]) -> tuple[bool, Any]:
    try:
        return True, await dispatch.call(pool, method, params)
    except XapiError as e:
        return False, e.description
    except Exception as e:  # a simulator bug is reported, not a dropped socket
        log.exception("%s failed", method)
        return False, [INTERNAL_ERROR, repr(e)]


def _http_500(detail: str) -> web.Response:
    body = (
        "<html><body><h1>HTTP 500 internal server error</h1>An unexpected error "
        f"occurred.<h1> Additional information </h1>{detail}</body></html>"
    )
    return web.Response(status=500, text=body, content_type="text/html")


def make_handlers(pool: SimPool) -> tuple[Any, Any]:
    """The XML-RPC and JSON-RPC request handlers bound to one pool."""

    async def xmlrpc_handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            params, method = xmlrpc.client.loads(body)
        except Exception as e:
            return _http_500(f"Xmlrpc.Parse_error({e!r})")
        if not method:
            return _http_500("Xmlrpc.Parse_error(no method)")
        ok, value = await _invoke(pool, method, [from_xmlrpc(p) for p in params])
        result = (
            {"Status": "Success", "Value": to_xmlrpc(value)}
            if ok
            else {"Status": "Failure", "ErrorDescription": value}
        )
        payload = xmlrpc.client.dumps((result,), methodresponse=True, allow_none=True)
        return web.Response(text=payload, content_type="text/xml")

    async def jsonrpc_handler(request: web.Request) -> web.StreamResponse:
        try:
            req = json.loads(await request.read())
            method = req["method"]
            params = req.get("params", [])
            call_id = req["id"]
            if not isinstance(method, str) or not isinstance(params, list) or call_id is None:
                raise ValueError("method, params or id")
        except (ValueError, KeyError, TypeError) as e:
            return _http_500(f"Jsonrpc.Malformed_method_request({e!r})")
        ok, value = await _invoke(pool, method, params)
        if req.get("jsonrpc") == "2.0":
            answer: dict[str, Any] = {"jsonrpc": "2.0", "id": call_id}
            if ok:
                answer["result"] = value
            else:
                answer["error"] = {"code": 1, "message": value[0], "data": value[1:]}
        else:
            answer = {
                "result": value if ok else None,
                "error": None if ok else value,
                "id": call_id,
            }
        return web.json_response(answer)

    return xmlrpc_handler, jsonrpc_handler
