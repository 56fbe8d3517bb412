"""``xenkeep status|setup-token|reset-admin|version`` in-process against the
real daemon: what each prints, its exit code, and settings errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.integration.cli.conftest import Console, write_cli_config
from tests.support.web import Browser, complete_setup, make_settings, setup_token
from xenkeep import __version__
from xenkeep.app import create_app
from xenkeep.config import Settings
from xenkeep.system.tls import CERT_NAME, certificate_fingerprint
from xenkeep.web.server import start_server


async def test_status_setup_token_and_reset_admin(
    console: Console, browser: Browser, settings: Settings
) -> None:
    code, out, err = await console("status")
    assert code == 0, err
    assert "daemon:       running" in out
    assert await asyncio.to_thread(certificate_fingerprint, settings.tls_dir / CERT_NAME) in out
    assert "administrator: none" in out and "waiting for the web wizard" in out

    code, out, err = await console("setup-token")
    assert code == 0, err
    assert out.strip() == await setup_token(settings)

    await complete_setup(browser, settings)
    code, out, err = await console("setup-token")
    assert code == 1 and out == "" and "an administrator exists" in err
    code, out, _err = await console("status")
    assert code == 0 and "administrator: yes" in out and "waiting" not in out

    code, out, err = await console("reset-admin")
    assert code == 0, err
    assert out.splitlines()[-1] == await setup_token(settings)
    code, out, _err = await console("status")
    assert "waiting for the web wizard" in out


async def test_status_of_a_stopped_daemon_exits_3(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with start_server(create_app(settings)) as server:
        port = server.https_port
    console = Console(write_cli_config(settings, port, tmp_path / "cli.toml"))
    code, out, _err = await console("status")
    assert code == 3
    assert "daemon:       not answering" in out and "fingerprint:  SHA-256 " in out


async def test_version_reads_no_settings_and_bad_settings_are_one_line(tmp_path: Path) -> None:
    missing = Console(tmp_path / "missing.toml")
    assert await missing("version") == (0, f"{__version__}\n", "")

    code, out, err = await missing("status")
    assert code == 1 and out == ""
    assert err == f"xenkeep: configuration file {tmp_path / 'missing.toml'} does not exist\n"

    (tmp_path / "bad.toml").write_text("colour = 1\n")
    code, _out, err = await Console(tmp_path / "bad.toml")("reset-admin")
    assert code == 1
    assert err.startswith("xenkeep: unknown setting 'colour'") and "\nhint: known settings" in err
