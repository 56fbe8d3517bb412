"""Opening a copy of the configuration and putting it back.

A restore is two steps, so that nothing changes until everything is known
to be good:

1. :func:`load_copy` (blocking, in a thread) decrypts the whole copy into a
   scratch database built at the copy's own schema version, with the
   migrations of that version, then migrates it to this XenKeep's schema
   with the same migrations an upgrade runs. Secrets are sealed again with
   this appliance's key as they go in. A wrong passphrase, a changed byte,
   a cut file or a copy from a newer XenKeep stops here.
2. :func:`apply_copy` replaces every carried table (and carried setting) of
   the live database with the scratch one's, in one transaction: either the
   whole configuration is the copy's, or nothing changed.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final, cast

from xenkeep.formats.sealed import (
    SealedDamagedError,
    SealedFormatError,
    SealedHeader,
    SealedTruncatedError,
    SealedWrongKeyError,
    SealReader,
    read_header,
)
from xenkeep.secretbox import SecretBox
from xenkeep.store import Database, latest_schema_version, migrate_sync
from xenkeep.store.db import Transaction

from .catalog import AS_IS, Table, carried_tables, setting_carried, table
from .errors import (
    BackupKeyError,
    CopyDamagedError,
    CopyNotFoundError,
    CopyTooNewError,
    WrongBackupKeyError,
)
from .keys import KdfParams, KeyMode, derive, parse_recovery_key
from .payload import decode_value, read_records, rules_of, seal_secret

#: The scratch database's name inside the restore transaction.
RESTORED: Final = "restored"
#: What the summary lists by name (beyond that, counts only).
MAX_NAMES: Final = 50


@dataclass
class CopySummary:
    """What an opened copy holds, for the person deciding to restore it."""

    copy_id: str
    created: float
    appliance: str
    schema_version: int
    xenkeep_version: str
    rows: dict[str, int] = field(default_factory=dict)
    jobs: list[str] = field(default_factory=list)
    pools: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        r = self.rows
        return {
            "copy_id": self.copy_id,
            "created": self.created,
            "appliance": self.appliance,
            "schema_version": self.schema_version,
            "xenkeep_version": self.xenkeep_version,
            "counts": {
                "jobs": r.get("backup_jobs", 0),
                "pools": r.get("pools", 0),
                "users": r.get("users", 0),
                "groups": r.get("groups", 0),
                "grants": r.get("grants", 0),
                "providers": r.get("auth_providers", 0),
                "api_tokens": r.get("api_tokens", 0),
            },
            "rows": dict(r),
            "jobs": list(self.jobs),
            "pools": list(self.pools),
            "users": list(self.users),
        }


def header_of(path: Path) -> SealedHeader:
    """A copy's readable header (CopyDamagedError when it is not one)."""
    try:
        with path.open("rb") as f:
            return read_header(cast(BinaryIO, f))
    except FileNotFoundError:
        raise CopyNotFoundError(f"there is no copy {path.name} (removed by retention?)") from None
    except SealedFormatError as exc:
        raise CopyDamagedError(f"this copy cannot be read: {exc}") from None


def key_for(header: SealedHeader, secret: str) -> bytes:
    """The key ``secret`` (a passphrase or a recovery key, as the copy says) gives."""
    spec = header.fields.get("key")
    mode = spec.get("mode") if isinstance(spec, dict) else None
    if mode == KeyMode.RECOVERY_KEY:
        try:
            return parse_recovery_key(secret)
        except BackupKeyError as exc:
            raise BackupKeyError(
                f"this copy was sealed with a recovery key, not a passphrase: {exc.message}",
                field="secret",
            ) from None
    if mode == KeyMode.PASSPHRASE and isinstance(spec, dict):
        return derive(secret, KdfParams.from_json(spec.get("kdf")))
    raise CopyDamagedError("the copy does not say how its key is made")


def check_schema(header: SealedHeader) -> int:
    """The copy's schema version, refused when newer than this XenKeep's."""
    try:
        version = int(header.fields["schema_version"])
    except (KeyError, TypeError, ValueError):
        raise CopyDamagedError("the copy does not say its schema version") from None
    latest = latest_schema_version()
    if version > latest:
        raise CopyTooNewError(
            f"this copy was written by a newer XenKeep (schema {version}); "
            f"this appliance knows schema {latest} at most",
            hint="update this appliance to the XenKeep version that wrote the copy, then restore",
        )
    if version < 1:
        raise CopyDamagedError(f"the copy names an impossible schema version {version}")
    return version


