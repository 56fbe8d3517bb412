"""The appliance's block devices, and the mount of its backup disk.

Pure functions over what the system tools print, so that the privileged
helper (:mod:`xenkeep.privhelper.storage`) decides from a fresh reading and
tests can feed recorded output:

- :func:`parse_lsblk` reads ``lsblk --json`` (:data:`LSBLK_ARGV`, util-linux
  2.38: the ``MOUNTPOINTS`` column lists every mount of a device, swap as
  ``[SWAP]``) and keeps the whole disks, each with ``in_use``: empty when the
  disk may be formatted, else why not, in plain words. A device that holds
  part of a mounted filesystem is in use even without a mount point of its
  own: a btrfs spanning devices is mounted through one of them, and every
  member carries the same filesystem UUID (:func:`mounted_uuids`).
- :func:`parse_wipefs` reads ``wipefs --json`` (which, without ``-a``, only
  lists signatures): a probe of one disk that does not depend on the udev
  database lsblk reads, so it is right even just after ``mkfs``.
- :func:`find_mount` reads ``/proc/self/mountinfo``: what is mounted at a path.
- :func:`render_mount_unit` and :func:`mount_unit_name`: the systemd mount
  unit of the backup disk.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any

from xenkeep.system.netconf import Entry, UnrepresentableError, render_systemd_file

#: The columns the parser needs; all exist in util-linux 2.38 (bookworm).
LSBLK_COLUMNS = "NAME,PATH,SIZE,TYPE,RO,RM,FSTYPE,LABEL,UUID,MODEL,SERIAL,MOUNTPOINTS,PKNAME"
LSBLK_ARGV = ["lsblk", "--json", "--bytes", "-o", LSBLK_COLUMNS]
#: Filesystems XenKeep mounts as backup storage (attach keeps what it finds).
SUPPORTED_FSTYPES = ("xfs", "ext4", "btrfs")
#: wipefs signature types that mean "this disk is partitioned".
PARTITION_TABLES = frozenset({"gpt", "dos", "PMBR", "atari", "bsd", "sun", "sgi", "mac"})
#: A kernel block device name: no slash, no dot, nothing a path could hide in.
#: Use with fullmatch: "$" alone also matches before a final newline.
DEVICE_NAME = re.compile(r"[a-z][a-z0-9]{0,31}")
_UUID = re.compile(r"[0-9A-Fa-f-]{1,64}")
_KIND = {"part": "partition", "lvm": "LVM volume", "crypt": "encrypted volume"}


class BlockDevError(ValueError):
    """The output of a system tool could not be understood."""


@dataclass(frozen=True, slots=True)
class BlockDisk:
    """A whole disk of the appliance; ``in_use`` is empty if it may be formatted."""

    name: str
    path: str
    size: int
    model: str | None
    serial: str | None
    fstype: str | None
    label: str | None
    uuid: str | None
    mountpoints: tuple[str, ...]
    partitions: tuple[str, ...]
    in_use: str

    def to_json(self) -> dict[str, Any]:
        """The disk as a JSON object (the helper's answer, the daemon's API)."""
        return {
            "name": self.name,
            "path": self.path,
            "size": self.size,
            "model": self.model,
            "serial": self.serial,
            "fstype": self.fstype,
            "label": self.label,
            "uuid": self.uuid,
            "mountpoints": list(self.mountpoints),
            "partitions": list(self.partitions),
            "in_use": self.in_use,
        }


@dataclass(frozen=True, slots=True)
class _Node:
    name: str
    path: str
    size: int
    type: str
    ro: bool
    rm: bool
    fstype: str | None
    label: str | None
    uuid: str | None
    model: str | None
    serial: str | None
    mountpoints: tuple[str, ...]
    pkname: str | None


def _text(dev: dict[str, Any], key: str, where: str) -> str | None:
    value = dev.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BlockDevError(f"lsblk output: {where}: {key} is not a string")
    value = value.strip()
    return value or None


def _flag(dev: dict[str, Any], key: str, where: str) -> bool:
    value = dev.get(key, False)
    # util-linux before 2.37 printed "0"/"1"; 2.38 prints booleans.
    if isinstance(value, bool):
        return value
    if value in ("0", "1", 0, 1):
        return bool(int(value))
    raise BlockDevError(f"lsblk output: {where}: {key} is not a boolean")


def _node(dev: Any, where: str) -> _Node:
    if not isinstance(dev, dict):
        raise BlockDevError(f"lsblk output: {where} is not an object")
    name = _text(dev, "name", where)
    if name is None:
        raise BlockDevError(f"lsblk output: {where} has no name")
    where = f"device {name!r}"
    dtype = _text(dev, "type", where)
    if dtype is None:
        raise BlockDevError(f"lsblk output: {where} has no type")
    size = dev.get("size")
    if isinstance(size, str) and size.isdigit():
        size = int(size)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BlockDevError(f"lsblk output: {where}: size is not a number of bytes (--bytes)")
    raw_mounts = dev.get("mountpoints", [])
    if raw_mounts is None:
        raw_mounts = []
    if not isinstance(raw_mounts, list) or not all(
        m is None or isinstance(m, str) for m in raw_mounts
    ):
        raise BlockDevError(f"lsblk output: {where}: mountpoints is not a list")
    return _Node(
        name=name,
        path=_text(dev, "path", where) or f"/dev/{name}",
        size=size,
        type=dtype,
        ro=_flag(dev, "ro", where),
        rm=_flag(dev, "rm", where),
        fstype=_text(dev, "fstype", where),
        label=_text(dev, "label", where),
        uuid=_text(dev, "uuid", where),
        model=_text(dev, "model", where),
        serial=_text(dev, "serial", where),
        mountpoints=tuple(m for m in raw_mounts if m),
        pkname=_text(dev, "pkname", where),
    )


def _walk(
    devices: Any, parent: str | None, nodes: dict[str, _Node], children: dict[str, list[str]]
) -> None:
    if not isinstance(devices, list):
        raise BlockDevError("lsblk output: blockdevices/children is not a list")
    for i, dev in enumerate(devices):
        node = _node(dev, f"device #{i + 1}" if parent is None else f"a child of {parent!r}")
        nodes.setdefault(node.name, node)
        # The tree says who holds whom; PKNAME says it too in flat (--list) output.
        for holder in {parent, node.pkname} - {None}:
            assert holder is not None
            if node.name not in children.setdefault(holder, []):
                children[holder].append(node.name)
        if "children" in dev:
            _walk(dev["children"], node.name, nodes, children)


def _descendants(name: str, children: dict[str, list[str]]) -> list[str]:
    seen: list[str] = []
    stack = list(reversed(children.get(name, [])))
    while stack:
        child = stack.pop()
        if child in seen or child == name:
            continue
        seen.append(child)
        stack.extend(reversed(children.get(child, [])))
    return seen


def _mount_words(mountpoint: str) -> str:
    return "is swap" if mountpoint == "[SWAP]" else f"is mounted at {mountpoint}"


def _kind(node: _Node) -> str:
    return _KIND.get(node.type, "RAID array" if node.type.startswith("raid") else node.type)


def _part_of(node: _Node, mounted: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """Where the filesystem ``node`` is a member of is mounted through another device."""
    if node.mountpoints or node.uuid is None:
        return ()
    return mounted.get(node.uuid, ())


def _part_words(node: _Node, mounted: dict[str, tuple[str, ...]]) -> list[str]:
    fs = node.fstype or "same"
    return [f"holds part of the {fs} filesystem at {m}" for m in _part_of(node, mounted)]


def _in_use(disk: _Node, below: list[_Node], mounted: dict[str, tuple[str, ...]]) -> str:
    if any("/" in n.mountpoints or "/" in _part_of(n, mounted) for n in (disk, *below)):
        # A second device of a btrfs root is as much the root as the first.
        return "holds the root filesystem"
    reasons = [_mount_words(m) for m in disk.mountpoints] + _part_words(disk, mounted)
    if disk.fstype == "swap" and "is swap" not in reasons:
        reasons.append("is swap")
    for node in below:
        kind = _kind(node)
        words = [_mount_words(m) for m in node.mountpoints] + _part_words(node, mounted)
        if not words and node.fstype == "swap":
            words = ["is swap"]
        if not words and node.type != "part":
            # An active device-mapper or md holder keeps the disk open.
            words = ["is active"]
        reasons.extend(f"{kind} {node.name} {w}" for w in words)
    if disk.ro:
        reasons.append("read-only")
    if disk.rm:
        reasons.append("removable")
    if disk.size == 0:
        reasons.append("has no medium (size 0)")
    return "; ".join(reasons)


def _mounted_uuids(nodes: Iterable[_Node]) -> dict[str, tuple[str, ...]]:
    # A filesystem on several devices (btrfs RAID, a second device added to
    # the root) is mounted through one of them: the others show no mount
    # point, only the filesystem's UUID, the same on every member.
    mounted: dict[str, tuple[str, ...]] = {}
    for node in nodes:
        if node.uuid is not None and node.mountpoints:
            mounted[node.uuid] = tuple(
                dict.fromkeys((*mounted.get(node.uuid, ()), *node.mountpoints))
            )
    return mounted


def mounted_uuids(text: str) -> dict[str, tuple[str, ...]]:
    """The UUIDs of mounted filesystems in ``lsblk --json`` output, with their mount points."""
    nodes: dict[str, _Node] = {}
    _walk(_blockdevices(text), None, nodes, {})
    return _mounted_uuids(nodes.values())


def _blockdevices(text: str) -> Any:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BlockDevError(f"lsblk output is not JSON: {exc}") from None
    if not isinstance(obj, dict) or "blockdevices" not in obj:
        raise BlockDevError('lsblk output has no "blockdevices" list')
    return obj["blockdevices"]


def parse_lsblk(text: str, *, include_loop: bool = False) -> list[BlockDisk]:
    """The whole disks in ``lsblk --json`` output (:data:`LSBLK_ARGV`).

    Loop devices count as disks only with ``include_loop`` (tests attach
    them); CD drives (type ``rom``), partitions and holders are not listed,
    but a disk's partitions and holders decide its ``in_use``. Raise
    :class:`BlockDevError` on output that is not what lsblk prints.
    """
    nodes: dict[str, _Node] = {}
    children: dict[str, list[str]] = {}
    _walk(_blockdevices(text), None, nodes, children)
    mounted = _mounted_uuids(nodes.values())
    kinds = ("disk", "loop") if include_loop else ("disk",)
    disks = []
    for node in nodes.values():
        if node.type not in kinds:
            continue
        below = [nodes[n] for n in _descendants(node.name, children) if n in nodes]
        disks.append(
            BlockDisk(
                name=node.name,
                path=node.path,
                size=node.size,
                model=node.model,
                serial=node.serial,
                fstype=node.fstype,
                label=node.label,
                uuid=node.uuid,
                mountpoints=node.mountpoints,
                partitions=tuple(n.name for n in below if n.type == "part"),
                in_use=_in_use(node, below, mounted),
            )
        )
    return disks


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature wipefs found on a device (filesystem, partition table, ...)."""

    type: str
    offset: int
    uuid: str | None
    label: str | None


