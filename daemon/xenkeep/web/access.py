"""Declaring what each route requires, and the one check of it.

Every handler carries a :class:`Permission`; the auth middleware refuses a
route that declares none (deny by default) and otherwise decides through
:func:`authorize`, the only place a request is allowed or refused. The
declarations:

``@public``
    anyone (sign-in, the wizard, health);
``@signed_in``
    anyone signed in (their own account, the dashboard);
``@listing``
    anyone signed in who may hold roles on pool objects (not support
    accounts): a list the handler filters through the same decision
    (:meth:`~xenkeep.auth.permissions.Principal.may`);
``@support``
    support staff and super-administrators (diagnostics, logs);
``@admin``
    super-administrators only (people, grants, providers, the appliance:
    its storage, disks, mail, settings, audit log);
``@needs(action, kind, match=|query=|body=)``
    the action on the object the request names, found in the URL's
    parameters, its query or its body (form or JSON). Stacked, every one
    must hold (a restore: RESTORE on the source VM and MANAGE on the target
    pool).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from aiohttp import web

from xenkeep.auth.permissions import Action, Principal
from xenkeep.auth.places import Named, Places
from xenkeep.errors import PermissionDeniedError, ValidationError
from xenkeep.web.forms import json_body, read_form

PERMISSION_ATTR = "__xenkeep_permission__"
CSRF_EXEMPT_ATTR = "__xenkeep_csrf_exempt__"
TEMPORARY_PASSWORD_ATTR = "__xenkeep_while_password_change__"
Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


class Need(Enum):
    """Who a route is for, before any object is looked at."""

    PUBLIC = "public"
    SIGNED_IN = "signed in"
    LISTING = "signed in, lists filtered"
    SUPPORT = "support or super-administrator"
    SUPER_ADMIN = "super-administrator"
    OBJECT = "a role on the object"


class Source(Enum):
    """Where a request names its object."""

    MATCH = "match_info"
    QUERY = "query"
    BODY = "body"


@dataclass(frozen=True, slots=True)
class Requirement:
    """An action on the object named by one parameter of the request."""

    action: Action
    named: Named
    source: Source
    name: str
    #: Turns the parameter into the object's name ("3:<sr uuid>" → "3").
    pick: Callable[[str], str] | None = None

    def describe(self) -> str:
        """For messages and the matrix test: ``run backup-job (match_info job_id)``."""
        return f"{self.action} {self.named} ({self.source.value} {self.name})"


@dataclass(frozen=True, slots=True)
class Permission:
    """What one route requires."""

    need: Need
    requirements: tuple[Requirement, ...] = ()


def declare(permission: Permission) -> Callable[[Handler], Handler]:
    """Mark a handler with what it requires."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, PERMISSION_ATTR, permission)
        return handler

    return mark


def permission_of(handler: object) -> Permission | None:
    """The declared permission of a handler, if any."""
    found = getattr(handler, PERMISSION_ATTR, None)
    return found if isinstance(found, Permission) else None


public = declare(Permission(Need.PUBLIC))
signed_in = declare(Permission(Need.SIGNED_IN))
listing = declare(Permission(Need.LISTING))
support = declare(Permission(Need.SUPPORT))
admin = declare(Permission(Need.SUPER_ADMIN))


def needs(
    action: Action,
    named: Named,
    *,
    match: str | None = None,
    query: str | None = None,
    body: str | None = None,
    pick: Callable[[str], str] | None = None,
) -> Callable[[Handler], Handler]:
    """Require ``action`` on the object of kind ``named`` given by the URL
    parameter ``match``, the query parameter ``query`` or the body field
    ``body`` (exactly one). Stacked decorators add requirements."""
    given = [(s, n) for s, n in ((Source.MATCH, match), (Source.QUERY, query), (Source.BODY, body))]
    chosen = [(s, n) for s, n in given if n]
    if len(chosen) != 1:
        raise TypeError("needs(): name the object by exactly one of match, query or body")
    source, name = chosen[0]
    requirement = Requirement(action, named, source, str(name), pick)

    def mark(handler: Handler) -> Handler:
        before = permission_of(handler)
        if before is not None and before.need is not Need.OBJECT:
            raise TypeError(f"{handler.__name__}: needs() cannot be combined with {before.need}")
        earlier = before.requirements if before else ()
        setattr(
            handler,
            PERMISSION_ATTR,
            Permission(Need.OBJECT, (requirement, *earlier)),
        )
        return handler

    return mark


