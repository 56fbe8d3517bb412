"""What the support bundle reads straight from the database: the only SQL of
the diagnostics package.

Two things no service offers: the settings of the sign-in providers (without
their secrets) and of the accounts (without hashes or TOTP secrets), and
every secret the database holds, so that the bundle can be scrubbed of them
(:mod:`.redact`). The secrets never leave this process.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from typing import Any

from xenkeep.errors import StoreError
from xenkeep.secretbox import SecretBox
from xenkeep.store import Database

from .redact import SECRET_NAME, string_leaves


async def _rows(db: Database, sql: str) -> list[sqlite3.Row]:
    try:
        return await db.fetchall(sql)
    except sqlite3.OperationalError:  # a table of a schema this database lacks
        return []


async def providers(db: Database) -> list[dict[str, Any]]:
    """The sign-in providers: kind, names, state, settings; whether secrets are stored."""
    out = []
    for r in await _rows(
        db,
        "SELECT id, kind, name, slug, enabled, is_default, config, "
        "secrets_enc != '' AS secrets_stored FROM auth_providers ORDER BY id",
    ):
        row = dict(r)
        with contextlib.suppress(ValueError):
            row["config"] = json.loads(row["config"] or "{}")
        out.append(row)
    return out


async def accounts(db: Database) -> list[dict[str, Any]]:
    """The accounts: name, role, where they sign in, state (no hash, no secret)."""
    rows = await _rows(
        db,
        "SELECT id, username, role, source, disabled, totp_secret IS NOT NULL AS totp, "
        "created_at FROM users ORDER BY id",
    )
    return [dict(r) for r in rows]


async def settings_table(db: Database) -> dict[str, Any]:
    """The key/value settings, JSON decoded where it is JSON (redacted later)."""
    out: dict[str, Any] = {}
    for r in await _rows(db, "SELECT key, value FROM settings ORDER BY key"):
        value: Any = r["value"]
        with contextlib.suppress(ValueError, TypeError):
            value = json.loads(value)
        out[str(r["key"])] = value
    return out


def _decrypt(box: SecretBox | None, token: Any) -> list[str]:
    if box is None or not isinstance(token, str) or not token:
        return []
    try:
        plain = box.decrypt(token)
    except (StoreError, ValueError, TypeError):
        return []
    with contextlib.suppress(ValueError):
        return [plain, *string_leaves(json.loads(plain))]
    return [plain]


def _walk_settings(value: Any, box: SecretBox | None, out: list[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if SECRET_NAME.search(str(k)):
                out += [*string_leaves(v), *(_decrypt(box, v) if str(k).endswith("_enc") else [])]
            else:
                _walk_settings(v, box, out)
    elif isinstance(value, list):
        for v in value:
            _walk_settings(v, box, out)
    elif isinstance(value, str):
        out += _decrypt(box, value)  # a bare encrypted value (a pending TOTP secret)


async def secret_values(db: Database, box: SecretBox | None) -> list[str]:
    """Every secret the database holds, in clear (pool, mail and provider
    passwords, TOTP secrets, CSRF tokens, encrypted settings)."""
    out: list[str] = []
    for r in await _rows(db, "SELECT password_enc FROM pools"):
        out += _decrypt(box, r["password_enc"])
    for r in await _rows(db, "SELECT secrets_enc FROM auth_providers"):
        out += _decrypt(box, r["secrets_enc"])
    for r in await _rows(db, "SELECT totp_secret FROM users WHERE totp_secret IS NOT NULL"):
        out.append(str(r["totp_secret"]))
    for r in await _rows(db, "SELECT csrf_token, id_hash FROM sessions"):
        out += [str(r["csrf_token"]), str(r["id_hash"])]
    for r in await _rows(db, "SELECT token_hash FROM api_tokens"):
        out.append(str(r["token_hash"]))
    for key, value in (await settings_table(db)).items():
        if SECRET_NAME.search(key) or key.startswith("totp."):
            out += string_leaves(value)
        _walk_settings(value, box, out)
    return out
