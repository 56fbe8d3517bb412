"""``xenkeep status|setup-token|reset-admin|version``: the appliance itself.

These read the daemon's state directory directly (the setup token file, the
database) and, for ``status``, ask the daemon whether it answers.
"""

from __future__ import annotations

import os
import sys
from typing import Final

from xenkeep import __version__
from xenkeep.cli.client import health
from xenkeep.cli.command import Command
from xenkeep.cli.context import Context, State
from xenkeep.cli.errors import EXIT_DOWN, EXIT_FAILED, EXIT_OK
from xenkeep.system.tls import CERT_NAME, certificate_fingerprint


async def _setup_state(state: State) -> tuple[bool, bool]:
    return await state.auth.admin_exists(), await state.auth.setup_required()


def status(ctx: Context) -> int:
    """Print whether the daemon answers, the URL, fingerprint and setup state."""
    settings = ctx.settings
    cert = settings.tls_dir / CERT_NAME
    answer = health(settings)
    print(f"version:      {__version__}")
    print(f"daemon:       {'running' if answer else 'not answering'}")
    print(f"port:         {settings.https_port}")
    if cert.exists():
        print(f"fingerprint:  SHA-256 {certificate_fingerprint(cert)}")
    if settings.database_path.exists():
        admin, setup = ctx.with_state(_setup_state)
        print(f"administrator: {'yes' if admin else 'none'}")
        if setup:
            print("setup:        waiting for the web wizard (see `xenkeep setup-token`)")
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
    Command("status", "is the daemon running; URL, fingerprint, setup state", status),
    # It writes nothing, so it keeps root: root reads the mode 0600 token file.
    Command("setup-token", "print the one-time setup token", setup_token, as_state_owner=False),
    Command(
        "reset-admin", "disable the administrators, let a new one be created (root)", reset_admin
    ),
    Command("version", "print the version", version, needs_settings=False),
)
