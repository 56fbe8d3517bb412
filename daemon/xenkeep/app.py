"""The composition root: builds every service and the web application.

Production (``xenkeepd``) and the tests use the same factory. Resources are
opened and closed in one cleanup context, in dependency order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import cast

import aiohttp_jinja2
import jinja2
from aiohttp import web

from xenkeep.appliance_backup import ApplianceBackup
from xenkeep.auth.accounts import Accounts
from xenkeep.auth.audit import AuditLog
from xenkeep.auth.enrolment import TotpEnrolment
from xenkeep.auth.external import ExternalAccounts
from xenkeep.auth.grants import Grants
from xenkeep.auth.groups import Groups
from xenkeep.auth.manager import AuthManager
from xenkeep.auth.places import JobFacts, Places
from xenkeep.auth.providers.service import ProviderService
from xenkeep.auth.providers.store import ProviderStore
from xenkeep.backup.const import SNAPSHOT_KEY
from xenkeep.backup.disks import DiskService
from xenkeep.backup.manager import BackupManager
from xenkeep.cloudinit.schema import load_schema
from xenkeep.config import Settings
from xenkeep.diagnostics import DiagnosticsService, Sources
from xenkeep.diagnostics.bundle import SupportBundle
from xenkeep.diagnostics.host import SystemdHost
from xenkeep.errors import NotFoundError, StoreError
from xenkeep.formats.cloudinit import SchemaChecker
from xenkeep.ops import Operations, Scheduler
from xenkeep.pools.access import ManagedPools
from xenkeep.pools.manager import PoolManager
from xenkeep.pools.registry import PoolRegistry
from xenkeep.pools.tree import PoolTree
from xenkeep.replication.manager import ReplicationManager
from xenkeep.secretbox import KEY_NAME, SecretBox
from xenkeep.selfservice.create import Creator, SelfVms
from xenkeep.selfservice.sets import Amounts, LiveUsage, ResourceSets
from xenkeep.selfservice.sshkeys import SshKeys
from xenkeep.store import Database, open_database
from xenkeep.system.dbus import SystemBus
from xenkeep.system.identity import IdentityManager, known_timezones
from xenkeep.system.journal import Journal
from xenkeep.system.network import NetworkService
from xenkeep.system.setup_state import SetupState
from xenkeep.system.tls import ensure_certificate
from xenkeep.units import ago, clock_duration, human_bytes, number_ranges
from xenkeep.web import keys
from xenkeep.web.appliance_backup.step import register_restore_step
from xenkeep.web.middleware import auth_middleware, error_middleware, headers_middleware
from xenkeep.web.pools.step import register_pool_step
from xenkeep.web.routes import setup_routes
from xenkeep.web.setup import register_core_steps
from xenkeep.web.sse import end_event_streams
from xenkeep.web.templating import base_context, log_time, power_badge, status_badge, when
from xenkeep.web.wizard import Wizard
from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.events import ObjectCache, Record

log = logging.getLogger(__name__)

#: The open database, on the app for tests and tools; the web layer never
#: reads it (its handlers reach services only, see tests/test_layers.py).
DATABASE = "xenkeep.database"


def _live_usage(pools: PoolManager) -> LiveUsage:
    """A VM's resources from its pool's live records (None when not cached).

    With ``snapshots``, the disks of the VM's snapshots count too, except
    XenKeep's own backup snapshots (tagged with the job), which never do.
    """

    def disks_of(cache: ObjectCache, record: Record) -> tuple[int, int]:
        size = count = 0
        for vbd_ref in record.get("VBDs", []):
            vbd = cache.get("vbd", vbd_ref)
            vdi = (
                cache.get("vdi", vbd.get("VDI", "")) if vbd and vbd.get("type") == "Disk" else None
            )
            if vdi is not None:
                size += int(vdi.get("virtual_size", 0))
                count += 1
        return size, count

    def live(pool_id: int, vm_uuid: str, snapshots: bool) -> Amounts | None:
        try:
            cache = pools.connection(pool_id).watcher.cache
        except NotFoundError:
            return None
        ref = cache.ref_of("vm", vm_uuid)
        vm = cache.get("vm", ref) if ref else None
        if vm is None:
            return None
        disk, disks = disks_of(cache, vm)
        for snap_ref in vm.get("snapshots", []) if snapshots else []:
            snap = cache.get("vm", snap_ref)
            if snap is not None and SNAPSHOT_KEY not in (snap.get("other_config") or {}):
                size, count = disks_of(cache, snap)
                disk, disks = disk + size, disks + count
        return Amounts(
            cpus=int(vm.get("VCPUs_at_startup", 0)),
            memory=int(vm.get("memory_dynamic_max", 0)),
            disk=disk,
            disks=disks,
            vms=1,
        )

    return live


def _self_service(
    app: web.Application,
    db: Database,
    pools: PoolManager,
    ops: Operations,
    grants: Grants,
    cloud_config_schema: SchemaChecker | None,
) -> None:
    """SSH keys, resource sets and self-service creation."""
    sets = ResourceSets(db, _live_usage(pools))
    app[keys.SSH_KEYS] = ssh = SshKeys(db)
    app[keys.RESOURCE_SETS] = sets

    def client_of(pool_id: int) -> XapiClient:
        return pools.connection(pool_id).client

    app[keys.CREATOR] = Creator(
        ops=ops,
        sets=sets,
        keys=ssh,
        grants=grants,
        client_of=client_of,
        first_boot_timeout=float(keys.settings(app).first_boot_seconds),
        cloud_config_schema=cloud_config_schema,
    )
    app[keys.SELF_VMS] = SelfVms(sets, client_of)


def database(app: web.Application) -> Database:
    """The open database of a running app."""
    return cast("Database", app[DATABASE])


def webui_dir() -> Path:
    """Templates and static files: inside the wheel, or the source tree."""
    packaged = Path(str(resources.files("xenkeep"))) / "webui"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "webui"


def create_app(settings: Settings) -> web.Application:
    """The daemon's web application with all its services."""
    app = web.Application(
        middlewares=[headers_middleware, error_middleware, auth_middleware],
        client_max_size=1 << 20,
    )
    app[keys.SETTINGS] = settings
    wizard = Wizard()
    register_core_steps(wizard)
    register_restore_step(wizard)
    register_pool_step(wizard)
    app[keys.WIZARD] = wizard

    ui = webui_dir()
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(ui / "templates")),
        autoescape=jinja2.select_autoescape(default=True),
        context_processors=[base_context],
        undefined=jinja2.StrictUndefined,
        # Templates are read once, at first use; no stat of the file per render.
        auto_reload=settings.dev,
    )
    env.filters["when"] = when
    env.filters["log_time"] = log_time
    env.filters["bytes"] = human_bytes
    env.filters["clock"] = clock_duration
    env.filters["ranges"] = number_ranges
    env.filters["status"] = status_badge
    env.filters["power"] = power_badge
    env.filters["ago"] = ago
    app["static_root_url"] = "/static"
    setup_routes(app, ui / "static")
    app.cleanup_ctx.append(_services)
    # aiohttp 3.8 types Signal oddly; the callback takes the app as documented.
    app.on_shutdown.append(end_event_streams)  # type: ignore[arg-type]
    return app


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings = keys.settings(app)
    await asyncio.to_thread(settings.state_dir.mkdir, parents=True, exist_ok=True, mode=0o750)
    app[keys.TLS] = await asyncio.to_thread(
        ensure_certificate, settings.tls_dir, settings.effective_hostname
    )
    db = await open_database(settings.database_path)
    app[DATABASE] = db
    audit = AuditLog(db)
    app[keys.AUDIT] = audit
    auth = AuthManager(db, audit, settings)
    app[keys.AUTH] = auth
    app[keys.IDENTITY] = IdentityManager(db, audit, settings.appliance_name)
    app[keys.NETWORK] = NetworkService(settings.privhelper_socket, audit=audit)
    # The list of zones is a walk of tzdata: done once (it is cached), off the loop.
    await asyncio.to_thread(known_timezones)
    if await auth.ensure_setup_token() is not None:
        # The token itself is shown on the console banner and kept in its
        # file only: logs travel (journal, support bundles), secrets must not.
        log.warning(
            "no administrator yet: open the web interface and enter the setup token "
            "from the console, %s or `xenkeep setup-token`",
            settings.setup_token_path,
        )
    secrets = SecretBox(settings.state_dir / KEY_NAME)
    # The key is a file: read it now, off the event loop, so that encrypting
    # and decrypting never touch the disk while a request waits. A damaged
    # key must not keep the daemon from starting: each use reports it.
    try:
        await asyncio.to_thread(secrets.load)
    except StoreError as exc:
        log.error("%s (%s)", exc.message, exc.hint)
    app[keys.SETUP_STATE] = SetupState(db)
    app[keys.ENROLMENT] = TotpEnrolment(db, secrets, auth)
    providers = ProviderService(
        ProviderStore(db, secrets), ExternalAccounts(db), auth, audit, settings.state_dir
    )
    providers.start_loading()
    app[keys.PROVIDERS] = providers
    pools = PoolManager(PoolRegistry(db), secrets, audit, allow_http=settings.dev)
    app[keys.POOLS] = pools
    await pools.start()
    identity = keys.identity(app)

    async def appliance_name() -> str:
        return (await identity.get()).name

    async def appliance_timezone() -> str:
        return (await identity.get()).timezone

    ops = Operations(db)
    app[keys.OPERATIONS] = ops
    await ops.start_up()
    scheduler = Scheduler()
    backup = BackupManager(
        db,
        ManagedPools(pools),
        appliance_name=appliance_name,
        appliance_timezone=appliance_timezone,
        secrets=secrets,
        disks=DiskService(settings.privhelper_socket),
        ops=ops,
        scheduler=scheduler,
    )
    app[keys.BACKUP] = backup
    await backup.start()
    replication = ReplicationManager(
        db,
        ManagedPools(pools),
        ops=ops,
        scheduler=scheduler,
        appliance_name=appliance_name,
        secrets=secrets,
    )
    app[keys.REPLICATION] = replication

    async def jobs() -> dict[int, JobFacts]:
        return {
            row.id: JobFacts(row.spec.name, row.spec.pool_id) for row in await backup.job_rows()
        }

    async def operation_target(op_id: int) -> str | None:
        try:
            return str((await ops.get(op_id))["target"])
        except NotFoundError:
            return None

    tree = PoolTree(pools)
    app[keys.POOL_TREE] = tree
    places = Places(tree, jobs, operation_target)
    app[keys.PLACES] = places
    grants = Grants(db, audit, places)
    app[keys.GRANTS] = grants
    _self_service(app, db, pools, ops, grants, await asyncio.to_thread(load_schema))
    app[keys.GROUPS] = Groups(db, audit)
    app[keys.ACCOUNTS] = Accounts(db, auth, audit)
    appliance_backup = ApplianceBackup(
        db=db,
        box=secrets,
        storage=backup.storage,
        pools=pools,
        ops=ops,
        scheduler=scheduler,
        audit=audit,
        appliance_name=appliance_name,
        state_dir=settings.state_dir,
    )
    app[keys.APPLIANCE_BACKUP] = appliance_backup
    await appliance_backup.start()
    journal = Journal(Path(settings.journal_dir) if settings.journal_dir else None)
    app[keys.JOURNAL] = journal
    diagnostics = DiagnosticsService(
        Sources(
            backup=backup,
            pools=pools,
            ops=ops,
            tls=app[keys.TLS],
            host=SystemdHost(SystemBus(), journal),
            schema_version=db.schema_version,
        ),
        ops,
        scheduler=scheduler,
    )
    app[keys.DIAGNOSTICS] = diagnostics
    app[keys.BUNDLE] = SupportBundle(
        settings=settings,
        db=db,
        secrets=secrets,
        diagnostics=diagnostics,
        backup=backup,
        pools=pools,
        identity=identity,
        journal=journal,
        tls=app[keys.TLS],
    )
    # Every domain has registered what it schedules: one loop runs them all.
    scheduler.start()
    try:
        yield
    finally:
        await scheduler.stop()
        await ops.stop()
        await pools.close()
        await db.close()
