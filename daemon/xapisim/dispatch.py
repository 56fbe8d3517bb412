"""From ``"Class.method"`` and its parameters to a handler's answer, as XAPI does it.

``call(pool, method, params)`` is what both RPC front ends (``rpc.py``)
invoke. It logs in without a session; otherwise it checks the session, the
method name (unknown: ``MESSAGE_METHOD_UNKNOWN``; in the datamodel but not
simulated: ``INTERNAL_ERROR``) and the parameter count, coerces numeric and
boolean parameters to the datamodel's types, applies injected faults, runs
``Async.<call>`` as a task, and otherwise awaits the handler.

A method's handler is found in the table below, one module per XAPI class::

    session         classes/session.py      (login: here)
    pool, host      classes/host_pool.py
    VM              classes/vm.py
    VDI             classes/vdi.py
    VBD, VIF        classes/vbd_vif.py
    network         classes/network.py
    SR, PBD         classes/sr_pbd.py
    task            classes/task.py
    message         classes/message.py
    event           classes/event.py
    sim             classes/sim.py          (simulator-only calls)

and, failing that, among the accessors every class has (``get_record``,
``get_<field>``, ``set_<field>``, ``add_to_<map>``...: ``classes/generic.py``).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from .classes import (
    event,
    generic,
    host_pool,
    message,
    network,
    session,
    sim,
    sr_pbd,
    task,
    vbd_vif,
    vdi,
    vm,
)
from .classes.registry import Handler, arity, merge
from .db import now
from .errors import (
    FIELD_TYPE_ERROR,
    INTERNAL_ERROR,
    MESSAGE_METHOD_UNKNOWN,
    MESSAGE_PARAMETER_COUNT_MISMATCH,
    SESSION_INVALID,
    XapiError,
)
from .pool import SimPool
from .schema import CLASSES, coerce

HANDLERS: dict[str, Handler] = merge(
    session.methods,
    host_pool.methods,
    vm.methods,
    vdi.methods,
    vbd_vif.methods,
    network.methods,
    sr_pbd.methods,
    task.methods,
    message.methods,
    event.methods,
    sim.methods,
)

_LOGINS = ("session.login_with_password", "session.slave_local_login_with_password")


async def call(pool: SimPool, method: str, params: list[Any]) -> Any:
    """Run one API call and return its value or raise XapiError."""
    is_async = method.startswith("Async.")
    name = method[len("Async.") :] if is_async else method
    if name in _LOGINS:
        if not 2 <= len(params) <= 4:
            raise XapiError(MESSAGE_PARAMETER_COUNT_MISMATCH, method, 4, len(params))
        pool.faults.raise_if_failing(name)
        originator = str(params[3]) if len(params) > 3 else ""
        return pool.login(params[0], params[1], originator)
    if not params:
        handler_known = name in HANDLERS or generic.accessor(pool.db, name) is not None
        if not handler_known:
            raise XapiError(MESSAGE_METHOD_UNKNOWN, method)
        raise XapiError(SESSION_INVALID, "")
    session_ref = pool.check_session(params[0])
    pool.db.get("session", session_ref)["last_active"] = now()
    fn, (lo, hi) = _resolve(pool, name, method)
    args = params[1:]
    if not lo <= len(args) <= hi:
        raise XapiError(MESSAGE_PARAMETER_COUNT_MISMATCH, method, hi + 1, len(params))
    args = _coerce_args(name, args)
    if is_async:
        return pool.tasks.spawn(name, lambda: fn(session_ref, *args))
    pool.faults.raise_if_failing(name)
    delay = pool.faults.call_delay(name)
    if delay:
        await asyncio.sleep(delay)
    return await fn(session_ref, *args)


def _resolve(
    pool: SimPool, name: str, method: str
) -> tuple[Callable[..., Awaitable[Any]], tuple[int, int]]:
    """The handler bound to the pool (called with session, *params) and its arity."""
    handler = HANDLERS.get(name)
    if handler is not None:
        return functools.partial(handler, pool), arity(handler)
    found = generic.accessor(pool.db, name)
    if found is not None:
        return found
    cls, _, op = name.partition(".")
    if cls in CLASSES and op in CLASSES[cls].messages:
        raise XapiError(INTERNAL_ERROR, f"xapisim does not simulate {name}")
    raise XapiError(MESSAGE_METHOD_UNKNOWN, method)


def _coerce_args(name: str, args: list[Any]) -> list[Any]:
    """Numbers and booleans as the datamodel types them (XML-RPC sends int64 as text)."""
    cls, _, op = name.partition(".")
    types = CLASSES[cls].messages.get(op) if cls in CLASSES else None
    if not types or op.startswith(("set_", "add_", "remove_")):
        return list(args)
    out = list(args)
    for i, t in enumerate(types[1:]):
        if i < len(out) and t in ("int", "float", "bool"):
            try:
                out[i] = coerce(t, out[i])
            except (TypeError, ValueError) as e:
                raise XapiError(FIELD_TYPE_ERROR, f"param {i + 1}") from e
    return out
