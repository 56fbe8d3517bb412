"""How a class module declares the XAPI methods it implements.

Each module under ``classes/`` makes one ``Registry`` and decorates its
handlers with ``@methods.api("VM.start")``. A handler is
``async def handler(pool, session, *params)``: the pool, the caller's
session ref, then the call's parameters after the session, in the
datamodel's order. Its signature is the arity check: parameters with a
default are optional, so a call with fewer or more parameters fails with
``MESSAGE_PARAMETER_COUNT_MISMATCH`` before the handler runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

Handler = Callable[..., Awaitable[Any]]


class Registry:
    """The handlers of one class module, by XAPI method name."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}

    def api(self, name: str) -> Callable[[Handler], Handler]:
        """Register a handler under its XAPI name (``"<class>.<message>"``)."""

        def deco(fn: Handler) -> Handler:
            if name in self.handlers:
                raise ValueError(f"{name} is registered twice")
            self.handlers[name] = fn
            return fn

        return deco


def merge(*registries: Registry) -> dict[str, Handler]:
    """One table of every handler; a name claimed by two modules is a bug."""
    table: dict[str, Handler] = {}
    for registry in registries:
        for name, fn in registry.handlers.items():
            if name in table:
                raise ValueError(f"{name} is registered by two class modules")
            table[name] = fn
    return table


def arity(fn: Handler) -> tuple[int, int]:
    """(min, max) parameter counts of a handler, pool and session excluded."""
    params = list(inspect.signature(fn).parameters.values())[2:]
    required = sum(1 for p in params if p.default is inspect.Parameter.empty)
    return required, len(params)
