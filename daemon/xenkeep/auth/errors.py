"""Errors of sign-in, accounts, tokens and two-factor enrolment.

Every one is an :class:`AuthError` (``except AuthError`` catches them all)
and an HTTP kind; the codes are the kinds' own, so the API's error codes
are the same as before the domain existed.
"""

from __future__ import annotations

from xenkeep.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    UnavailableError,
    ValidationError,
    XenKeepError,
)


class AuthError(XenKeepError):
    """Anything the authentication domain refuses (the domain: no HTTP kind)."""


class CredentialsRejectedError(AuthError, AuthenticationError):
    """Wrong user name, password, TOTP code or setup token, or an expired setup session."""


class AttemptsThrottledError(AuthError, RateLimitedError):
    """Too many failed attempts from this address or on this account."""


class AccountExistsError(AuthError, ConflictError):
    """An account of that name already exists."""


class ApiTokenNotFoundError(AuthError, NotFoundError):
    """No such API token for this user."""


class AccountInputError(AuthError, ValidationError):
    """A user name, password, token name or TOTP code that does not fit."""


class SetupAlreadyDoneError(AuthError, ConflictError):
    """The setup token was used by another request a moment ago: one administrator only."""


class CurrentPasswordError(AuthError, ValidationError):
    """The current password given to change it is not the right one."""


class NoLocalPasswordError(AuthError, ConflictError):
    """The account signs in through a provider: it has no password here."""


class SessionNotFoundError(AuthError, NotFoundError):
    """No such session of this user."""


class AccountNotFoundError(AuthError, NotFoundError):
    """No account with that id."""


class GroupNotFoundError(AuthError, NotFoundError):
    """No group with that id."""


class GroupExistsError(AuthError, ConflictError):
    """A group of that name already exists."""


class GrantNotFoundError(AuthError, NotFoundError):
    """No grant with that id."""


class GrantInputError(AuthError, ValidationError):
    """A grant whose subject, object or role does not fit."""


class LastAdministratorError(AuthError, ConflictError):
    """The change would leave no enabled super-administrator."""


class PasswordChangeRequiredError(AuthError, PermissionDeniedError):
    """Signed in with a temporary password: only changing it is allowed."""

    code = "password_change_required"


class ProviderNotFoundError(AuthError, NotFoundError):
    """No sign-in provider of that id or name (or it is not enabled)."""


class ProviderExistsError(AuthError, ConflictError):
    """A sign-in provider of that name or address already exists."""


class ProviderConfigError(AuthError, ValidationError):
    """A sign-in provider's setting that does not fit (names its field)."""


class ProviderUnavailableError(AuthError, UnavailableError):
    """The sign-in provider's server cannot be reached or answered badly."""
