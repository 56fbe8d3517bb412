"""What a copy of the configuration holds, once opened: JSON lines. Blocking.

The plaintext inside a sealed ``.xkconfig`` file is one JSON object per line:

    {"kind": "begin", "schema_version": 6, "tables": ["settings", "users", ...]}
    {"kind": "row", "table": "users", "row": {"id": 1, "username": "alice", ...}}
    ...
    {"kind": "end", "rows": {"settings": 7, "users": 3, ...}}

Rows come table by table in :data:`~.catalog.TABLES` order, with the carried
columns only; secrets in clear (the whole file is encrypted under the backup
key). ``end`` counts the rows, so a copy whose writer stopped early is found
even before the container's own check. Values are JSON's own, except BLOBs
as ``{"$base64": "..."}``.

:func:`write_config` reads the database through its own read-only
connection in one read transaction (a consistent snapshot, the daemon never
waits for it); :func:`read_records` parses the lines back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from xenkeep.secretbox import SecretBox
from xenkeep.store.db import describe_schema

from .catalog import AS_IS, Carry, ColumnFact, Rule, Table, carried_tables, coverage, setting_rule
from .errors import CopyDamagedError

#: No line of a real copy comes near this; a longer one is damage.
MAX_LINE: Final = 16 << 20


@dataclass
class ExportResult:
    """What :func:`write_config` wrote."""

    schema_version: int
    rows: dict[str, int] = field(default_factory=dict)
    #: HMAC of the rows without their noise columns (see :class:`~.catalog.Rule`):
    #: equal for two copies of the same configuration, whatever their time stamps.
    digest: str = ""
    #: What the catalog misses in this schema (tables or columns not declared).
    warnings: list[str] = field(default_factory=list)


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$base64": base64.b64encode(value).decode()}
    return value


def decode_value(value: Any) -> Any:
    """A column value back from its JSON form."""
    if isinstance(value, dict):
        if set(value) == {"$base64"}:
            return base64.b64decode(str(value["$base64"]))
        raise CopyDamagedError("a value of the copy is an object, not a column value")
    if isinstance(value, list):
        raise CopyDamagedError("a value of the copy is a list, not a column value")
    return value


def _secrets_in(rule: Rule, value: Any, change: Callable[[str], str]) -> Any:
    """``value`` with the secrets ``rule`` says it holds passed through ``change``."""
    if value is None or value == "" or rule.carry not in (Carry.SECRET, Carry.SECRET_IN_JSON):
        return value
    if rule.carry is Carry.SECRET:
        return change(str(value))
    try:
        data = json.loads(str(value))
    except ValueError:
        raise CopyDamagedError("a JSON value holding a secret is not JSON") from None
    if isinstance(data, dict) and data.get(rule.member):
        data[rule.member] = change(str(data[rule.member]))
    return json.dumps(data)


def open_secret(rule: Rule, value: Any, box: SecretBox) -> Any:
    """A column's value as it travels: secrets opened with the appliance's key."""
    return _secrets_in(rule, value, box.decrypt)


def seal_secret(rule: Rule, value: Any, box: SecretBox) -> Any:
    """A column's value as it is stored again: secrets sealed with the appliance's key."""
    return _secrets_in(rule, value, box.encrypt)


def rules_of(table: Table, columns: Iterable[str], key: Any = None) -> dict[str, Rule]:
    """The rule of each column of a row (the settings table: the row's key decides)."""
    out = {c: table.columns.get(c, AS_IS) for c in columns}
    if table.key_column and key is not None:
        by_key = setting_rule(str(key))
        if by_key is not None:
            out["value"] = by_key
    return out


def schema_facts(conn: sqlite3.Connection, schema: str = "main") -> dict[str, list[ColumnFact]]:
    """The schema of ``conn`` in the catalog's terms."""
    return {
        name: [ColumnFact(c.name, c.not_null, c.has_default) for c in cols]
        for name, cols in describe_schema(conn, schema).items()
    }


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def write_config(
    conn: sqlite3.Connection,
    write: Callable[[bytes], None],
    box: SecretBox,
    *,
    mac_key: bytes = b"",
    check: Callable[[], None] = lambda: None,
) -> ExportResult:
    """Write the configuration ``conn`` sees as JSON lines through ``write``.

    ``conn`` is a snapshot (:func:`xenkeep.store.db.read_snapshot`);
    ``mac_key`` keys the content digest; ``check`` is called between rows
    and raises to stop (a cancel).
    """
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    facts = schema_facts(conn)
    result = ExportResult(version, warnings=coverage(facts))
    digest = hmac.new(mac_key, b"xenkeep configuration v1", hashlib.sha256)

    def emit(record: dict[str, Any]) -> None:
        write(_line(record))

    tables = [t for t in carried_tables() if t.name in facts]
    emit({"kind": "begin", "schema_version": version, "tables": [t.name for t in tables]})
    for t in tables:
        present = {c.name for c in facts[t.name]}
        columns = [c for c in t.carried_columns() if c in present]
        names = ", ".join(f'"{c}"' for c in columns)
        count = 0
        # Names come from the catalog (and exist in the schema): no input here.
        for row in conn.execute(f'SELECT {names} FROM "{t.name}" ORDER BY rowid'):  # noqa: S608
            check()
            key = row[t.key_column] if t.key_column else None
            if t.key_column:
                rule = setting_rule(str(key))
                if rule is None or rule.carry is Carry.LEFT_OUT:
                    if rule is None:
                        result.warnings.append(f"setting {key} is not in the catalog: left out")
                    continue
            rules = rules_of(t, columns, key)
            values = {c: _encode(open_secret(rules[c], row[c], box)) for c in columns}
            emit({"kind": "row", "table": t.name, "row": values})
            meaningful = {c: v for c, v in values.items() if not rules[c].noise}
            digest.update(_line({"table": t.name, "row": meaningful}))
            count += 1
        result.rows[t.name] = count
    emit({"kind": "end", "rows": result.rows})
    result.digest = digest.hexdigest()
    return result


def read_records(segments: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The JSON objects of a copy's plaintext, line by line.

    Raises CopyDamagedError for anything that is not one JSON object per
    line (the container authenticated the bytes, so this is a copy written
    wrong, never a bit flipped on the disk).
    """
    pending = b""
    for segment in segments:
        pending += segment
        while True:
            end = pending.find(b"\n")
            if end < 0:
                break
            line, pending = pending[:end], pending[end + 1 :]
            yield _parse(line)
        if len(pending) > MAX_LINE:
            raise CopyDamagedError("a line of the copy is impossibly long")
    if pending:
        raise CopyDamagedError("the copy ends in the middle of a line")


def _parse(line: bytes) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise CopyDamagedError("a line of the copy is not JSON") from None
    if not isinstance(record, dict) or "kind" not in record:
        raise CopyDamagedError("a line of the copy is not a record")
    return record
