"""The catalog covers the schema: a table or column added by a migration and
not declared (carried or left out) fails here, with what to add."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from xenkeep.appliance_backup import catalog
from xenkeep.appliance_backup.catalog import Carry, ColumnFact, coverage, setting_rule
from xenkeep.appliance_backup.payload import schema_facts
from xenkeep.auth.enrolment import TOTP_PENDING_PREFIX, TOTP_SKIPPED_PREFIX
from xenkeep.auth.manager import SETUP_PENDING_KEY, SETUP_TOKEN_KEY, TOTP_LAST_STEP_PREFIX
from xenkeep.auth.providers.service import PUBLIC_URL_KEY
from xenkeep.backup.storage import DATASTORE_KEY
from xenkeep.backup.verify import VERIFY_SCHEDULE_KEY
from xenkeep.mail.settings import SMTP_KEY
from xenkeep.store import migrate_sync
from xenkeep.system.identity import NAME_KEY, TIMEZONE_KEY
from xenkeep.system.setup_state import COMPLETED_KEY


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[ColumnFact]]:
    path = tmp_path_factory.mktemp("catalog") / "x.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        migrate_sync(conn, None)
        return schema_facts(conn)
    finally:
        conn.close()


def test_every_table_and_column_of_the_schema_is_declared(
    schema: dict[str, list[ColumnFact]],
) -> None:
    problems = coverage(schema)
    assert not problems, (
        "declare these in daemon/xenkeep/appliance_backup/catalog.py "
        "(carried, secret, or left out with why):\n" + "\n".join(problems)
    )


def test_coverage_names_what_is_missing() -> None:
    schema = {
        **{t.name: [ColumnFact(c, False, True) for c in t.columns] for t in catalog.TABLES},
        "future_things": [ColumnFact("id", True, False)],
    }
    schema["pools"] = [*schema["pools"], ColumnFact("colour", True, False)]
    schema["users"] = [
        ColumnFact("last_sign_in", True, False) if c.name == "last_sign_in" else c
        for c in schema["users"]
    ]
    del schema["audit_log"]
    problems = coverage(schema)
    assert "table future_things is neither carried nor left out in the catalog" in problems
    assert "column pools.colour is neither carried nor left out" in problems
    assert "table audit_log is declared but not in the schema" in problems
    assert any("users.last_sign_in is left out but NOT NULL" in p for p in problems)


def test_secrets_are_declared_as_secrets() -> None:
    # Every column holding a SecretBox token travels opened, to be sealed
    # again under the new appliance's key.
    assert catalog.table("pools").columns["password_enc"].carry is Carry.SECRET
    assert catalog.table("auth_providers").columns["secrets_enc"].carry is Carry.SECRET
    smtp = setting_rule(SMTP_KEY)
    assert smtp is not None and smtp.carry is Carry.SECRET_IN_JSON
    assert smtp.member == "password_enc"


@pytest.mark.parametrize(
    ("key", "carried"),
    [
        (NAME_KEY, True),
        (TIMEZONE_KEY, True),
        (PUBLIC_URL_KEY, True),
        (SMTP_KEY, True),
        (VERIFY_SCHEDULE_KEY, True),
        (f"{TOTP_SKIPPED_PREFIX}3", True),
        (DATASTORE_KEY, False),
        (COMPLETED_KEY, False),
        ("wizard.pool_skipped", False),
        (SETUP_PENDING_KEY, False),
        (SETUP_TOKEN_KEY, False),
        (f"{TOTP_PENDING_PREFIX}3", False),
        (f"{TOTP_LAST_STEP_PREFIX}3", False),
        ("appliance_backup.key", False),
        ("appliance_backup.retention", True),
    ],
)
def test_every_setting_the_code_writes_has_a_rule(key: str, carried: bool) -> None:
    rule = setting_rule(key)
    assert rule is not None, f"setting {key} is in no rule of catalog.SETTINGS"
    assert (rule.carry is not Carry.LEFT_OUT) is carried
    if not carried:
        assert rule.why


def test_left_out_tables_say_why() -> None:
    for t in catalog.TABLES:
        assert t.carried or t.why, t.name
        for name, rule in t.columns.items():
            assert rule.carry is not Carry.LEFT_OUT or rule.why, f"{t.name}.{name}"


def test_restore_order_puts_parents_first(
    schema: dict[str, list[ColumnFact]], tmp_path: Path
) -> None:
    # A table's foreign keys point at tables restored before it.
    conn = sqlite3.connect(tmp_path / "y.db", isolation_level=None)
    try:
        migrate_sync(conn, None)
        order = [t.name for t in catalog.carried_tables()]
        for name in order:
            for fk in conn.execute(f'PRAGMA foreign_key_list("{name}")'):
                parent = fk[2]
                if parent in order:
                    assert order.index(parent) < order.index(name), (name, parent)
    finally:
        conn.close()
