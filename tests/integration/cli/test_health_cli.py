"""`xenkeep status`, `check` and `support-bundle` against the real daemon:
their output and exit codes."""

from __future__ import annotations

import asyncio
import io
import shutil
import tarfile
from pathlib import Path

from tests.integration.cli.conftest import Console
from tests.support.web import Browser, complete_setup
from xenkeep.cli.health import COLOURS, coloured, result_lines
from xenkeep.config import Settings
from xenkeep.web import keys
from xenkeep.web.server import RunningServer


async def test_check_before_setup_says_so_and_fails(console: Console) -> None:
    code, out, err = await console("check")
    assert code == 1 and "no administrator yet" in err and out == ""


async def test_check_runs_every_check_and_exits_1_on_a_failure(
    console: Console, browser: Browser, settings: Settings, daemon: RunningServer
) -> None:
    await complete_setup(browser, settings)
    code, out, _ = await console("check")
    lines = out.splitlines()
    # No terminal here: no colour codes.
    assert "\033[" not in out
    assert lines[-1].endswith("failure(s)") and lines[-1].startswith(
        str(len([ln for ln in lines if ln.startswith("ok ")]))
    )
    assert any(ln.startswith("ok       Database schema version: schema") for ln in lines)
    failures = int(lines[-1].split(", ")[2].split()[0])
    assert code == (1 if failures else 0)
    # A failing check makes the exit code 1: the storage directory goes away.
    store = Path(settings.state_dir) / "store"
    await asyncio.to_thread(store.mkdir)
    await keys.backup(daemon.app).use_directory(str(store))
    code, out, _ = await console("check")
    assert "ok       Backup storage writable: wrote, synced and read back" in out
    await asyncio.to_thread(shutil.rmtree, store)
    code, out, _ = await console("check")
    assert code == 1
    assert "failure  Backup storage writable: the backup storage cannot be used:" in out
    assert "         → Check that the backup disk is still attached" in out


def test_status_words_are_coloured_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert coloured("failure", io.StringIO()) == "failure"
    assert coloured("failure", Tty()).startswith(COLOURS["failure"])
    lines = result_lines(
        [{"status": "warning", "title": "Load", "value": "high", "remedy": "add vCPUs"}],
        io.StringIO(),
    )
    assert lines == ["warning  Load: high", "         → add vCPUs"]


async def test_status_prints_url_fingerprint_and_health(
    console: Console, browser: Browser, settings: Settings, daemon: RunningServer
) -> None:
    await complete_setup(browser, settings)
    code, out, _ = await console("status")
    assert code == 0
    assert f"url:          https://127.0.0.1:{daemon.https_port}/" in out
    assert "fingerprint:  SHA-256 " + keys.tls(daemon.app).fingerprint in out
    assert "health:       not checked yet" in out
    await console("check")
    code, out, _ = await console("status")
    assert code == 0 and "health:       " in out and " ok, " in out


async def test_support_bundle_is_written_where_asked(
    console: Console, browser: Browser, settings: Settings, tmp_path: Path
) -> None:
    await complete_setup(browser, settings)
    target = tmp_path / "bundle.tar.gz"
    code, out, err = await console("support-bundle", "-o", str(target))
    assert code == 0, err
    assert out.startswith(f"support bundle: {target} (")
    assert (await asyncio.to_thread(target.stat)).st_mode & 0o777 == 0o600

    def names() -> list[str]:
        with tarfile.open(target) as tar:
            return tar.getnames()

    found = {Path(n).name for n in await asyncio.to_thread(names)}
    assert {"README.txt", "config.json", "diagnostics.json", "journal.log"} <= found
    assert not (tmp_path / "bundle.tar.gz.partial").exists()


async def complete_setup_offline(settings: Settings) -> None:
    """An administrator in the database of a daemon that is not running."""
    from xenkeep.app import create_app
    from xenkeep.web.server import start_server

    async with start_server(create_app(settings)) as server:
        b = Browser(server)
        await complete_setup(b, settings)
        await b.close()


async def test_commands_say_when_the_daemon_is_down(settings: Settings, tmp_path: Path) -> None:
    from tests.integration.cli.conftest import write_cli_config

    down = Console(write_cli_config(settings, 1, tmp_path / "down.toml"))
    code, out, _ = await down("status")
    assert code == 3 and "daemon:       not answering" in out
    await complete_setup_offline(settings)
    for command in (["check"], ["support-bundle", "-o", str(tmp_path / "b.tgz")]):
        code, _, err = await down(*command)
        assert code == 3 and "the daemon is not answering" in err, command
    assert not (tmp_path / "b.tgz.partial").exists()