def parse_wipefs(text: str) -> list[Signature]:
    """The signatures in ``wipefs --json DEVICE`` output (no signature: an empty list)."""
    text = text.strip()
    if not text:
        # wipefs prints nothing at all when it finds nothing on some versions.
        return []
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BlockDevError(f"wipefs output is not JSON: {exc}") from None
    sigs = obj.get("signatures") if isinstance(obj, dict) else None
    if not isinstance(sigs, list):
        raise BlockDevError('wipefs output has no "signatures" list')
    out = []
    for sig in sigs:
        if not isinstance(sig, dict) or not isinstance(sig.get("type"), str):
            raise BlockDevError("wipefs output: a signature has no type")
        try:
            offset = int(str(sig.get("offset", "0")), 0)
        except ValueError:
            raise BlockDevError(f"wipefs output: bad offset {sig.get('offset')!r}") from None
        uuid, label = sig.get("uuid"), sig.get("label")
        out.append(
            Signature(
                type=sig["type"],
                offset=offset,
                uuid=uuid if isinstance(uuid, str) and uuid else None,
                label=label if isinstance(label, str) and label else None,
            )
        )
    return out


def signature_in_use(sig: Signature, mounted: dict[str, tuple[str, ...]]) -> str:
    """Why a disk whose probe found ``sig`` may not be used (empty: it may)."""
    if sig.type == "swap":
        return "is swap"
    where = mounted.get(sig.uuid, ()) if sig.uuid is not None else ()
    if "/" in where:
        return "holds the root filesystem"
    return "; ".join(f"holds part of the {sig.type} filesystem at {m}" for m in where)


