"""Creating VMs from a template with CloudInit, as one operation.

The request is checked whole before anything is made: the template, SR and
network exist and belong to one of the caller's resource sets (any, for a
super-administrator), the custom ``#cloud-config`` and the network settings
parse, the keys are the caller's, and the quota is charged
(:meth:`~xenkeep.selfservice.sets.ResourceSets.reserve`, one transaction).
Then, per VM, the operation copies the template to the chosen SR, grows the
root disk, adds the extra disks, puts one VIF on the network, builds the
NoCloud drive and streams it with ``import_raw_vdi?format=raw`` into a new
small VDI attached read-only, writes the owner into ``other_config``, grants
the creator the admin role on the VM (the one authorization mechanism) and
starts it. Whatever fails, what this VM's step made is destroyed again (VM,
VBDs, VDIs) and its charge released.

The config drive holds the VM's first-boot secrets in clear (its keys, its
custom ``#cloud-config``) and an admin browsing the SR would not know it can
go. So once the guest's agent reports (``VM_guest_metrics``: the OS is up,
cloud-init has read its NoCloud seed in its local stage long before), the
operation's last stage detaches and destroys the drive; a super-administrator
may keep it (``keep_config_drive``). A guest that never reports keeps its
drive, and the operation ends with a warning saying so. On later boots
cloud-init finds no datasource and, as Debian's ds-identify does, stays
disabled: the instance is not configured twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from xenkeep.auth.grants import Grants, Subject, SubjectKind
from xenkeep.auth.permissions import ObjectKind, ObjectRef, ObjectRole
from xenkeep.cloudinit import drive
from xenkeep.errors import NotFoundError, PermissionDeniedError, ValidationError
from xenkeep.formats import cloudinit as ci
from xenkeep.formats.errors import CloudConfigError
from xenkeep.ops import Operations
from xenkeep.ops.const import OpKind
from xenkeep.ops.context import OperationContext
from xenkeep.ops.manager import OperationKind, Outcome
from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import XapiFailure
from xenkeep.xapi.guest import guest_report
from xenkeep.xapi.transfer import import_raw_vdi

from .sets import Amounts, ResourceSet, ResourceSets
from .sshkeys import SshKeys

log = logging.getLogger(__name__)

MiB: Final = 1 << 20
GiB: Final = 1 << 30
MAX_BATCH: Final = 20
MAX_VCPUS: Final = 64
MAX_MEMORY_MIB: Final = 1 << 20
MAX_DISK_GIB: Final = 16 * 1024
NULL_REF: Final = "OpaqueRef:NULL"
#: Copying a template's disks to another SR can take long on a real pool.
COPY_TIMEOUT: Final = 3600.0
OWNER_KEY: Final = "xenkeep-owner"
SET_KEY: Final = "xenkeep-resource-set"
DRIVE_KEY: Final = "xenkeep-config-drive"
#: How long the operation waits for a new VM's guest to report its first
#: boot before it leaves the config drive attached (with a warning).
FIRST_BOOT_TIMEOUT: Final = 900.0
#: Seconds between two looks at a new VM's guest metrics.
FIRST_BOOT_POLL: Final = 2.0


class Stage(StrEnum):
    COPY = "copy template"
    DISKS = "disks"
    NETWORK = "network"
    CONFIG_DRIVE = "config drive"
    START = "start"
    FIRST_BOOT = "first boot"


KIND: Final = OperationKind(OpKind.VM_CREATE, "VM creation", Stage)


@dataclass
class Request:
    """A checked creation request."""

    pool_id: int
    template: str
    names: list[str]
    vcpus: int
    memory: int
    root_disk: int
    extra_disks: list[int]
    sr: str
    network: str
    keys: list[str]
    custom: str = ""
    network_config: str = ""
    keep_drive: bool = False
    start: bool = True


@dataclass
class Made:
    """What one VM's creation has made so far (destroyed again on failure)."""

    vm: str = ""
    vdis: list[str] = field(default_factory=list)


def _int(body: dict[str, Any], name: str, low: int, high: int, default: int | None = None) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValidationError(f"{name!r} must be a whole number from {low} to {high}", field=name)
    return value


def _str(body: dict[str, Any], name: str, *, required: bool = True, limit: int = 200) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or len(value) > limit or (required and not value.strip()):
        raise ValidationError(f"{name!r} is required (text up to {limit} characters)", field=name)
    return value.strip()


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise ValidationError(f"{name!r} is true or false", field=name)
    return value


