"""One exception tree for the whole daemon.

Code below ``web/`` raises these; a single middleware maps them to an HTML
page or to the JSON envelope ``{"error": {"code", "message"}}``. Each leaf
carries the HTTP status it stands for, so services never import aiohttp.
"""

from __future__ import annotations


class XenKeepError(Exception):
    """Base of every error the daemon reports to a user."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(XenKeepError):
    """An invalid setting: the daemon refuses to start."""

    code = "config_error"


class StoreError(XenKeepError):
    """The database cannot be used (corrupted, newer than this code, ...)."""

    code = "store_error"


class DatabaseTooNewError(StoreError):
    """The database was migrated by a newer XenKeep; nothing is changed."""

    code = "database_too_new"


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

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnavailableError(XenKeepError):
    """A part of the system the request needs is not there or not answering."""

    status = 503
    code = "unavailable"