def with_signature(
    disk: BlockDisk, sig: Signature, mounted: dict[str, tuple[str, ...]] | None = None
) -> BlockDisk:
    """``disk`` as a probe of the disk itself found it (lsblk knew no filesystem).

    ``mounted`` (:func:`mounted_uuids`) makes a member of a mounted
    multi-device filesystem in use, as :func:`parse_lsblk` does when udev
    already knew the member.
    """
    in_use = disk.in_use
    reason = signature_in_use(sig, mounted or {})
    if reason and reason not in in_use:
        in_use = "; ".join(r for r in (in_use, reason) if r)
    return replace(disk, fstype=sig.type, uuid=sig.uuid, label=sig.label, in_use=in_use)


@dataclass(frozen=True, slots=True)
class MountEntry:
    """What is mounted at a mount point: the source device and its type."""

    source: str
    fstype: str


def _unescape_mountinfo(field: str) -> str:
    # The kernel writes space, tab, newline and backslash as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def find_mount(mountinfo: str, mountpoint: str | os.PathLike[str]) -> MountEntry | None:
    """The topmost mount at ``mountpoint`` in ``/proc/self/mountinfo`` text, or None."""
    target = str(mountpoint).rstrip("/") or "/"
    found = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if not sep or len(fields) < 5 or len(rest) < 2:
            raise BlockDevError(f"mountinfo: cannot read line {line!r}")
        if _unescape_mountinfo(fields[4]) == target:
            # Later lines are mounted on top of earlier ones.
            found = MountEntry(source=_unescape_mountinfo(rest[1]), fstype=rest[0])
    return found