def batch_names(name: str, count: int) -> list[str]:
    """``{name}{index}`` names: ``{index}`` replaced by 1..count, or appended."""
    if count == 1:
        return [name.replace("{index}", "1")]
    pattern = name if "{index}" in name else name + "{index}"
    return [pattern.replace("{index}", str(i)) for i in range(1, count + 1)]


def is_cloud_ready(record: dict[str, Any]) -> bool:
    """A template marked CloudInit-ready (tag or other_config)."""
    other = record.get("other_config") or {}
    return "cloud-init" in (record.get("tags") or []) or str(other.get("cloud-init")) == "true"


class Creator:
    """Self-service creation: checks, charges and runs the operation."""

    def __init__(
        self,
        *,
        ops: Operations,
        sets: ResourceSets,
        keys: SshKeys,
        grants: Grants,
        client_of: Callable[[int], XapiClient],
        scratch: Path | None = None,
        cloud_config_schema: ci.SchemaChecker | None = None,
        first_boot_timeout: float = FIRST_BOOT_TIMEOUT,
        first_boot_poll: float = FIRST_BOOT_POLL,
    ) -> None:
        self._ops = ops
        self._sets = sets
        self._keys = keys
        self._grants = grants
        self._client_of = client_of
        self._scratch = scratch
        self._schema = cloud_config_schema
        self._first_boot_timeout = first_boot_timeout
        self._first_boot_poll = first_boot_poll

    async def parse(self, body: dict[str, Any], user_id: int) -> Request:
        """The request checked (nothing made yet)."""
        pool_id = _int(body, "pool", 0, 2**62)
        count = _int(body, "count", 1, MAX_BATCH, 1)
        name = _str(body, "name", limit=80)
        extra = body.get("extra_disks_gib", [])
        if not isinstance(extra, list) or len(extra) > 8:
            raise ValidationError(
                "'extra_disks_gib' is a list of up to 8 sizes", field="extra_disks_gib"
            )
        extras = []
        for size in extra:
            if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_DISK_GIB:
                raise ValidationError("each extra disk is 1 to 16384 GiB", field="extra_disks_gib")
            extras.append(size * GiB)
        key_ids = body.get("ssh_keys", [])
        if not isinstance(key_ids, list) or not all(
            isinstance(k, int) and not isinstance(k, bool) for k in key_ids
        ):
            raise ValidationError("'ssh_keys' is a list of key ids", field="ssh_keys")
        names = batch_names(name, count)
        try:
            for n in names:
                ci.hostname_of(n)
            custom = body.get("cloud_config", "") or ""
            if not isinstance(custom, str) or len(custom) > 64 * 1024:
                raise ValidationError("'cloud_config' is text up to 64 KiB", field="cloud_config")
            ci.parse_custom(custom, self._schema)
            netcfg = self._network_config(body.get("network_config"))
        except CloudConfigError as exc:
            raise ValidationError(str(exc), field="cloud_config") from None
        return Request(
            pool_id=pool_id,
            template=_str(body, "template"),
            names=names,
            vcpus=_int(body, "vcpus", 1, MAX_VCPUS),
            memory=_int(body, "memory_mib", 64, MAX_MEMORY_MIB) * MiB,
            root_disk=_int(body, "root_disk_gib", 1, MAX_DISK_GIB) * GiB,
            extra_disks=extras,
            sr=_str(body, "sr"),
            network=_str(body, "network"),
            keys=await self._keys.chosen(user_id, key_ids),
            custom=custom,
            network_config=netcfg,
            keep_drive=_flag(body, "keep_config_drive"),
        )

    @staticmethod
    def _network_config(value: Any) -> str:
        if value in (None, "", "dhcp"):
            return ""
        if not isinstance(value, dict):
            raise CloudConfigError("'network_config' is 'dhcp' or {address, gateway, dns, version}")
        dns = value.get("dns", [])
        static = ci.StaticAddress(
            str(value.get("address", "")),
            str(value.get("gateway", "")),
            tuple(str(d) for d in dns) if isinstance(dns, list) else (),
        )
        version = value.get("version", 2)
        return ci.network_config(static, version=version if isinstance(version, int) else 0)

    async def _records(self, client: XapiClient, req: Request) -> tuple[str, dict[str, Any], int]:
        """The template's ref and record and its root disk size; clear errors."""
        try:
            ref = await client.call("VM.get_by_uuid", req.template)
            rec = await client.call("VM.get_record", ref)
        except XapiFailure:
            raise NotFoundError(
                f"there is no template {req.template} in pool {req.pool_id}"
            ) from None
        if not rec.get("is_a_template") or rec.get("is_a_snapshot"):
            raise ValidationError(f"{req.template} is no template", field="template")
        for what, cls in (("sr", "SR"), ("network", "network")):
            try:
                await client.call(f"{cls}.get_by_uuid", getattr(req, what))
            except XapiFailure:
                raise NotFoundError(f"there is no {what} {getattr(req, what)}") from None
        root = 0
        for vbd in rec.get("VBDs", []):
            vrec = await client.call("VBD.get_record", vbd)
            if (
                vrec.get("type") == "Disk"
                and vrec.get("userdevice") == "0"
                and vrec.get("VDI") != NULL_REF
            ):
                root = int(await client.call("VDI.get_virtual_size", vrec["VDI"]))
        if root and req.root_disk < root:
            raise ValidationError(
                f"the root disk must be at least the template's {root // GiB} GiB",
                field="root_disk_gib",
            )
        return ref, rec, root

    async def start(
        self, req: Request, *, user_id: int, username: str, admin: bool
    ) -> tuple[int, list[str]]:
        """Check against the pool and the sets, charge, and start; the operation id and warnings."""
        if req.keep_drive and not admin:
            raise PermissionDeniedError(
                "keeping the config drive after the first boot is an administrator's choice"
            )
        client = self._client_of(req.pool_id)
        template_ref, record, _root = await self._records(client, req)
        chosen = await self._set_for(req, user_id, admin)
        warnings = (
            []
            if is_cloud_ready(record)
            else [
                f"template {record.get('name_label', '')!r} is not marked CloudInit-ready "
                "(tag 'cloud-init' or other_config cloud-init=true): "
                "keys and hostname may not apply"
            ]
        )
        need = Amounts(
            cpus=req.vcpus,
            memory=req.memory,
            disk=req.root_disk + sum(req.extra_disks),
            disks=1 + len(req.extra_disks),
            vms=1,
        )
        charges: list[int] = []
        if chosen is not None:
            try:
                # One charge for the whole batch first: all or nothing.
                batch = await self._sets.reserve(
                    chosen.id,
                    user_id=user_id,
                    pool_id=req.pool_id,
                    name=req.names[0],
                    need=need.scaled(len(req.names)),
                )
                await self._sets.release(batch)
                for name in req.names:
                    charges.append(
                        await self._sets.reserve(
                            chosen.id, user_id=user_id, pool_id=req.pool_id, name=name, need=need
                        )
                    )
            except BaseException:
                for c in charges:
                    await self._sets.release(c)
                raise
        owned = asyncio.Event()

        async def work(ctx: OperationContext) -> Outcome:
            return await self._work(
                ctx, client, template_ref, req, charges, chosen, user_id, username, owned
            )

        try:
            op_id = await self._ops.start(
                KIND,
                work,
                target=f"pool-create:{req.pool_id}",
                title=f"create {', '.join(req.names)[:120]}",
                action=f"create {req.names[0]}",
                params={"names": req.names, "template": req.template, "user": username},
            )
        except BaseException:
            for c in charges:
                await self._sets.release(c)
            raise
        # Answer once the first VM exists (its grant lets the creator watch
        # the operation) or the operation has ended.
        waiter = asyncio.ensure_future(owned.wait())
        finished = asyncio.ensure_future(self._ops.wait(op_id))
        await asyncio.wait({waiter, finished}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        finished.cancel()
        return op_id, warnings

    async def _set_for(self, req: Request, user_id: int, admin: bool) -> ResourceSet | None:
        for s in await self._sets.of_user(user_id):
            if (
                s.allows("template", req.template)
                and s.allows("sr", req.sr)
                and s.allows("network", req.network)
            ):
                return s
        if admin:
            return None
        raise PermissionDeniedError(
            "none of your resource sets holds this template, SR and network together"
        )

    async def _work(
        self,
        ctx: OperationContext,
        client: XapiClient,
        template_ref: str,
        req: Request,
        charges: list[int],
        chosen: ResourceSet | None,
        user_id: int,
        username: str,
        owned: asyncio.Event,
    ) -> Outcome:
        created: list[dict[str, str]] = []
        try:
            for index, name in enumerate(req.names):
                charge = charges[index] if charges else None
                made = Made()
                try:
                    uuid = await self._one(
                        ctx, client, template_ref, req, name, made, chosen, username
                    )
                    if req.start:
                        await ctx.stage(Stage.START)
                        await client.call("VM.start", made.vm, False, False)
                        await ctx.log(f"{name} started")
                except BaseException:
                    await asyncio.shield(self._undo(client, made))
                    if charge is not None:
                        await asyncio.shield(self._sets.release(charge))
                    raise
                if charge is not None:
                    await self._sets.activate(charge, uuid)
                await self._grants.grant(
                    Subject(SubjectKind.USER, user_id),
                    ObjectRef(ObjectKind.VM, uuid),
                    ObjectRole.ADMIN,
                    actor=username,
                    known=True,
                )
                if index == 0:
                    await ctx.retarget(f"vm:{uuid}")
                    owned.set()
                created.append({"uuid": uuid, "name": name, "vm": made.vm})
        finally:
            for c in charges[len(created) + 1 :]:
                await asyncio.shield(self._sets.release(c))
        warnings: list[str] = []
        if req.start and not req.keep_drive:
            await ctx.stage(Stage.FIRST_BOOT)
            await ctx.log("waiting for the guests to report their first boot")
            said = await asyncio.gather(
                *(self._after_first_boot(ctx, client, c["vm"], c["name"]) for c in created)
            )
            warnings = [w for w in said if w]
        vms = [{"uuid": c["uuid"], "name": c["name"]} for c in created]
        return Outcome(
            report={"vms": vms, "vm_uuid": vms[0]["uuid"] if vms else ""}, warnings=warnings
        )

    async def _after_first_boot(
        self, ctx: OperationContext, client: XapiClient, vm: str, name: str
    ) -> str:
        """Remove a new VM's config drive once its guest reports; a warning if it never does."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._first_boot_timeout
        while (said := await guest_report(client, vm)) is None:
            if loop.time() >= deadline:
                return (
                    f"{name}: the guest did not report within {self._first_boot_timeout:.0f} s "
                    "(no guest agent?); its config drive stays attached"
                )
            await asyncio.sleep(self._first_boot_poll)
        await ctx.log(f"{name}: the guest reports ({said})")
        try:
            await remove_config_drive(client, vm)
        except XapiFailure as exc:
            return f"{name}: the config drive could not be removed: {exc}"
        await ctx.log(f"{name}: config drive removed")
        return ""

    async def _one(
        self,
        ctx: OperationContext,
        client: XapiClient,
        template_ref: str,
        req: Request,
        name: str,
        made: Made,
        chosen: ResourceSet | None,
        username: str,
    ) -> str:
        sr_ref = await client.call("SR.get_by_uuid", req.sr)
        net_ref = await client.call("network.get_by_uuid", req.network)
        await ctx.stage(Stage.COPY)
        if await self._disks_on(client, template_ref) == {sr_ref}:
            # Every disk already on the chosen SR: a clone (copy-on-write on
            # the SR, seconds) instead of a full copy of the disks.
            await ctx.log(f"{name}: cloning the template on its SR")
            made.vm = await client.call("VM.clone", template_ref, name, timeout=COPY_TIMEOUT)
        else:
            await ctx.log(f"{name}: copying the template to the SR")
            made.vm = await client.call("VM.copy", template_ref, name, sr_ref, timeout=COPY_TIMEOUT)
        vm = made.vm
        for vbd in await client.call("VM.get_VBDs", vm):
            vdi = await client.call("VBD.get_VDI", vbd)
            if vdi != NULL_REF:
                made.vdis.append(vdi)
        await client.call("VM.set_is_a_template", vm, False)
        uuid = str(await client.call("VM.get_uuid", vm))
        await ctx.stage(Stage.DISKS)
        for vbd in await client.call("VM.get_VBDs", vm):
            rec = await client.call("VBD.get_record", vbd)
            if (
                rec.get("type") == "Disk"
                and rec.get("userdevice") == "0"
                and rec["VDI"] != NULL_REF
            ):
                size = int(await client.call("VDI.get_virtual_size", rec["VDI"]))
                if req.root_disk > size:
                    await client.call("VDI.resize", rec["VDI"], str(req.root_disk))
                    await ctx.log(f"{name}: root disk grown to {req.root_disk // GiB} GiB")
        for n, size in enumerate(req.extra_disks, start=1):
            vdi = await self._vdi(client, sr_ref, f"{name} disk {n}", size)
            made.vdis.append(vdi)
            await self._vbd(client, vm, vdi, mode="RW")
        current = int(await client.call("VM.get_VCPUs_max", vm))
        if req.vcpus >= current:
            await client.call("VM.set_VCPUs_max", vm, str(req.vcpus))
            await client.call("VM.set_VCPUs_at_startup", vm, str(req.vcpus))
        else:
            await client.call("VM.set_VCPUs_at_startup", vm, str(req.vcpus))
            await client.call("VM.set_VCPUs_max", vm, str(req.vcpus))
        m = str(req.memory)
        await client.call("VM.set_memory_limits", vm, m, m, m, m)
        await ctx.stage(Stage.NETWORK)
        for vif in await client.call("VM.get_VIFs", vm):
            await client.call("VIF.destroy", vif)
        await client.call(
            "VIF.create",
            {
                "device": "0",
                "network": net_ref,
                "VM": vm,
                "MAC": "",
                "MTU": "1500",
                "other_config": {},
                "qos_algorithm_type": "",
                "qos_algorithm_params": {},
            },
        )
        await ctx.stage(Stage.CONFIG_DRIVE)
        hostname = ci.hostname_of(name)
        seed = drive.Seed(
            ci.meta_data(f"iid-{uuid}", hostname),
            ci.user_data(hostname, req.keys, req.custom),
            req.network_config,
        )
        vdi = await self._vdi(client, sr_ref, f"{name} cidata", drive.DRIVE_BYTES)
        made.vdis.append(vdi)
        async with drive.built(seed, self._scratch) as image:
            await import_raw_vdi(
                client, vdi, drive.stream(image), fmt="raw", size=drive.DRIVE_BYTES
            )
        await self._vbd(client, vm, vdi, mode="RO")
        await ctx.log(f"{name}: NoCloud config drive attached")
        other = {OWNER_KEY: username, DRIVE_KEY: str(await client.call("VDI.get_uuid", vdi))}
        if chosen is not None:
            other[SET_KEY] = str(chosen.id)
        for key, value in other.items():
            with contextlib.suppress(XapiFailure):
                await client.call("VM.remove_from_other_config", vm, key)
            await client.call("VM.add_to_other_config", vm, key, value)
        return uuid

    @staticmethod
    async def _disks_on(client: XapiClient, vm: str) -> set[str]:
        """The SRs of a VM's disks."""
        srs = set()
        for vbd in await client.call("VM.get_VBDs", vm):
            vdi = await client.call("VBD.get_VDI", vbd)
            if vdi != NULL_REF and await client.call("VBD.get_type", vbd) == "Disk":
                srs.add(str(await client.call("VDI.get_SR", vdi)))
        return srs

    @staticmethod
    async def _vdi(client: XapiClient, sr: str, label: str, size: int) -> str:
        return str(
            await client.call(
                "VDI.create",
                {
                    "name_label": label,
                    "name_description": "",
                    "SR": sr,
                    "virtual_size": str(size),
                    "type": "user",
                    "sharable": False,
                    "read_only": False,
                    "other_config": {},
                },
            )
        )

    @staticmethod
    async def _vbd(client: XapiClient, vm: str, vdi: str, *, mode: str) -> str:
        return str(
            await client.call(
                "VBD.create",
                {
                    "VM": vm,
                    "VDI": vdi,
                    "userdevice": "autodetect",
                    "bootable": False,
                    "mode": mode,
                    "type": "Disk",
                    "empty": False,
                    "other_config": {},
                    "qos_algorithm_type": "",
                    "qos_algorithm_params": {},
                },
            )
        )

    async def _undo(self, client: XapiClient, made: Made) -> None:
        """Destroy what one VM's creation made; each step tried whatever came before."""
        if made.vm:
            with contextlib.suppress(XapiFailure):
                if await client.call("VM.get_power_state", made.vm) != "Halted":
                    await client.call("VM.hard_shutdown", made.vm)
            with contextlib.suppress(XapiFailure):
                made.vdis.extend(
                    v
                    for v in [
                        await client.call("VBD.get_VDI", b)
                        for b in await client.call("VM.get_VBDs", made.vm)
                    ]
                    if v != NULL_REF and v not in made.vdis
                )
            try:
                await client.call("VM.destroy", made.vm)
            except XapiFailure as exc:
                log.error("could not remove the half-made VM %s: %s", made.vm, exc)
        for vdi in made.vdis:
            try:
                await client.call("VDI.destroy", vdi)
            except XapiFailure as exc:
                log.error("could not remove the half-made disk %s: %s", vdi, exc)


async def remove_config_drive(client: XapiClient, vm: str) -> None:
    """Detach (hot, from a running guest) and destroy the VM's NoCloud drive."""
    other = await client.call("VM.get_other_config", vm)
    drive_uuid = str(other.get(DRIVE_KEY, ""))
    if not drive_uuid:
        return
    try:
        vdi = await client.call("VDI.get_by_uuid", drive_uuid)
    except XapiFailure:
        vdi = None  # already removed by hand: only the mark is left
    if vdi is not None:
        for vbd in await client.call("VDI.get_VBDs", vdi):
            if await client.call("VBD.get_currently_attached", vbd):
                await client.call("VBD.unplug", vbd)
            await client.call("VBD.destroy", vbd)
        await client.call("VDI.destroy", vdi)
    await client.call("VM.remove_from_other_config", vm, DRIVE_KEY)


async def power(client: XapiClient, uuid: str, action: str) -> None:
    """start, stop (clean, then hard), reboot a VM."""
    vm = await client.call("VM.get_by_uuid", uuid)
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "start": lambda: client.call("VM.start", vm, False, False),
        "stop": lambda: client.call("VM.clean_shutdown", vm),
        "reboot": lambda: client.call("VM.clean_reboot", vm),
    }
    try:
        await calls[action]()
    except XapiFailure as exc:
        if action == "start":
            raise
        # A guest without PV tools refuses a clean shutdown: force it.
        log.info("clean %s of %s refused (%s): forcing", action, uuid, exc.xapi_code)
        await client.call("VM.hard_shutdown" if action == "stop" else "VM.hard_reboot", vm)


