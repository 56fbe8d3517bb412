"""Errors of the backup repository, leaves of the daemon's error tree.

Every one is a :class:`RepoError`, so ``except RepoError`` catches them all;
the ones a user can act on are also an HTTP kind (see :mod:`xenkeep.errors`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from xenkeep.errors import ConflictError, NotFoundError, XenKeepError

if TYPE_CHECKING:
    from .damage import FileDamage


class RepoError(XenKeepError):
    """The datastore cannot do what was asked (layout, I/O, damaged files).

    Raised as is, it is an internal fault (500): no kind of its own.
    """

    code = "repo_error"
    # What the storage forms are for: a directory that cannot be written, a
    # disk that is not there; shown where the administrator chose it.
    on_form = True


class NoDatastoreError(RepoError, ConflictError):
    """No backup storage is set up (or its disk is missing): a state to fix, not a fault."""

    code = "no_storage"


class NotADatastoreError(RepoError):
    """The directory is not an initialised datastore (or a newer format)."""

    code = "not_a_datastore"


class ChainBusyError(RepoError, ConflictError):
    """Another job holds the VM's chain lock."""

    code = "chain_busy"


class PointNotFoundError(RepoError, NotFoundError):
    """No such VM, restore point or disk in the datastore."""

    code = "point_not_found"


class ChainBrokenError(RepoError):
    """A chain cannot continue (no full for a delta, damaged or missing file)."""

    code = "chain_broken"


class ChecksumFileError(RepoError):
    """A checksum (.sums) file is malformed or does not match its contents."""

    code = "checksum_file_damaged"


class DamagedDataError(RepoError, ConflictError):
    """Stored blocks do not match their checksums, or their checksums cannot be
    read: what was asked would hand damaged bytes on, so it is refused.

    ``findings`` names each damaged file and its blocks
    (:class:`~xenkeep.repo.damage.FileDamage`); they are also recorded in the
    datastore, so the restore points show them.
    """

    code = "damaged_data"

    def __init__(
        self, message: str, *, findings: Sequence[FileDamage] = (), hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.findings = tuple(findings)
