"""The support bundle: what it holds, that it streams, and that no secret of
the appliance is in it. A distinct secret goes into every place one can be
configured (pool password, SMTP password, API token, session cookie, TOTP
secret, setup token, TLS key, the secret-box key, a sign-in provider's
secrets, and even a log line that leaked one), then the archive is searched
for each: compressed, and extracted file by file."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import secrets
import tarfile
import time
from pathlib import Path

from tests.integration.backup.conftest import backup_demo_state
from tests.integration.xapi.simfixtures import copy_demo
from tests.support.journal import Entry, write_journal
from tests.support.web import ADMIN_PASSWORD, Browser, complete_setup, make_settings
from xapisim import start_simulator
from xenkeep.app import create_app, database
from xenkeep.appliance_backup.keys import parse_recovery_key
from xenkeep.auth.const import SESSION_COOKIE
from xenkeep.secretbox import KEY_NAME, SecretBox
from xenkeep.web import keys
from xenkeep.web.server import start_server

__all__ = ["backup_demo_state"]


def distinct(name: str) -> str:
    return f"{name}-{secrets.token_hex(12)}"


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


async def test_no_secret_reaches_the_bundle(backup_demo_state: Path, tmp_path: Path) -> None:
    pool_password = distinct("pool-pw")
    smtp_password = distinct("smtp-pw")
    provider_secret = distinct("oidc-client-secret")
    totp_secret = "JBSWY3DPEHPK3PXP" + secrets.token_hex(8).upper()
    journal_dir = tmp_path / "journal"
    # A log line that leaked secrets: the bundle scrubs them by value and by shape.
    await asyncio.to_thread(
        write_journal,
        journal_dir,
        [
            Entry(f"login to the pool with {pool_password} failed"),
            Entry(f"smtp: auth password={smtp_password}", priority=3),
            Entry("a plain line that stays"),
        ],
    )
    settings = make_settings(tmp_path, journal_dir=str(journal_dir))
    sim = await start_simulator(
        await copy_demo(backup_demo_state, tmp_path / "pool"), password=pool_password
    )
    try:
        async with start_server(create_app(settings)) as server:
            app = server.app
            browser = Browser(server)
            await complete_setup(browser, settings)
            auth = keys.auth(app)
            admin = next(u for u in await auth.list_users() if u.username == "alice")
            api_token = await auth.create_api_token(admin, "bundle test")
            await keys.pools(app).add(sim.url, "root", pool_password)
            await keys.backup(app).set_smtp(
                {
                    "host": "mail.test",
                    "username": "reports",
                    "password": smtp_password,
                    "sender": "xenkeep@mail.test",
                    "recipients": "ops@mail.test",
                }
            )
            db = database(app)
            box = SecretBox(settings.state_dir / KEY_NAME)
            await asyncio.to_thread(box.load)
            now = time.time()
            await db.execute(
                "INSERT INTO auth_providers (kind, name, slug, enabled, config, secrets_enc, "
                "created_at, updated_at) VALUES ('oidc', 'Corp SSO', 'corp', 1, ?, ?, ?, ?)",
                (
                    json.dumps({"issuer": "https://idp.test", "client_id": "xenkeep"}),
                    box.encrypt(json.dumps({"client_secret": provider_secret})),
                    now,
                    now,
                ),
            )
            await db.execute(
                "UPDATE users SET totp_secret = ? WHERE id = ?", (totp_secret, admin.id)
            )
            recovery_key = await keys.appliance_backup(app).create_recovery_key()
            await keys.diagnostics(app).start()
            await keys.diagnostics(app).wait(keys.diagnostics(app).running or 0)
            session_cookie = next(
                c.value for c in browser.session.cookie_jar if c.key == SESSION_COOKIE
            )
            # Through the API as the administrator downloads it...
            async with browser.session.get(browser.url("/api/v1/diagnostics/bundle")) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "application/gzip"
                assert (
                    'attachment; filename="xenkeep-support-' in resp.headers["Content-Disposition"]
                )
                downloaded = await resp.read()
            await browser.close()
            # ...and once more while a setup token is pending (after reset-admin).
            setup_token = await auth.reset_admin()
            chunks: list[bytes] = []

            async def keep(chunk: bytes) -> None:
                chunks.append(chunk)

            await keys.bundle(app).stream(keep)
            pending = b"".join(chunks)
            files = {
                "tls key": await asyncio.to_thread(keys.tls(app).key_path.read_text),
                "secret-box key": await asyncio.to_thread(
                    (settings.state_dir / KEY_NAME).read_text
                ),
            }
    finally:
        await sim.close()

    secrets_set = {
        "pool password": pool_password,
        "smtp password": smtp_password,
        "provider secret": provider_secret,
        "totp secret": totp_secret,
        "api token": api_token,
        "session cookie": session_cookie,
        "setup token": setup_token,
        "setup token (bare)": setup_token.replace("-", ""),
        "backup recovery key": recovery_key,
        "backup key": base64.b64encode(parse_recovery_key(recovery_key)).decode(),
        **{name: text.strip() for name, text in files.items()},
    }
    key_lines = [ln for t in files.values() for ln in t.splitlines() if len(ln) > 16]
    for label, archive in (("downloaded", downloaded), ("with a setup token", pending)):
        found = members(archive)
        names = {Path(n).name for n in found}
        assert {
            "README.txt",
            "versions.json",
            "diagnostics.json",
            "config.json",
            "jobs.json",
            "operations.json",
            "journal.log",
        } <= names, names
        blobs = {"the compressed archive": archive, **found}
        for where, data in blobs.items():
            for what, secret in secrets_set.items():
                assert secret.encode() not in data, f"{what} in {where} ({label})"
            for line in key_lines:
                assert line.encode() not in data, f"a key line in {where} ({label})"
        config = json.loads(next(v for k, v in found.items() if k.endswith("config.json")))
        assert config["pools"][0]["username"] == "root"
        assert config["mail"]["password"] == "[redacted]"
        assert config["sign_in_providers"][0]["config"]["client_id"] == "xenkeep"
        assert config["sign_in_providers"][0]["secrets_stored"] == 1
        journal = next(v for k, v in found.items() if k.endswith("journal.log")).decode()
        assert "a plain line that stays" in journal and "[redacted]" in journal
        checks = json.loads(next(v for k, v in found.items() if k.endswith("diagnostics.json")))
        assert len(checks["results"]) >= 20


async def test_a_reader_that_goes_away_stops_the_bundle(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with start_server(create_app(settings)) as server:
        bundle = keys.bundle(server.app)
        got = 0

        async def leave(chunk: bytes) -> None:
            nonlocal got
            got += len(chunk)
            raise ConnectionResetError("the browser closed the tab")

        try:
            await bundle.stream(leave)
        except ConnectionResetError:
            pass
        else:
            raise AssertionError("the reader's error must come through")
        assert got > 0
        # The writer thread ended: another bundle can be made at once.
        chunks: list[bytes] = []

        async def keep(chunk: bytes) -> None:
            chunks.append(chunk)

        await bundle.stream(keep)
        assert members(b"".join(chunks))
    assert ADMIN_PASSWORD
