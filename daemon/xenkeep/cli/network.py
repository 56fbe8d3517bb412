"""``xenkeep network show|dhcp|static|keep|revert`` and ``xenkeep ntp``: from the console.

For when the web UI is out of reach, these talk to the privileged helper
directly (not to the daemon), as root or as the console account. A change
is the same checkpoint the web UI makes (:mod:`xenkeep.privhelper.checkpoint`):
applied, then this command asks on the terminal whether to keep it, in
place of the browser, while the helper counts down; no answer (or Ctrl-C,
or an end of input) means no, and a lost session changes nothing about
that, the helper's deadline brings the previous settings back anyway.
``--no-wait`` applies and returns at once, leaving the decision to
``xenkeep network keep|revert`` or the web page.

Exit codes: 0 kept (or shown), 1 refused, reverted or not kept in time,
130 interrupted (the change is reverted first).
"""

from __future__ import annotations

import argparse
import asyncio
import select
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

from xenkeep.cli.command import Command
from xenkeep.cli.context import Context
from xenkeep.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ConsoleError
from xenkeep.cli.output import emit, emit_json
from xenkeep.system.helper_protocol import CONFIRM_SECONDS
from xenkeep.system.network import NetworkService
from xenkeep.units import clock_duration

T = TypeVar("T")
#: How long the command waits for the interfaces to show a new static address
#: before it asks (networkd takes well under a second on the appliance).
SETTLE_SECONDS: Final = 10.0


def _service(ctx: Context) -> NetworkService:
    return NetworkService(ctx.settings.privhelper_socket)


def _run(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """One call to the helper, in an event loop of its own (the console has no other)."""
    return asyncio.run(work())


def describe(settings: dict[str, Any]) -> str:
    """``DHCP`` or ``static 192.0.2.10/24 via 192.0.2.1, DNS 192.0.2.53``."""
    if settings.get("mode") == "dhcp":
        return "DHCP"
    text = f"static {settings.get('address')}"
    if settings.get("gateway"):
        text += f" via {settings['gateway']}"
    if settings.get("dns"):
        text += ", DNS " + " ".join(settings["dns"])
    return text


def show_lines(shown: dict[str, Any], now: float) -> list[str]:
    """What ``xenkeep network show`` prints."""
    settings = shown.get("settings") or {}
    lines = [f"configured:   {describe(settings)}"]
    lines.append(f"NTP servers:  {' '.join(settings.get('ntp') or []) or 'the image defaults'}")
    for path in shown.get("hand_edited") or []:
        lines.append(f"edited by hand: {path} (not shown above)")
    live = shown.get("live") or {}
    for iface in live.get("interfaces") or []:
        state = "" if iface.get("up") else " (down)"
        addresses = ", ".join(iface.get("addresses") or []) or "no address"
        lines.append(f"{iface.get('name', '?') + ':':<13} {addresses}{state}")
    if live:
        lines.append(f"gateway:      {', '.join(live.get('gateways') or []) or 'none'}")
        lines.append(f"DNS in use:   {' '.join(live.get('dns') or []) or 'none'}")
    pending = shown.get("pending")
    if pending:
        left = clock_duration(pending.get("seconds_left"))
        lines.append(f"waiting:      {pending.get('summary')}")
        lines.append(
            f"              reverts by itself in {left} unless kept (xenkeep network keep)"
        )
    last = shown.get("last")
    if last and not pending:
        ago = clock_duration(now - float(last.get("at") or now))
        lines.append(f"last change:  {last.get('summary')}: {last.get('outcome')} {ago} ago")
        if last.get("outcome") != "kept":
            lines.append(f"              ({last.get('message')})")
    return lines


def network_show(ctx: Context) -> int:
    """The settings, the live addresses, the change waiting, the last one's end."""
    shown = _run(_service(ctx).show)
    if ctx.args.json:
        emit_json(shown)
    else:
        emit("\n".join(show_lines(shown, time.time())))
    return EXIT_OK


def _answer(deadline: float) -> str | None:
    """A line typed before ``deadline`` (monotonic): its text; None if none came.

    An end of input (a closed pipe, Ctrl-D) is the empty answer, a no.
    """
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([sys.stdin], [], [], min(left, 1.0))
        if ready:
            return sys.stdin.readline().strip().lower()


def _settle(service: NetworkService, pending: dict[str, Any]) -> dict[str, Any]:
    """``network.show`` once the interfaces show the change (or after a while)."""
    wanted = str((pending.get("after") or {}).get("address") or "")
    end = time.monotonic() + SETTLE_SECONDS
    while True:
        shown = _run(service.show)
        addresses = [
            a for i in (shown.get("live") or {}).get("interfaces") or [] for a in i["addresses"]
        ]
        ready = wanted in addresses if wanted else bool(addresses)
        if pending.get("op") == "ntp.set" or ready or time.monotonic() >= end:
            return shown
        time.sleep(0.5)


def _decide(service: NetworkService, pending: dict[str, Any]) -> int:
    """Ask on the terminal whether to keep ``pending``; keep or revert it."""
    checkpoint = str(pending["id"])
    deadline = time.monotonic() + float(pending.get("seconds_left") or 0)
    try:
        shown = _settle(service, pending)
        for line in show_lines({**shown, "pending": None, "last": None}, time.time()):
            emit(f"  {line}")
        left = clock_duration(deadline - time.monotonic())
        print(f"Keep these settings? [y/N] (they revert in {left}) ", end="", flush=True)
        answer = _answer(deadline)
    except KeyboardInterrupt:
        emit("")
        _run(lambda: service.revert(checkpoint))
        emit("interrupted: the previous settings are back")
        return EXIT_INTERRUPTED
    if answer is None:
        emit("")
        emit("no answer in time: the previous settings came back by themselves")
        return EXIT_FAILED
    if answer in ("y", "yes"):
        _run(lambda: service.keep(checkpoint))
        emit("kept")
        return EXIT_OK
    _run(lambda: service.revert(checkpoint))
    emit("reverted: the previous settings are back")
    return EXIT_FAILED


def _change(
    ctx: Context, work: Callable[[NetworkService], Coroutine[Any, Any, dict[str, Any]]]
) -> int:
    service = _service(ctx)
    pending = _run(lambda: work(service))["pending"]
    emit(f"applied: {pending['summary']}")
    if ctx.args.no_wait:
        left = clock_duration(pending.get("seconds_left"))
        emit(
            f"keep it within {left} with `xenkeep network keep` (or on the web page), "
            "or it reverts by itself"
        )
        return EXIT_OK
    return _decide(service, pending)


def network_change(ctx: Context) -> int:
    """``network dhcp|static``: apply, then keep or revert."""
    args = ctx.args
    timeout = float(args.timeout)
    if args.network_command == "dhcp":
        return _change(ctx, lambda s: s.set_dhcp(confirm_within=timeout))
    return _change(
        ctx,
        lambda s: s.set_static(args.address, args.gateway, args.dns, confirm_within=timeout),
    )


def network_decide(ctx: Context) -> int:
    """``network keep|revert``: decide the change waiting (the one there is)."""
    service = _service(ctx)
    pending = _run(service.show).get("pending")
    if pending is None:
        raise ConsoleError("no change waits for confirmation", hint="`xenkeep network show`")
    checkpoint = str(pending["id"])
    if ctx.args.network_command == "keep":
        _run(lambda: service.keep(checkpoint))
        emit(f"kept: {pending['summary']}")
    else:
        _run(lambda: service.revert(checkpoint))
        emit(f"reverted: {pending['summary']}")
    return EXIT_OK


def run_network(ctx: Context) -> int:
    """``xenkeep network ...``."""
    if ctx.args.network_command == "show":
        return network_show(ctx)
    if ctx.args.network_command in ("keep", "revert"):
        return network_decide(ctx)
    return network_change(ctx)


def run_ntp(ctx: Context) -> int:
    """``xenkeep ntp SERVER...|--default``: apply, then keep or revert."""
    args = ctx.args
    if bool(args.servers) == args.default:
        raise ConsoleError("name the NTP servers, or --default for the image's own")
    timeout = float(args.timeout)
    return _change(ctx, lambda s: s.set_ntp(args.servers, confirm_within=timeout))


def _change_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=CONFIRM_SECONDS,
        metavar="SECONDS",
        help=f"time to keep the change before it reverts (default {CONFIRM_SECONDS})",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="apply and return; keep it with `xenkeep network keep` or on the web page",
    )