def mount_unit_name(mountpoint: str | os.PathLike[str]) -> str:
    """The unit name systemd requires for a mount at ``mountpoint``.

    The escaping of ``systemd-escape --path --suffix=mount``: slashes become
    dashes, other bytes outside ``[A-Za-z0-9:_.]`` (and a leading dot) ``\\xNN``.
    """
    path = str(PurePosixPath(mountpoint)).strip("/")
    if not path:
        return "-.mount"
    out = []
    for i, byte in enumerate(path.encode()):
        char = chr(byte)
        if char == "/":
            out.append("-")
        elif (char.isascii() and char.isalnum()) or char in ":_" or (char == "." and i > 0):
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out) + ".mount"


def _notes(text: str) -> list[Entry]:
    return [("#", line) for line in text.splitlines()]


def render_mount_unit(uuid: str, fstype: str, mountpoint: str | os.PathLike[str]) -> str:
    """The mount unit of the backup disk, named :func:`mount_unit_name`.

    The UUID comes from the disk (whoever made its filesystem chose it): it
    is checked here, and the file goes through the one serializer of the
    helper's files, :func:`xenkeep.system.netconf.render_systemd_file`.
    """
    if not _UUID.fullmatch(uuid):
        raise BlockDevError(f"not a filesystem UUID: {uuid!r}")
    if fstype not in SUPPORTED_FSTYPES:
        raise BlockDevError(f"not a supported filesystem: {fstype!r}")
    unit: list[Entry] = [
        ("Description", "XenKeep backup storage"),
        *_notes(
            "tmpfiles makes the mount point, root's, so that the daemon cannot write\n"
            "to the root filesystem while no disk is mounted: mount on top of it.\n"
            "(No cycle: with nofail below, the mount is not ordered before\n"
            "local-fs.target, which tmpfiles-setup comes after.)"
        ),
        ("After", "systemd-tmpfiles-setup.service"),
        ("Before", "xenkeepd.service"),
    ]
    mount: list[Entry] = [
        ("What", f"/dev/disk/by-uuid/{uuid}"),
        ("Where", str(mountpoint)),
        ("Type", fstype),
        *_notes(
            "nofail: local-fs.target is not ordered after this mount, so a missing\n"
            "disk does not hold up the boot. Backups are data: no devices, no\n"
            "programs, no set-uid files on them."
        ),
        ("Options", "noatime,nodev,nosuid,noexec,nofail"),
    ]
    install: list[Entry] = [
        *_notes(
            "Deliberately not local-fs.target: a backup disk missing at boot\n"
            "(detached in XenServer, or broken) must leave the appliance reachable,\n"
            "with the UI saying so, rather than drop it into emergency mode."
        ),
        ("WantedBy", "multi-user.target"),
    ]
    header = [
        "The XenKeep backup disk, written by xenkeep-privhelper (storage.format,",
        "storage.attach); storage.detach removes it.",
    ]
    try:
        return render_systemd_file(header, [("Unit", unit), ("Mount", mount), ("Install", install)])
    except UnrepresentableError as exc:
        raise BlockDevError(str(exc)) from None
