"""Typed access to what ``create_app`` stores on the application.

aiohttp 3.8 (Debian bookworm) predates ``web.AppKey``; these accessors give
handlers the same typing without string keys scattered through the code.
Handlers reach services only: the database is not here (the composition
root keeps it, see :func:`xenkeep.app.database`).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, cast

from aiohttp import web

if TYPE_CHECKING:
    from xenkeep.appliance_backup import ApplianceBackup
    from xenkeep.auth.accounts import Accounts
    from xenkeep.auth.audit import AuditLog
    from xenkeep.auth.enrolment import TotpEnrolment
    from xenkeep.auth.grants import Grants
    from xenkeep.auth.groups import Groups
    from xenkeep.auth.manager import AuthManager, Session, User
    from xenkeep.auth.permissions import Principal
    from xenkeep.auth.places import Places
    from xenkeep.auth.providers.service import ProviderService
    from xenkeep.backup.manager import BackupManager
    from xenkeep.config import Settings
    from xenkeep.diagnostics import DiagnosticsService
    from xenkeep.diagnostics.bundle import SupportBundle
    from xenkeep.ops import Operations
    from xenkeep.pools.manager import PoolManager
    from xenkeep.pools.tree import PoolTree
    from xenkeep.replication.manager import ReplicationManager
    from xenkeep.selfservice.create import Creator, SelfVms
    from xenkeep.selfservice.sets import ResourceSets
    from xenkeep.selfservice.sshkeys import SshKeys
    from xenkeep.system.identity import IdentityManager
    from xenkeep.system.journal import Journal
    from xenkeep.system.network import NetworkService
    from xenkeep.system.setup_state import SetupState
    from xenkeep.system.tls import TlsMaterial
    from xenkeep.web.wizard import Wizard

SETTINGS = "xenkeep.settings"
AUTH = "xenkeep.auth"
AUDIT = "xenkeep.audit"
IDENTITY = "xenkeep.identity"
TLS = "xenkeep.tls"
WIZARD = "xenkeep.wizard"
POOLS = "xenkeep.pools"
BACKUP = "xenkeep.backup"
REPLICATION = "xenkeep.replication"
OPERATIONS = "xenkeep.operations"
SETUP_STATE = "xenkeep.setup_state"
ENROLMENT = "xenkeep.enrolment"
GRANTS = "xenkeep.grants"
GROUPS = "xenkeep.groups"
ACCOUNTS = "xenkeep.accounts"
PLACES = "xenkeep.places"
POOL_TREE = "xenkeep.pool_tree"
SSH_KEYS = "xenkeep.ssh_keys"
RESOURCE_SETS = "xenkeep.resource_sets"
CREATOR = "xenkeep.creator"
SELF_VMS = "xenkeep.self_vms"


def grants(app: web.Application) -> Grants:
    """Grants, and the principal each request acts as."""
    return cast("Grants", app[GRANTS])


def groups(app: web.Application) -> Groups:
    """Groups of users."""
    return cast("Groups", app[GROUPS])


def accounts(app: web.Application) -> Accounts:
    """People, as a super-administrator manages them."""
    return cast("Accounts", app[ACCOUNTS])


def places(app: web.Application) -> Places:
    """Where the objects requests name sit in the permission tree."""
    return cast("Places", app[PLACES])


def pool_tree(app: web.Application) -> PoolTree:
    """The objects of the connected pools (paths and names)."""
    return cast("PoolTree", app[POOL_TREE])


PROVIDERS = "xenkeep.providers"
DIAGNOSTICS = "xenkeep.diagnostics"
JOURNAL = "xenkeep.journal"
BUNDLE = "xenkeep.bundle"
APPLIANCE_BACKUP = "xenkeep.appliance_backup"


def appliance_backup(app: web.Application) -> ApplianceBackup:
    """The appliance's own backup: copies of its configuration, and their restore."""
    return cast("ApplianceBackup", app[APPLIANCE_BACKUP])


def diagnostics(app: web.Application) -> DiagnosticsService:
    """The health checks and their latest results."""
    return cast("DiagnosticsService", app[DIAGNOSTICS])


