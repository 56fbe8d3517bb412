"""Errors of the XAPI client, in the daemon's error tree.

A pool that answers with a failure raises :class:`XapiFailure` carrying
XAPI's own code and parameters (``SESSION_AUTHENTICATION_FAILED``,
``VM_BAD_POWER_STATE``...); a pool that cannot be reached raises
:class:`XapiConnectionError`. Every one is an :class:`XapiError` (the
domain) and, but for a refused password, an
:class:`~xenkeep.errors.UpstreamError` (502 to the web layer: the appliance
is fine, the pool behind it is not).
"""

from __future__ import annotations

from collections.abc import Sequence

from xenkeep.errors import UpstreamError, ValidationError, XenKeepError

# Readable sentences for the failures an administrator meets most; others
# are shown as XAPI's code and parameters.
_MESSAGES = {
    "SESSION_AUTHENTICATION_FAILED": "the pool refused the user name or password",
    "SESSION_INVALID": "the pool session expired or was closed",
    "HANDLE_INVALID": "the pool has no such object",
    "VM_BAD_POWER_STATE": "the VM is not in the power state this needs",
    "SR_FULL": "the storage repository is full",
    "OPERATION_BLOCKED": "the operation is blocked on this object",
    "TASK_CANCELLED": "the task was cancelled",
    "EVENTS_LOST": "the pool dropped events; a full resync is needed",
    "MESSAGE_METHOD_UNKNOWN": "the pool does not know this method",
    "HOST_IS_SLAVE": "this host is not the pool master",
}


class XapiError(XenKeepError):
    """Anything that went wrong talking to a pool (the domain: no HTTP kind)."""

    code = "xapi_error"


class XapiConnectionError(XapiError, UpstreamError):
    """The pool could not be reached, or the connection broke or timed out."""

    code = "xapi_unreachable"


class FingerprintMismatchError(XapiConnectionError):
    """The pool's TLS certificate is not the one the admin confirmed."""

    code = "xapi_fingerprint_mismatch"

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(
            f"the pool's certificate fingerprint is {got}, not the confirmed {expected}",
            hint="if the pool's certificate was renewed, remove and re-add the pool "
            "after checking the new fingerprint on the pool master",
        )
        self.expected = expected
        self.got = got


class XapiFailure(XapiError, UpstreamError):
    """The pool answered with an XAPI failure ``[code, *params]``."""

    code = "xapi_failure"

    def __init__(self, xapi_code: str, params: Sequence[object] = (), *, method: str = "") -> None:
        self.xapi_code = xapi_code
        self.params = [str(p) for p in params]
        self.method = method
        readable = _MESSAGES.get(xapi_code)
        detail = f"{xapi_code}" + (f" {self.params}" if self.params else "")
        text = f"{readable} ({detail})" if readable else detail
        super().__init__(f"{method}: {text}" if method else text)

    @property
    def description(self) -> list[str]:
        """The failure as XAPI sent it: ``[code, *params]``."""
        return [self.xapi_code, *self.params]


class XapiAuthenticationError(XapiFailure, ValidationError):
    """Wrong user name or password for the pool."""

    # A pool failure, but the admin's input to fix: the form shows it again.
    status = ValidationError.status
    code = "xapi_authentication_failed"


class SessionInvalidError(XapiFailure):
    """The session is unknown to the pool (expired, logged out, pool restarted)."""


class TaskFailedError(XapiFailure):
    """A pool task ended in failure (its ``error_info`` is the failure)."""


class TaskCancelledError(TaskFailedError):
    """A pool task was cancelled."""


class TransferError(XapiError, UpstreamError):
    """An export or import stream failed."""

    code = "xapi_transfer_failed"


def failure_from(description: Sequence[object], method: str = "") -> XapiFailure:
    """The most specific exception for an XAPI error description."""
    items = [str(d) for d in description] or ["INTERNAL_ERROR", "empty error description"]
    code, params = items[0], items[1:]
    cls: type[XapiFailure] = XapiFailure
    if code == "SESSION_AUTHENTICATION_FAILED":
        cls = XapiAuthenticationError
    elif code == "SESSION_INVALID":
        cls = SessionInvalidError
    return cls(code, params, method=method)
