"""``xenkeep``: the console tool on the appliance.

It reads the daemon's settings, then talks to the running daemon over
HTTPS (pinned to the appliance's own certificate) or opens its state
directory directly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from xenkeep import __version__
from xenkeep.auth.audit import AuditLog
from xenkeep.auth.manager import AuthManager
from xenkeep.cli_backup import add_backup_parser, backup_command, daemon_url
from xenkeep.config import Settings, load_settings
from xenkeep.errors import XenKeepError
from xenkeep.store import open_database
from xenkeep.system.tls import CERT_NAME, certificate_fingerprint


def _drop_to_state_owner(settings: Settings) -> None:
    """Run as the daemon's user when started as root.

    Files SQLite creates (the WAL, the shared-memory index) would otherwise
    belong to root and lock the unprivileged daemon out of its database.
    """
    if os.geteuid() != 0 or not settings.state_dir.exists():
        return
    st = settings.state_dir.stat()
    if st.st_uid == 0:
        return
    os.setgid(st.st_gid)
    os.setuid(st.st_uid)


def _health(settings: Settings) -> dict[str, Any] | None:
    cert = settings.tls_dir / CERT_NAME
    if not cert.exists():
        return None
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.check_hostname = False  # pinned to the exact certificate instead
    url = f"{daemon_url(settings)}/api/v1/health"
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as response:  # noqa: S310 - https only
            return dict(json.load(response))
    except (OSError, ValueError, urllib.error.URLError):
        return None


async def _setup_state(settings: Settings) -> tuple[bool, bool]:
    db = await open_database(settings.database_path)
    try:
        auth = AuthManager(db, AuditLog(db), settings)
        return await auth.admin_exists(), await auth.setup_required()
    finally:
        await db.close()


def cmd_status(settings: Settings) -> int:
    """Print whether the daemon answers, the URL, fingerprint and setup state."""
    cert = settings.tls_dir / CERT_NAME
    health = _health(settings)
    print(f"version:      {__version__}")
    print(f"daemon:       {'running' if health else 'not answering'}")
    print(f"port:         {settings.https_port}")
    if cert.exists():
        print(f"fingerprint:  SHA-256 {certificate_fingerprint(cert)}")
    if settings.database_path.exists():
        admin, setup = asyncio.run(_setup_state(settings))
        print(f"administrator: {'yes' if admin else 'none'}")
        if setup:
            print("setup:        waiting for the web wizard (see `xenkeep setup-token`)")
    return 0 if health else 3


def cmd_setup_token(settings: Settings) -> int:
    """Print the one-time setup token while setup is pending."""
    try:
        token = settings.setup_token_path.read_text().strip()
    except FileNotFoundError:
        print(
            "no setup token: an administrator exists.\n"
            "To create a new administrator, run `xenkeep reset-admin` as root.",
            file=sys.stderr,
        )
        return 1
    except PermissionError:
        print(f"cannot read {settings.setup_token_path}: run as root", file=sys.stderr)
        return 1
    print(token)
    return 0


async def _reset_admin(settings: Settings) -> str:
    db = await open_database(settings.database_path)
    try:
        return await AuthManager(db, AuditLog(db), settings).reset_admin()
    finally:
        await db.close()


def cmd_reset_admin(settings: Settings) -> int:
    """Allow a new administrator to be created; keep every other data."""
    if not settings.database_path.exists():
        print("no database yet: start xenkeepd, then use its setup token", file=sys.stderr)
        return 1
    if not os.access(settings.database_path, os.W_OK) and os.geteuid() != 0:
        print("reset-admin changes the database: run it as root", file=sys.stderr)
        return 1
    token = asyncio.run(_reset_admin(settings))
    print("All sessions were signed out. Open the web interface and enter this setup token")
    print("to create a new administrator (existing accounts and data are kept):")
    print(token)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xenkeep`` console script."""
    parser = argparse.ArgumentParser(prog="xenkeep", description="XenKeep appliance console.")
    parser.add_argument("--config", type=Path, help="TOML settings file of the daemon")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="is the daemon running; URL, fingerprint, setup state")
    sub.add_parser("setup-token", help="print the one-time setup token")
    sub.add_parser("reset-admin", help="let a new administrator be created (root)")
    sub.add_parser("version", help="print the version")
    add_backup_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "version":
        print(__version__)
        return 0
    try:
        settings = load_settings(args.config)
        if args.command != "setup-token":
            _drop_to_state_owner(settings)
        handlers = {
            "status": cmd_status,
            "setup-token": cmd_setup_token,
            "reset-admin": cmd_reset_admin,
            "backup": backup_command(args),
        }
        return handlers[args.command](settings)
    except XenKeepError as exc:
        hint = f"\nhint: {exc.hint}" if exc.hint else ""
        print(f"xenkeep: {exc.message}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
