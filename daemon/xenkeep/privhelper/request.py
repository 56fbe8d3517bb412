"""Decoding and validating one request line: the helper's closed list of operations.

Only the operations of :data:`~xenkeep.system.helper_protocol.OPERATIONS`
exist, each with its arguments checked here, before anything runs. No path,
command or user name comes from the caller: a disk is a bare kernel name
(``xvdb``) that the applier looks up in a listing of its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xenkeep.system.blockdev import DEVICE_NAME
from xenkeep.system.helper_protocol import MAX_REQUEST, OPERATIONS, RequestError
from xenkeep.system.netconf import (
    NetconfError,
    StaticNetwork,
    parse_ntp_servers,
    parse_static_network,
)

#: Operations that take no argument at all.
_NO_ARGS = frozenset({"ping", "network.dhcp", "storage.disks", "storage.detach"})


class NotAllowedError(RequestError):
    """An operation that exists, but not for this caller."""


@dataclass(frozen=True, slots=True)
class Request:
    """A validated operation and its typed arguments."""

    op: str
    network: StaticNetwork | None = None
    ntp: tuple[str, ...] = ()
    device: str = ""


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
    if op == "network.static":
        args = _args(raw_args, {"address", "gateway", "dns"})
        address = _string(args, "address")
        assert address is not None
        ip, sep, prefix = address.partition("/")
        if not sep:
            raise RequestError("address needs a prefix length, e.g. 192.0.2.10/24", "address")
        network = parse_static_network(
            ip, prefix, _string(args, "gateway", required=False), _string_list(args, "dns")
        )
        return Request(op, network=network)
    if op == "ntp.set":
        args = _args(raw_args, {"servers"})
        return Request(op, ntp=parse_ntp_servers(_string_list(args, "servers")))
    assert op in ("storage.format", "storage.attach"), op
    return Request(op, device=_device(raw_args, confirm=op == "storage.format"))
