"""Errors of the backup repository, leaves of the daemon's error tree."""

from __future__ import annotations

from xenkeep.errors import ConflictError, NotFoundError, XenKeepError


class RepoError(XenKeepError):
    """The datastore cannot do what was asked (layout, I/O, damaged files)."""

    code = "repo_error"


class NoDatastoreError(RepoError):
    """No backup storage is set up (or its disk is missing): a state to fix, not a fault."""

    status = 409
    code = "no_storage"


class NotADatastoreError(RepoError):
    """The directory is not an initialised datastore (or a newer format)."""

    code = "not_a_datastore"


class ChainBusyError(ConflictError):
    """Another job holds the VM's chain lock."""

    code = "chain_busy"


class PointNotFoundError(NotFoundError):
    """No such VM, restore point or disk in the datastore."""

    code = "point_not_found"


class ChainBrokenError(RepoError):
    """A chain cannot continue (no full for a delta, damaged or missing file)."""

    code = "chain_broken"


class ChecksumFileError(RepoError):
    """A checksum (.sums) file is malformed or does not match its contents."""

    code = "checksum_file_damaged"
