"""``xenkeep pools``: the connected pools and their storage repositories,
with the free space of each, so ``backup restore --sr`` can be filled in.

Works through the daemon's API with the console's token, as the backup
commands do (see :mod:`xenkeep.cli.client`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

from xenkeep.cli.client import Api, console_token
from xenkeep.cli.command import Command
from xenkeep.cli.context import Context
from xenkeep.cli.errors import EXIT_INTERRUPTED, EXIT_OK
from xenkeep.cli.output import emit, emit_json, table
from xenkeep.units import human_bytes

#: SR types that hold no VM disks: ISO libraries and removable devices.
NOT_FOR_DISKS: Final = frozenset({"iso", "udev"})


def sr_rows(srs: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """One row per SR, those that can take disks first, by name: the uuid
    to give ``--sr``, its name (and host for a local SR), type, free and size."""

    def order(sr: Mapping[str, Any]) -> tuple[bool, str]:
        return (str(sr.get("type")) in NOT_FOR_DISKS, str(sr.get("name") or "").lower())

    rows = []
    for sr in sorted(srs, key=order):
        size = int(sr.get("size") or 0)
        free = max(0, size - int(sr.get("used") or 0))
        name = str(sr.get("name") or "")
        if sr.get("host"):
            name += f" on {sr['host']}"
        kind = str(sr.get("type") or "")
        if kind in NOT_FOR_DISKS:
            kind += " (no VM disks)"
        rows.append([str(sr.get("uuid")), name, kind, human_bytes(free), human_bytes(size)])
    return rows


def list_pools(api: Api, args: argparse.Namespace) -> int:
    """Each pool, its connection, and its SRs."""
    pools = api.get("/api/v1/pools")["pools"]
    detail = [api.get(f"/api/v1/pools/{int(p['id'])}") for p in pools]
    if args.json:
        emit_json({"pools": detail})
        return EXIT_OK
    if not detail:
        emit("no pool is connected yet (add one on the web interface's Pools page)")
        return EXIT_OK
    for i, pool in enumerate(detail):
        if i:
            emit("")
        state = (pool.get("status") or {}).get("state", "?")
        emit(f"pool {pool['id']}  {pool.get('name')}  {state}  {pool.get('url')}")
        srs = pool.get("srs") or []
        if srs:
            emit(table(["SR", "NAME", "TYPE", "FREE", "SIZE"], sr_rows(srs)))
        else:
            emit("  no SR known (the pool is not connected)")
    return EXIT_OK


def run_pools(ctx: Context) -> int:
    """``xenkeep pools``: check the daemon, borrow a token, list."""
    try:
        api = Api.for_settings(ctx.settings)
        api.get("/api/v1/health")
        with console_token(ctx, "console: pools") as token:
            api.token = token
            return list_pools(api, ctx.args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def pools_arguments(parser: argparse.ArgumentParser) -> None:
    """``pools [--json]``."""
    parser.add_argument("--json", action="store_true", help="print the API's JSON")


COMMANDS: Final = (
    Command(
        "pools",
        "the connected pools and their SRs with free space",
        run_pools,
        pools_arguments,
    ),
)