def while_password_change(handler: Handler) -> Handler:
    """Let a user signed in with a temporary password reach this handler
    (changing the password, signing out): every other one sends them to
    change their password first."""
    setattr(handler, TEMPORARY_PASSWORD_ATTR, True)
    return handler


def allowed_while_password_change(handler: object) -> bool:
    """True for a handler marked with :func:`while_password_change`, or public."""
    permission = permission_of(handler)
    return getattr(handler, TEMPORARY_PASSWORD_ATTR, False) is True or (
        permission is not None and permission.need is Need.PUBLIC
    )


def csrf_exempt(handler: Handler) -> Handler:
    """Let a public handler take cross-site POSTs: only a sign-in provider's
    callback (a SAML IdP posts its response from its own origin), which is
    protected instead by its one-time state, never by a session."""
    setattr(handler, CSRF_EXEMPT_ATTR, True)
    return handler


def is_csrf_exempt(handler: object) -> bool:
    """True for a handler marked with :func:`csrf_exempt` (and public)."""
    permission = permission_of(handler)
    return (
        getattr(handler, CSRF_EXEMPT_ATTR, False) is True
        and permission is not None
        and permission.need is Need.PUBLIC
    )


# --- the one check ------------------------------------------------------------------


async def _parameter(request: web.Request, requirement: Requirement) -> str:
    """The object's name as the request gives it ("" when absent)."""
    if requirement.source is Source.MATCH:
        value: object = request.match_info.get(requirement.name, "")
    elif requirement.source is Source.QUERY:
        value = request.query.get(requirement.name, "")
    elif request.content_type == "application/json":
        # Read through the handler's own reader (cached by aiohttp), so the
        # same limits and errors apply and the handler reads the same body.
        value = (await json_body(request)).get(requirement.name, "")
    else:
        form = await read_form(request)
        value = form.get(requirement.name, "")
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValidationError(f"{requirement.name!r} must be a string", field=requirement.name)
    text = str(value).strip()
    return requirement.pick(text) if requirement.pick and text else text


def allowed_before_objects(principal: Principal | None, need: Need) -> bool | None:
    """The decision for the needs that look at no object (None: look at them)."""
    if need is Need.PUBLIC:
        return True
    if principal is None:
        return False
    if need is Need.SIGNED_IN:
        return True
    if need is Need.LISTING:
        return principal.sees_objects
    if need is Need.SUPPORT:
        return principal.may_support
    if need is Need.SUPER_ADMIN:
        return principal.is_super_admin
    return None


async def authorize(
    request: web.Request, permission: Permission, principal: Principal | None, places: Places
) -> None:
    """PermissionDeniedError unless ``principal`` may make this request.

    A super-administrator is checked like anyone (an object requirement
    still has to find its parameter), so a route declared wrong fails the
    same way for everyone.
    """
    decided = allowed_before_objects(principal, permission.need)
    if decided is None and principal is not None:
        decided = True
        for requirement in permission.requirements:
            ref = await _parameter(request, requirement)
            if not ref:
                raise ValidationError(f"{requirement.name!r} is required", field=requirement.name)
            path = await places.path(requirement.named, ref)
            if not principal.may(requirement.action, path):
                decided = False
                break
    if not decided:
        raise PermissionDeniedError("your permissions do not allow this")