class _Loader:
    """Rows of a copy into the scratch database, checked as they come."""

    def __init__(self, conn: sqlite3.Connection, box: SecretBox) -> None:
        self.conn = conn
        self.box = box
        self.columns = {
            str(name): {str(c[1]) for c in conn.execute(f'PRAGMA table_info("{name}")')}
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        self.announced: set[str] = set()
        self.rows: dict[str, int] = {}
        #: Tables (or settings) this XenKeep leaves out, whose rows were skipped.
        self.skipped: set[str] = set()

    def begin(self, record: Mapping[str, Any], version: int) -> None:
        if record.get("schema_version") != version:
            raise CopyDamagedError("the copy's contents and header disagree on the schema")
        tables = record.get("tables")
        if not isinstance(tables, list):
            raise CopyDamagedError("the copy does not list its tables")
        self.announced = {str(t) for t in tables}

    def row(self, record: Mapping[str, Any]) -> None:
        name = str(record.get("table", ""))
        values = record.get("row")
        if name not in self.announced or not isinstance(values, dict):
            raise CopyDamagedError(f"the copy holds a row of an unannounced table {name!r}")
        if name not in self.columns:
            raise CopyDamagedError(f"the copy holds a table {name!r} its schema does not have")
        wrong = [c for c in values if c not in self.columns[name]]
        if wrong:
            raise CopyDamagedError(f"the copy holds a column {name}.{wrong[0]} its schema lacks")
        try:
            decl: Table | None = table(name)
        except KeyError:
            # Known at the copy's schema, gone since: the migrations carry it on.
            decl = None
        if decl is not None and not decl.carried:
            # Configuration once, not any more: this XenKeep does not restore it.
            self.skipped.add(name)
            return
        key = values.get(decl.key_column) if decl is not None and decl.key_column else None
        if key is not None and not setting_carried(str(key)):
            self.skipped.add(name)
            return
        rules = rules_of(decl, values, key) if decl is not None else {}
        cols = list(values)
        row = [seal_secret(rules.get(c, AS_IS), decode_value(values[c]), self.box) for c in cols]
        names = ", ".join(f'"{c}"' for c in cols)
        marks = ", ".join("?" for _ in cols)
        try:
            # Table and column names were checked against the schema above.
            self.conn.execute(f'INSERT INTO "{name}" ({names}) VALUES ({marks})', row)  # noqa: S608
        except sqlite3.Error as exc:
            raise CopyDamagedError(f"a row of {name} in the copy does not fit: {exc}") from None
        self.rows[name] = self.rows.get(name, 0) + 1

    def end(self, record: Mapping[str, Any]) -> None:
        counted = record.get("rows")
        if not isinstance(counted, dict):
            raise CopyDamagedError("the copy's end record is malformed")
        for name, n in counted.items():
            got = self.rows.get(str(name), 0)
            if name not in self.skipped and got != n:
                raise CopyDamagedError(f"the copy announces {n} rows of {name} but holds {got}")


@dataclass(frozen=True)
class LoadedCopy:
    """A copy opened into a scratch database: what it holds, and its key."""

    summary: CopySummary
    key: bytes
    header: SealedHeader


def load_copy(path: Path, secret: str, box: SecretBox, scratch: Path) -> LoadedCopy:
    """Decrypt copy ``path`` with ``secret`` into a new database at ``scratch``,
    migrated to this XenKeep's schema; what it holds and the key that opened it.

    Raises WrongBackupKeyError, CopyDamagedError or CopyTooNewError, and
    leaves no scratch file behind then.
    """
    header = header_of(path)
    version = check_schema(header)
    key = key_for(header, secret)
    try:
        rows = _load(path, header, key, box, scratch, version)
    except BaseException:
        _remove_database(scratch)
        raise
    fields = header.fields
    summary = CopySummary(
        copy_id=path.name.split(".", 1)[0],
        created=float(fields.get("created") or 0),
        appliance=str(fields.get("appliance", "")),
        schema_version=version,
        xenkeep_version=str(fields.get("xenkeep_version", "")),
        rows=rows,
    )
    conn = sqlite3.connect(scratch)
    try:
        summary.jobs = [r[0] for r in conn.execute(_names("backup_jobs"))]
        summary.pools = [r[0] for r in conn.execute(_names("pools"))]
        summary.users = [r[0] for r in conn.execute(_names("users", "username"))]
    finally:
        conn.close()
    return LoadedCopy(summary, key, header)


def _names(name: str, column: str = "name") -> str:
    return f'SELECT "{column}" FROM "{name}" ORDER BY "{column}" LIMIT {MAX_NAMES}'  # noqa: S608


def _load(
    path: Path, header: SealedHeader, key: bytes, box: SecretBox, scratch: Path, version: int
) -> dict[str, int]:
    _remove_database(scratch)
    conn = sqlite3.connect(scratch, isolation_level=None)
    try:
        migrate_sync(conn, None, upto=version)
        loader = _Loader(conn, box)
        # Checked once every row is in: rows come parents first, but a copy
        # is not trusted to.
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("BEGIN")
        seen_begin = seen_end = False
        with path.open("rb") as f:
            # The header was read already (through another handle): past it.
            f.seek(len(header.preamble))
            try:
                reader = SealReader(cast(BinaryIO, f), key, header)
            except SealedWrongKeyError:
                raise WrongBackupKeyError(
                    "this passphrase (or recovery key) does not open this copy; "
                    "nothing was changed",
                    field="secret",
                ) from None
            try:
                for record in read_records(reader):
                    kind = record["kind"]
                    if seen_end:
                        raise CopyDamagedError("the copy goes on after its end record")
                    if kind == "begin" and not seen_begin:
                        loader.begin(record, version)
                        seen_begin = True
                    elif kind == "row" and seen_begin:
                        loader.row(record)
                    elif kind == "end" and seen_begin:
                        loader.end(record)
                        seen_end = True
                    else:
                        raise CopyDamagedError(f"unexpected record {kind!r} in the copy")
            except SealedTruncatedError:
                raise CopyDamagedError(
                    "this copy is incomplete (cut short while it was written or copied); "
                    "nothing was changed",
                    hint="choose an older copy",
                ) from None
            except SealedDamagedError:
                raise CopyDamagedError(
                    "this copy was changed after it was written (damaged); nothing was changed",
                    hint="choose an older copy",
                ) from None
        if not seen_end:
            raise CopyDamagedError("the copy has no end record")
        broken = conn.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise CopyDamagedError(
                f"the copy's rows do not agree with each other ({len(broken)} broken references)"
            )
        conn.execute("COMMIT")
        conn.execute("PRAGMA foreign_keys = ON")
        # The same migrations an upgrade runs bring the copy to this schema.
        migrate_sync(conn, None)
        return dict(loader.rows)
    finally:
        conn.close()


def _remove_database(path: Path) -> None:
    for p in (path, path.with_name(path.name + "-journal"), path.with_name(path.name + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    with contextlib.suppress(FileNotFoundError):
        path.with_name(path.name + "-shm").unlink()


def remove_scratch(path: Path) -> None:
    """Delete a scratch database (blocking)."""
    _remove_database(path)


async def _columns(tx: Transaction, schema: str, name: str) -> set[str]:
    rows = await tx.fetchall(f'PRAGMA {schema}.table_info("{name}")')
    return {str(r[1]) for r in rows}


async def apply_copy(db: Database, scratch: Path) -> dict[str, int]:
    """Replace the configuration in ``db`` with the scratch database's, in one
    transaction; the rows now in each carried table."""
    tables = carried_tables()
    rows: dict[str, int] = {}
    async with db.transaction(attach={RESTORED: scratch}) as tx:
        # Tables point at each other (users at providers, members at both):
        # the references are checked at the commit, once every table is full.
        await tx.execute("PRAGMA defer_foreign_keys = ON")
        for t in reversed(tables):
            if t.key_column:
                await _replace_settings(tx, t, delete=True)
            else:
                await tx.execute(f'DELETE FROM main."{t.name}"')  # noqa: S608 - catalog names
        for t in tables:
            if t.key_column:
                rows[t.name] = await _replace_settings(tx, t, delete=False)
                continue
            both = await _columns(tx, "main", t.name) & await _columns(tx, RESTORED, t.name)
            cols = ", ".join(f'"{c}"' for c in t.carried_columns() if c in both)
            rows[t.name] = await tx.execute(
                f'INSERT INTO main."{t.name}" ({cols}) '  # noqa: S608 - catalog names
                f'SELECT {cols} FROM {RESTORED}."{t.name}" ORDER BY rowid'
            )
        broken = await tx.fetchall("PRAGMA main.foreign_key_check")
        if broken:
            first = tuple(broken[0])
            raise CopyDamagedError(
                f"the restored configuration would leave {len(broken)} broken references "
                f"(first: {first}); nothing was changed"
            )
    return rows


async def _replace_settings(tx: Transaction, t: Table, *, delete: bool) -> int:
    """The carried settings rows: deleted from the live database, or copied into it."""
    schema = "main" if delete else RESTORED
    key = t.key_column
    keys = [
        str(r[0])
        for r in await tx.fetchall(f'SELECT "{key}" FROM {schema}."{t.name}"')  # noqa: S608
        if setting_carried(str(r[0]))
    ]
    cols = ", ".join(f'"{c}"' for c in t.carried_columns())
    for k in keys:
        if delete:
            await tx.execute(f'DELETE FROM main."{t.name}" WHERE "{key}" = ?', (k,))  # noqa: S608
        else:
            await tx.execute(
                f'INSERT INTO main."{t.name}" ({cols}) '  # noqa: S608 - catalog names
                f'SELECT {cols} FROM {RESTORED}."{t.name}" WHERE "{key}" = ?',
                (k,),
            )
    return len(keys)
