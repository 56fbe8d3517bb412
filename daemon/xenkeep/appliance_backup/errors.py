"""Errors of the appliance's own backup, leaves of the daemon's error tree."""

from __future__ import annotations

from xenkeep.errors import ConflictError, NotFoundError, ValidationError, XenKeepError


class ApplianceBackupError(XenKeepError):
    """The appliance's configuration cannot be copied or restored as asked."""

    code = "appliance_backup_error"


class BackupKeyError(ApplianceBackupError, ValidationError):
    """A passphrase or recovery key that cannot be used."""

    code = "backup_key_invalid"


class WrongBackupKeyError(BackupKeyError):
    """The passphrase (or recovery key) does not open this copy; nothing changed."""

    code = "backup_key_wrong"


class NoBackupKeyError(ApplianceBackupError, ConflictError):
    """No passphrase or recovery key is set: no copy can be written yet."""

    code = "backup_key_missing"


class CopyNotFoundError(ApplianceBackupError, NotFoundError):
    """No such copy in the datastore."""

    code = "copy_not_found"


class CopyDamagedError(ApplianceBackupError, ValidationError):
    """A copy that is damaged, cut short or not a copy at all; nothing changed."""

    code = "copy_damaged"


class CopyTooNewError(ApplianceBackupError, ValidationError):
    """A copy written by a newer XenKeep (a schema this one does not know)."""

    code = "copy_too_new"


class RestoreConfirmationError(ApplianceBackupError, ValidationError):
    """The typed confirmation of a restore does not match."""

    code = "restore_not_confirmed"