def journal(app: web.Application) -> Journal:
    """The system journal, for the log view."""
    return cast("Journal", app[JOURNAL])


def bundle(app: web.Application) -> SupportBundle:
    """The support bundle's maker."""
    return cast("SupportBundle", app[BUNDLE])


NETWORK = "xenkeep.network"


def backup(app: web.Application) -> BackupManager:
    """The backup service."""
    return cast("BackupManager", app[BACKUP])


def replication(app: web.Application) -> ReplicationManager:
    """The replication service."""
    return cast("ReplicationManager", app[REPLICATION])


def operations(app: web.Application) -> Operations:
    """Every long task: start, cancel, wait, watch."""
    return cast("Operations", app[OPERATIONS])


def settings(app: web.Application) -> Settings:
    """The daemon's settings."""
    return cast("Settings", app[SETTINGS])


def setup_state(app: web.Application) -> SetupState:
    """Where the first-boot wizard stands."""
    return cast("SetupState", app[SETUP_STATE])


def enrolment(app: web.Application) -> TotpEnrolment:
    """Two-factor enrolment."""
    return cast("TotpEnrolment", app[ENROLMENT])


def providers(app: web.Application) -> ProviderService:
    """Sign-in providers."""
    return cast("ProviderService", app[PROVIDERS])


def auth(app: web.Application) -> AuthManager:
    """The authentication service."""
    return cast("AuthManager", app[AUTH])


def audit(app: web.Application) -> AuditLog:
    """The audit log."""
    return cast("AuditLog", app[AUDIT])


def identity(app: web.Application) -> IdentityManager:
    """The appliance identity service."""
    return cast("IdentityManager", app[IDENTITY])


def tls(app: web.Application) -> TlsMaterial:
    """The HTTPS certificate."""
    return cast("TlsMaterial", app[TLS])


def wizard(app: web.Application) -> Wizard:
    """The first-boot wizard's steps."""
    return cast("Wizard", app[WIZARD])


def pools(app: web.Application) -> PoolManager:
    """The registered pools and their live connections."""
    return cast("PoolManager", app[POOLS])


def network(app: web.Application) -> NetworkService:
    """The appliance's network and NTP settings (through the privileged helper)."""
    return cast("NetworkService", app[NETWORK])


def current_user(request: web.Request) -> User | None:
    """Who is asking (set by the auth middleware), or None."""
    return cast("User | None", request.get("xk_user"))


def require_user(request: web.Request) -> User:
    """The signed-in user; routes declared above PUBLIC always have one."""
    user = current_user(request)
    assert user is not None, "route declared SIGNED_IN or above"
    return user


def principal(request: web.Request) -> Principal:
    """What the signed-in user may do (set by the auth middleware)."""
    found = cast("Principal | None", request.get("xk_principal"))
    assert found is not None, "route declared SIGNED_IN or above"
    return found


def current_session(request: web.Request) -> Session | None:
    """The browser session, when the request came with one."""
    return cast("Session | None", request.get("xk_session"))


def client_ip(request: web.Request) -> str:
    """The peer address (the appliance is reached directly, no proxy)."""
    return request.remote or ""


def local_address(request: web.Request) -> str:
    """The appliance's own address the request came to (an empty string if unknown).

    An IPv4 address as such, though the dual-stack listener on "::" sees it
    as ``::ffff:192.0.2.10``.
    """
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        return ""
    try:
        ip = ipaddress.ip_address(str(sockname[0]).split("%")[0])
    except ValueError:
        return str(sockname[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def ssh_keys(app: web.Application) -> SshKeys:
    """The SSH keys in users' profiles."""
    return cast("SshKeys", app[SSH_KEYS])


def resource_sets(app: web.Application) -> ResourceSets:
    """Resource sets and their quota charges."""
    return cast("ResourceSets", app[RESOURCE_SETS])


def creator(app: web.Application) -> Creator:
    """Self-service VM creation."""
    return cast("Creator", app[CREATOR])


def self_vms(app: web.Application) -> SelfVms:
    """Members' VMs: power, console, deletion."""
    return cast("SelfVms", app[SELF_VMS])
