"""Decoding and validating one request line: the helper's closed list of operations.

Only the operations of :data:`~xenkeep.system.helper_protocol.OPERATIONS`
exist, each with its arguments checked here, before anything runs. No path,
command or user name comes from the caller: a disk is a bare kernel name
(``xvdb``) that the applier looks up in a listing of its own.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xenkeep.system.blockdev import DEVICE_NAME
from xenkeep.system.helper_protocol import (
    CONFIRM_SECONDS,
    MAX_APPLY_DELAY,
    MAX_CONFIRM_SECONDS,
    MAX_REQUEST,
    MIN_CONFIRM_SECONDS,
    OPERATIONS,
    RequestError,
)
from xenkeep.system.netconf import (
    NetconfError,
    StaticNetwork,
    parse_address,
    parse_ntp_servers,
    parse_static_network,
)

#: Operations that take no argument at all.
_NO_ARGS = frozenset({"ping", "network.show", "storage.disks", "storage.detach"})
#: What a checkpoint's id is made of (:mod:`.checkpoint` makes them).
CHECKPOINT_ID = re.compile(r"[0-9a-f]{16}")


class NotAllowedError(RequestError):
    """An operation that exists, but not for this caller."""


@dataclass(frozen=True, slots=True)
class Request:
    """A validated operation and its typed arguments."""

    op: str
    network: StaticNetwork | None = None
    ntp: tuple[str, ...] = ()
    device: str = ""
    #: A change's time to be confirmed, and its wait before it is applied.
    timeout: float = CONFIRM_SECONDS
    delay: float = 0.0
    #: The checkpoint a confirm or a revert is about.
    checkpoint: str = ""


def _args(raw: Mapping[str, Any], allowed: set[str]) -> Mapping[str, Any]:
    extra = sorted(set(raw) - allowed)
    if extra:
        raise RequestError(f"unexpected argument {extra[0]!r}", field=extra[0])
    return raw


def _string(args: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = args.get(name)
    if value is None:
        if required:
            raise RequestError(f"{name} is required", field=name)
        return None
    if not isinstance(value, str):
        raise RequestError(f"{name} must be a string", field=name)
    return value


def _string_list(args: Mapping[str, Any], name: str) -> list[str]:
    value = args.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestError(f"{name} must be a list of strings", field=name)
    return value


def _seconds(args: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = args.get(name, default)
    # bool is an int to Python; true is no number of seconds.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RequestError(f"{name} must be a number of seconds", field=name)
    if not low <= value <= high:
        raise RequestError(f"{name} must be between {low:g} and {high:g} seconds", field=name)
    return float(value)


def _change(op: str, args: Mapping[str, Any], **values: Any) -> Request:
    timeout = _seconds(args, "timeout", CONFIRM_SECONDS, MIN_CONFIRM_SECONDS, MAX_CONFIRM_SECONDS)
    delay = _seconds(args, "delay", 0.0, 0.0, MAX_APPLY_DELAY)
    return Request(op, timeout=timeout, delay=delay, **values)


def _device(raw: Mapping[str, Any], *, confirm: bool) -> str:
    args = _args(raw, {"device", "confirm"} if confirm else {"device"})
    device = _string(args, "device")
    assert device is not None
    if not DEVICE_NAME.fullmatch(device):
        raise RequestError(
            f"{device!r} is not a disk name (a kernel name such as xvdb, no /dev/)", "device"
        )
    if confirm and _string(args, "confirm", required=False) != device:
        raise RequestError(f"type the disk name {device} to confirm erasing it", "confirm")
    return device


def parse_request(line: bytes, allowed: frozenset[str] = frozenset(OPERATIONS)) -> Request:
    """Decode and validate one request line from a caller ``allowed`` some operations.

    Raise RequestError. An operation the caller may not call is refused
    before its arguments are read, so its checks are no part of what the
    caller can probe.
    """
    if len(line) > MAX_REQUEST:
        raise RequestError("request too large")
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RequestError("request is not JSON") from None
    if not isinstance(obj, dict) or set(obj) - {"op", "args"}:
        raise RequestError('request must be {"op": ..., "args": {...}}')
    op = obj.get("op")
    if op not in OPERATIONS:
        raise RequestError(f"unknown operation {op!r}", field="op")
    if op not in allowed:
        raise NotAllowedError(f"{op} is root's only, not this caller's", field="op")
    raw_args = obj.get("args", {})
    if not isinstance(raw_args, dict):
        raise RequestError("args must be an object", field="args")
    try:
        return _parse_args(op, raw_args)
    except NetconfError as exc:
        field = {"ip": "address", "netmask": "address"}.get(exc.field, exc.field)
        raise RequestError(str(exc), field=field) from None


def _parse_args(op: str, raw_args: Mapping[str, Any]) -> Request:
    if op in _NO_ARGS:
        _args(raw_args, set())
        return Request(op)
    timing = {"timeout", "delay"}
    if op == "network.dhcp":
        return _change(op, _args(raw_args, timing))
    if op == "network.static":
        args = _args(raw_args, {"address", "gateway", "dns"} | timing)
        address = _string(args, "address")
        assert address is not None
        ip, prefix = parse_address(address)
        network = parse_static_network(
            ip,
            prefix,
            _string(args, "gateway", required=False),
            _string_list(args, "dns"),
            dns_required=True,
        )
        return _change(op, args, network=network)
    if op == "ntp.set":
        args = _args(raw_args, {"servers"} | timing)
        return _change(op, args, ntp=parse_ntp_servers(_string_list(args, "servers")))
    if op in ("network.confirm", "network.revert"):
        args = _args(raw_args, {"checkpoint"})
        checkpoint = _string(args, "checkpoint")
        assert checkpoint is not None
        if not CHECKPOINT_ID.fullmatch(checkpoint):
            raise RequestError(f"{checkpoint!r} is not a checkpoint id", field="checkpoint")
        return Request(op, checkpoint=checkpoint)
    assert op in ("storage.format", "storage.attach"), op
    return Request(op, device=_device(raw_args, confirm=op == "storage.format"))
