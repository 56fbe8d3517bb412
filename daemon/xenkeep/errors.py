"""One exception tree for the whole daemon.

Code below ``web/`` raises these; a single middleware maps them to an HTML
page or to the JSON envelope ``{"error": {"code", "message"}}``. Services
never import aiohttp: the HTTP status travels on the exception.

The tree has two axes. An *HTTP kind* (:class:`ValidationError`,
:class:`NotFoundError`, :class:`ConflictError`, :class:`UpstreamError`...)
says how a user should read the failure and carries the status. A *domain
base* (``RepoError``, ``XapiError``, ``PoolError``, ``AuthError``, each in
its domain's ``errors.py``) says which part of the appliance failed and
carries no status of its own. A leaf inherits from both::

    class PointNotFoundError(RepoError, NotFoundError): ...

so ``except RepoError`` catches every repository error while the
middleware still answers 404. A class whose bases bring two different
statuses must say which one it is (see :meth:`XenKeepError.__init_subclass__`).
"""

from __future__ import annotations

from typing import Any, ClassVar


def _kind_status(cls: type[XenKeepError]) -> int | None:
    """The status ``cls`` gets from an HTTP kind, or None when it has no kind."""
    for klass in cls.__mro__:
        if klass is XenKeepError:
            return None
        if "status" in vars(klass):
            return int(vars(klass)["status"])
    return None


class XenKeepError(Exception):
    """Base of every error the daemon reports to a user."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    #: Whether a form shows this error next to what was typed (the person
    #: can act on it) instead of the error page; None: decided by the status
    #: (see :attr:`shown_on_form`).
    on_form: ClassVar[bool | None] = None
    #: The form field the error is about, if any.
    field: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    @property
    def with_hint(self) -> str:
        """The message and, in brackets, the hint: one line to show a person."""
        return self.message + (f" ({self.hint})" if self.hint else "")

    @property
    def shown_on_form(self) -> bool:
        """True for what the person filling a form can act on: bad input,
        a conflict, a refused pool (502), a missing part (503); an internal
        fault goes to the error page."""
        if self.on_form is not None:
            return self.on_form
        return self.status < 500 or self.status in (502, 503)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A leaf of two kinds (a pool failure that is also bad input) would
        # otherwise get whichever status its first base happens to carry.
        super().__init_subclass__(**kwargs)
        if "status" in vars(cls):
            return
        statuses = {
            s
            for base in cls.__bases__
            if issubclass(base, XenKeepError) and (s := _kind_status(base)) is not None
        }
        if len(statuses) > 1:
            raise TypeError(
                f"{cls.__name__} inherits the statuses {sorted(statuses)}: "
                "set `status` to the kind it is"
            )


# --- domain errors of the daemon itself (no HTTP kind: internal faults) -------------


class ConfigError(XenKeepError):
    """An invalid setting: the daemon refuses to start."""

    code = "config_error"


class StoreError(XenKeepError):
    """The database cannot be used (corrupted, newer than this code, ...)."""

    code = "store_error"


class DatabaseTooNewError(StoreError):
    """The database was migrated by a newer XenKeep; nothing is changed."""

    code = "database_too_new"


# --- HTTP kinds -------------------------------------------------------------------


class ValidationError(XenKeepError):
    """Input that does not fit: a form field, a JSON body, a parameter."""

    status = 400
    code = "invalid_input"

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.field = field


class AuthenticationError(XenKeepError):
    """Not signed in, or the credentials are wrong."""

    status = 401
    code = "unauthenticated"


class PermissionDeniedError(XenKeepError):
    """Signed in, but not allowed to do this."""

    status = 403
    code = "forbidden"


class CsrfError(PermissionDeniedError):
    """A state-changing request without a valid CSRF token."""

    code = "csrf_failed"


class NotFoundError(XenKeepError):
    """The object does not exist (or the user may not know it does)."""

    status = 404
    code = "not_found"


class ConflictError(XenKeepError):
    """The request contradicts the current state (e.g. admin already exists)."""

    status = 409
    code = "conflict"


class RateLimitedError(XenKeepError):
    """Too many attempts; retry after ``retry_after`` seconds."""

    status = 429
    code = "rate_limited"
    # The error page says when to retry (and sends Retry-After); the form's
    # fields were not the problem.
    on_form = False

    def __init__(self, message: str, *, retry_after: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class UpstreamError(XenKeepError):
    """Something behind the appliance (a pool) failed: the appliance is fine."""

    status = 502
    code = "upstream_error"


class UnavailableError(XenKeepError):
    """A part of the system the request needs is not there or not answering."""

    status = 503
    code = "unavailable"


#: Every HTTP kind, for :func:`kind_of`.
HTTP_KINDS: tuple[type[XenKeepError], ...] = (
    ValidationError,
    AuthenticationError,
    PermissionDeniedError,
    NotFoundError,
    ConflictError,
    RateLimitedError,
    UpstreamError,
    UnavailableError,
)


def kind_of(error: XenKeepError) -> type[XenKeepError]:
    """The HTTP kind an error answers as (:class:`XenKeepError` for an internal fault)."""
    for kind in HTTP_KINDS:
        if isinstance(error, kind) and kind.status == error.status:
            return kind
    return XenKeepError
