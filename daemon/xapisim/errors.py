"""XAPI errors as the simulator raises them.

An XAPI failure is a code followed by string parameters; both wire formats
carry that list unchanged (XML-RPC ``ErrorDescription``, JSON-RPC ``error``).
The parameter lists follow xen-api's ``ocaml/idl/datamodel_errors.ml``.
"""

from __future__ import annotations

from typing import Any

SESSION_AUTHENTICATION_FAILED = "SESSION_AUTHENTICATION_FAILED"
SESSION_INVALID = "SESSION_INVALID"
HANDLE_INVALID = "HANDLE_INVALID"
UUID_INVALID = "UUID_INVALID"
MESSAGE_METHOD_UNKNOWN = "MESSAGE_METHOD_UNKNOWN"
MESSAGE_PARAMETER_COUNT_MISMATCH = "MESSAGE_PARAMETER_COUNT_MISMATCH"
MAP_DUPLICATE_KEY = "MAP_DUPLICATE_KEY"
FIELD_TYPE_ERROR = "FIELD_TYPE_ERROR"
INVALID_VALUE = "INVALID_VALUE"
VM_BAD_POWER_STATE = "VM_BAD_POWER_STATE"
VM_IS_TEMPLATE = "VM_IS_TEMPLATE"
OPERATION_BLOCKED = "OPERATION_BLOCKED"
OPERATION_NOT_ALLOWED = "OPERATION_NOT_ALLOWED"
SR_FULL = "SR_FULL"
VDI_IN_USE = "VDI_IN_USE"
VDI_READONLY = "VDI_READONLY"
VDI_TOO_SMALL = "VDI_TOO_SMALL"
VDI_NO_CBT_METADATA = "VDI_NO_CBT_METADATA"
VDI_MISSING = "VDI_MISSING"
DEVICE_ALREADY_ATTACHED = "DEVICE_ALREADY_ATTACHED"
DEVICE_ALREADY_DETACHED = "DEVICE_ALREADY_DETACHED"
TASK_CANCELLED = "TASK_CANCELLED"
IMPORT_ERROR_GENERIC = "IMPORT_ERROR"
IMPORT_ERROR_PREMATURE_EOF = "IMPORT_ERROR_PREMATURE_EOF"
IMPORT_ERROR_SOME_CHECKSUMS_FAILED = "IMPORT_ERROR_SOME_CHECKSUMS_FAILED"
IMPORT_ERROR_UNEXPECTED_FILE = "IMPORT_ERROR_UNEXPECTED_FILE"
IMPORT_INCOMPATIBLE_VERSION = "IMPORT_INCOMPATIBLE_VERSION"
INTERNAL_ERROR = "INTERNAL_ERROR"
EVENTS_LOST = "EVENTS_LOST"
EVENT_FROM_TOKEN_PARSE_FAILURE = "EVENT_FROM_TOKEN_PARSE_FAILURE"
SESSION_NOT_REGISTERED = "SESSION_NOT_REGISTERED"


class XapiError(Exception):
    """A failure reported to the client as ``[code, *params]``."""

    def __init__(self, code: str, *params: Any) -> None:
        self.code = code
        self.params = [str(p) for p in params]
        super().__init__(code, *self.params)

    @property
    def description(self) -> list[str]:
        """The ``ErrorDescription`` list sent on the wire."""
        return [self.code, *self.params]

    def __str__(self) -> str:
        return str(self.description)
