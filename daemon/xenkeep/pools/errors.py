"""Errors of the pool registry: each a :class:`PoolError` and an HTTP kind.

Trouble with the pool itself (unreachable, a refused password) is an
:class:`~xenkeep.xapi.errors.XapiError`, raised by the client.
"""

from __future__ import annotations

from xenkeep.errors import ConflictError, NotFoundError, ValidationError, XenKeepError


class PoolError(XenKeepError):
    """Anything the pool registry refuses (the domain: no HTTP kind)."""


class PoolNotFoundError(PoolError, NotFoundError):
    """No pool is registered with that id, or it is not connected."""


class PoolExistsError(PoolError, ConflictError):
    """A pool with that URL is already registered."""


class PoolInputError(PoolError, ValidationError):
    """A registration form or body that does not fit."""