async def destroy(client: XapiClient, uuid: str) -> None:
    """Halt and delete a VM with its disks (snapshots first)."""
    vm = await client.call("VM.get_by_uuid", uuid)
    if await client.call("VM.get_power_state", vm) != "Halted":
        await client.call("VM.hard_shutdown", vm)
    for snap in await client.call("VM.get_snapshots", vm):
        await destroy(client, str(await client.call("VM.get_uuid", snap)))
    vdis = [await client.call("VBD.get_VDI", b) for b in await client.call("VM.get_VBDs", vm)]
    await client.call("VM.destroy", vm)
    for vdi in vdis:
        if vdi != NULL_REF:
            with contextlib.suppress(XapiFailure):
                await client.call("VDI.destroy", vdi)


class SelfVms:
    """Members' VMs after creation: power, console, deletion (which releases the quota).

    The web layer reaches the pools through here, never through XAPI itself.
    """

    def __init__(self, sets: ResourceSets, client_of: Callable[[int], XapiClient]) -> None:
        self._sets = sets
        self._client_of = client_of

    async def _pool_of(self, uuid: str, pool_id: int | None) -> int:
        if pool_id is not None:
            return pool_id
        found = await self._sets.allocation_of(uuid)
        if found is None:
            raise NotFoundError(f"VM {uuid} is no self-service VM; give its pool")
        return int(found["pool_id"])

    async def power(self, uuid: str, action: str, pool_id: int | None = None) -> None:
        if action not in ("start", "stop", "reboot"):
            raise ValidationError("the action is start, stop or reboot", field="action")
        await power(self._client_of(await self._pool_of(uuid, pool_id)), uuid, action)

    async def delete(self, uuid: str, pool_id: int | None = None) -> None:
        await destroy(self._client_of(await self._pool_of(uuid, pool_id)), uuid)
        await self._sets.release_vm(uuid)

    async def console(self, uuid: str, pool_id: int | None = None) -> dict[str, Any]:
        """The console's address (XAPI's ``console.location``, RFB over HTTP CONNECT)."""
        client = self._client_of(await self._pool_of(uuid, pool_id))
        vm = await client.call("VM.get_by_uuid", uuid)
        out = []
        for con in await client.call("VM.get_consoles", vm):
            rec = await client.call("console.get_record", con)
            out.append({"protocol": rec.get("protocol", ""), "location": rec.get("location", "")})
        return {"vm": uuid, "consoles": out}

    async def state(self, uuid: str, pool_id: int) -> str:
        try:
            client = self._client_of(pool_id)
            return str(
                await client.call("VM.get_power_state", await client.call("VM.get_by_uuid", uuid))
            )
        except (XapiFailure, NotFoundError):
            return "unknown"
