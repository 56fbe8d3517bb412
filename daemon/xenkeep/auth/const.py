"""Names shared across authentication and authorization."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """A user's global role (``users.role``); what they may do on pool
    objects comes from grants (see :mod:`xenkeep.auth.permissions`)."""

    #: The super-administrator: people, groups, grants, sign-in providers and
    #: everything of the appliance; every pool object.
    ADMIN = "admin"
    #: Diagnostics and logs, nothing else.
    SUPPORT = "support"
    #: Only what grants give.
    USER = "user"


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
    RECOVERY_CODES_CREATED = "recovery_codes_created"
    RECOVERY_CODE_USED = "recovery_code_used"
    PASSWORD_CHANGED = "password_changed"
    PASSWORD_RESET = "password_reset"
    USER_CHANGED = "user_changed"
    USER_DISABLED = "user_disabled"
    USER_ENABLED = "user_enabled"
    USER_DELETED = "user_deleted"
    SESSION_REVOKED = "session_revoked"
    GROUP_CREATED = "group_created"
    SSH_KEY_ADDED = "ssh_key_added"
    SSH_KEY_REMOVED = "ssh_key_removed"
    RESOURCE_SET_SAVED = "resource_set_saved"
    RESOURCE_SET_DELETED = "resource_set_deleted"
    SELF_VM_CREATE = "self_vm_create"
    SELF_VM_POWER = "self_vm_power"
    SELF_VM_DELETED = "self_vm_deleted"
    GROUP_CHANGED = "group_changed"
    GROUP_DELETED = "group_deleted"
    GROUP_MEMBER_ADDED = "group_member_added"
    GROUP_MEMBER_REMOVED = "group_member_removed"
    GRANT_ADDED = "grant_added"
    GRANT_CHANGED = "grant_changed"
    GRANT_REMOVED = "grant_removed"
    PERMISSION_DENIED = "permission_denied"
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
    # The appliance's network or NTP settings: a change (a checkpoint that
    # undoes itself unless kept), its confirmation, an explicit revert.
    NETWORK_CHANGED = "network_changed"
    NETWORK_KEPT = "network_kept"
    NETWORK_REVERTED = "network_reverted"
    # A console command (`xenkeep backup run ...`): one entry for its
    # short-lived token, made and revoked around the command.
    CONSOLE_COMMAND = "console_command"
    # Backups: what changes them, and what an administrator starts by hand.
    BACKUP_JOB_CREATED = "backup_job_created"
    BACKUP_JOB_CHANGED = "backup_job_changed"
    BACKUP_JOB_DELETED = "backup_job_deleted"
    BACKUP_RUN_STARTED = "backup_run_started"
    BACKUP_STORAGE_CHANGED = "backup_storage_changed"
    BACKUP_VERIFY_STARTED = "backup_verify_started"
    BACKUP_VERIFY_SCHEDULE_CHANGED = "backup_verify_schedule_changed"
    BACKUP_PRUNE_STARTED = "backup_prune_started"
    BACKUP_POINTS_DELETED = "backup_points_deleted"
    BACKUP_RESTORE_STARTED = "backup_restore_started"
    BACKUP_HEALTH_CHECK_STARTED = "backup_health_check_started"
    OPERATION_CANCELLED = "operation_cancelled"
    MAIL_SETTINGS_CHANGED = "mail_settings_changed"
    MAIL_TEST_SENT = "mail_test_sent"


SESSION_COOKIE = "xk_session"
CSRF_COOKIE = "xk_csrf"
SETUP_COOKIE = "xk_setup"
CSRF_FIELD = "_csrf"
CSRF_HEADER = "X-CSRF-Token"
MIN_PASSWORD_LENGTH = 12
