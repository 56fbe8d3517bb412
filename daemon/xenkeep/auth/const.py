"""Names shared across authentication and authorization."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Role(StrEnum):
    """What a user may do, from most to least powerful."""

    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"
    USER = "user"


class Access(IntEnum):
    """What a route requires. Higher values include the lower ones."""

    PUBLIC = 0
    SIGNED_IN = 1
    VIEWER = 2
    OPERATOR = 3
    ADMIN = 4


ROLE_ACCESS: dict[Role, Access] = {
    Role.USER: Access.SIGNED_IN,
    Role.VIEWER: Access.VIEWER,
    Role.OPERATOR: Access.OPERATOR,
    Role.ADMIN: Access.ADMIN,
}


class AuditEvent(StrEnum):
    """Security events kept in the audit log."""

    SIGN_IN = "sign_in"
    SIGN_IN_FAILED = "sign_in_failed"
    SIGN_IN_THROTTLED = "sign_in_throttled"
    # A sign-in that succeeded after failed ones since the account's last visit.
    SIGN_IN_AFTER_FAILURES = "sign_in_after_failures"
    SIGN_OUT = "sign_out"
    SIGN_OUT_ALL = "sign_out_all"
    SETUP_TOKEN_CREATED = "setup_token_created"
    SETUP_TOKEN_USED = "setup_token_used"
    SETUP_TOKEN_REJECTED = "setup_token_rejected"
    ADMIN_CREATED = "admin_created"
    USER_CREATED = "user_created"
    ADMIN_RESET = "admin_reset"
    TOTP_ENABLED = "totp_enabled"
    SETTINGS_CHANGED = "settings_changed"
    API_TOKEN_CREATED = "api_token_created"
    API_TOKEN_REVOKED = "api_token_revoked"
    CSRF_REJECTED = "csrf_rejected"
    # Sign-in providers (LDAP, OIDC, GitHub, Google, SAML).
    PROVIDER_SIGN_IN = "provider_sign_in"
    PROVIDER_SIGN_IN_FAILED = "provider_sign_in_failed"
    PROVIDER_CREATED = "provider_created"
    PROVIDER_CHANGED = "provider_changed"
    PROVIDER_DELETED = "provider_deleted"
    PROVIDER_TESTED = "provider_tested"
    GROUP_MAPPINGS_CHANGED = "group_mappings_changed"
    # The appliance's own backup: its key, and a configuration restored from a copy.
    BACKUP_KEY_SET = "backup_key_set"
    CONFIG_RESTORED = "config_restored"


SESSION_COOKIE = "xk_session"
CSRF_COOKIE = "xk_csrf"
SETUP_COOKIE = "xk_setup"
CSRF_FIELD = "_csrf"
CSRF_HEADER = "X-CSRF-Token"
MIN_PASSWORD_LENGTH = 12
