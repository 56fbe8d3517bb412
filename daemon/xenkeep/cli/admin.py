"""``xenkeep status|setup-token|reset-admin|version``: the appliance itself.

These read the daemon's state directory directly (the setup token file, the
database) and, for ``status``, ask the daemon whether it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from typing import Final

from xenkeep import __version__
from xenkeep.cli.client import Api, console_token, daemon_url, health
from xenkeep.cli.command import Command
from xenkeep.cli.context import Context, State
from xenkeep.cli.errors import EXIT_DOWN, EXIT_FAILED, EXIT_OK, ConsoleError
from xenkeep.cli.health import summary_line
from xenkeep.config import Settings
from xenkeep.system.console import system_addresses, url_for, usable_addresses
from xenkeep.system.run import CommandError
from xenkeep.system.tls import CERT_NAME, certificate_fingerprint


async def _setup_state(state: State) -> tuple[bool, bool]:
    return await state.auth.admin_exists(), await state.auth.setup_required()


def urls(settings: Settings) -> list[str]:
    """The addresses the web interface answers on, as URLs."""
    if settings.listen not in ("::", "0.0.0.0", ""):  # noqa: S104
        with contextlib.suppress(ValueError):
            return [url_for(settings.listen, settings.https_port)]
    try:
        found = usable_addresses(asyncio.run(system_addresses()))
    except (CommandError, OSError, ValueError):
        found = ()
    return [url_for(a, settings.https_port) for a in found] or [daemon_url(settings) + "/"]


def _health(ctx: Context) -> list[str]:
    """The health summary lines, from the daemon's latest diagnostics."""
    try:
        with console_token(ctx, "console: status") as token:
            api = Api.for_settings(ctx.settings)
            api.token = token
            view = api.get("/api/v1/diagnostics")
    except ConsoleError as exc:
        return [f"health:       unknown ({exc.message})"]
    summary = view.get("summary") or {}
    if not summary.get("checked_at"):
        return ["health:       not checked yet (run `xenkeep check`)"]
    lines = [f"health:       {summary_line(summary)}"]
    lines += [
        f"              {p['status']}: {p['title']}: {p['value']}"
        for p in summary.get("problems") or []
        if p.get("status") == "failure"
    ]
    return lines


def status(ctx: Context) -> int:
    """Print whether the daemon answers, its URL, fingerprint, setup state and health."""
    settings = ctx.settings
    cert = settings.tls_dir / CERT_NAME
    answer = health(settings)
    print(f"version:      {__version__}")
    print(f"daemon:       {'running' if answer else 'not answering'}")
    for url in urls(settings):
        print(f"url:          {url}")
    if cert.exists():
        print(f"fingerprint:  SHA-256 {certificate_fingerprint(cert)}")
    admin = False
    if settings.database_path.exists():
        admin, setup = ctx.with_state(_setup_state)
        print(f"administrator: {'yes' if admin else 'none'}")
        if setup:
            print("setup:        waiting for the web wizard (see `xenkeep setup-token`)")
    if answer and admin:
        for line in _health(ctx):
            print(line)
    return EXIT_OK if answer else EXIT_DOWN


def setup_token(ctx: Context) -> int:
    """Print the one-time setup token while setup is pending."""
    path = ctx.settings.setup_token_path
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        print(
            "no setup token: an administrator exists.\n"
            "To create a new administrator, run `xenkeep reset-admin` as root.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except PermissionError:
        print(f"cannot read {path}: run as root", file=sys.stderr)
        return EXIT_FAILED
    print(token)
    return EXIT_OK


def reset_admin(ctx: Context) -> int:
    """Disable the administrators and allow a new one; keep every other data."""
    db_path = ctx.settings.database_path
    if not db_path.exists():
        print("no database yet: start xenkeepd, then use its setup token", file=sys.stderr)
        return EXIT_FAILED
    if not os.access(db_path, os.W_OK) and os.geteuid() != 0:
        print("reset-admin changes the database: run it as root", file=sys.stderr)
        return EXIT_FAILED
    token = ctx.with_state(lambda state: state.auth.reset_admin())
    print("All sessions were signed out. The administrator accounts were disabled and their")
    print("API tokens revoked: they stay disabled until the new administrator decides.")
    print("Open the web interface and enter this setup token to create a new administrator")
    print("(choose a new name; the other accounts and all data are kept):")
    print(token)
    return EXIT_OK


def version(_ctx: Context) -> int:
    """Print the version."""
    print(__version__)
    return EXIT_OK


COMMANDS: Final = (
    Command("status", "is the daemon running; URL, fingerprint, setup state, health", status),
    # It writes nothing, so it keeps root: root reads the mode 0600 token file.
    Command("setup-token", "print the one-time setup token", setup_token, as_state_owner=False),
    Command(
        "reset-admin", "disable the administrators, let a new one be created (root)", reset_admin
    ),
    Command("version", "print the version", version, needs_settings=False),
)