def network_arguments(network: argparse.ArgumentParser) -> None:
    """``network show|dhcp|static|keep|revert`` and their options."""
    cmds = network.add_subparsers(dest="network_command", required=True)
    show = cmds.add_parser("show", help="settings, live addresses, the change waiting")
    show.add_argument("--json", action="store_true", help="print the helper's JSON")
    _change_options(cmds.add_parser("dhcp", help="use DHCP"))
    static = cmds.add_parser("static", help="a static address, gateway and DNS servers")
    static.add_argument("address", metavar="ADDR/PREFIX", help="e.g. 192.0.2.10/24")
    static.add_argument("--gateway", metavar="IP", help="the default gateway (in the subnet)")
    static.add_argument(
        "--dns", nargs="+", required=True, metavar="IP", help="one to three DNS servers"
    )
    _change_options(static)
    cmds.add_parser("keep", help="keep the change waiting for confirmation")
    cmds.add_parser("revert", help="put the previous settings back now")


def ntp_arguments(ntp: argparse.ArgumentParser) -> None:
    """``ntp SERVER...`` or ``ntp --default``."""
    ntp.add_argument("servers", nargs="*", metavar="SERVER", help="host names or addresses")
    ntp.add_argument("--default", action="store_true", help="the image's default servers")
    _change_options(ntp)


COMMANDS: Final = (
    # Straight to the privileged helper, as root or the console account: no
    # database, so no change of user (the helper checks who asks).
    Command(
        "network",
        "the appliance's address, gateway and DNS (changes revert unless kept)",
        run_network,
        network_arguments,
        as_state_owner=False,
    ),
    Command(
        "ntp",
        "the NTP servers (the change reverts unless kept)",
        run_ntp,
        ntp_arguments,
        as_state_owner=False,
    ),
)
