"""Authorization, route by route: every route declares its permission, and
every principal gets exactly what the policy allows.

The routes come from the live route table, so a route added later is
checked without anyone remembering to list it here: it fails until the
policy below says who may use it. The policy is written out independently
of the declarations, so a route declared wrong fails too.

Each route is called, over real HTTPS against a daemon with two simulated
pools, by: anonymous, a viewer of object A, an operator of A, an admin of
another object B, an admin of A, a support account, a super-administrator.
"A" is the kind of object the route is about (a pool, a VM, a backup job;
an operation stands for its job). A request that changes something is sent
without its CSRF token: an allowed one is refused for that (``csrf_failed``,
nothing changes), a forbidden one before (``forbidden``), so the matrix
never changes the world it tests.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from tests.support.people import World, user_with_grant, world
from tests.support.web import Browser
from xenkeep.auth.const import Role
from xenkeep.auth.permissions import ObjectKind, ObjectRef, ObjectRole
from xenkeep.auth.places import Via
from xenkeep.ops import OpStatus
from xenkeep.web import keys
from xenkeep.web.access import Permission, Source, permission_of

pytestmark = pytest.mark.asyncio(loop_scope="module")

PARAM = re.compile(r"\{([^}:]+)(:[^}]+)?\}")
CODE = re.compile(r'data-code="([^"]*)"')

# --- the policy, written out ----------------------------------------------------------
# P public · S signed in · L signed in, lists filtered (not support) · T support
# or super-administrator · A super-administrator · (role, kind): that role (or
# more) on object A of that kind.
P, S, L, T, A = "public", "signed in", "listing", "support", "super-admin"
VIEW, OPERATE, ADMIN = ObjectRole.VIEWER, ObjectRole.OPERATOR, ObjectRole.ADMIN
POOL, VM, JOB = "pool", "vm", "job"
Rule = str | tuple[ObjectRole, str]

POLICY: dict[tuple[str, str], Rule] = {
    ("GET", "/"): S,
    ("GET", "/login"): P,
    ("POST", "/login"): P,
    ("POST", "/logout"): S,
    ("GET", "/setup"): P,
    ("GET", "/setup/{step}"): P,
    ("POST", "/setup/{step}"): P,
    ("GET", "/account"): S,
    ("GET", "/account/password"): S,
    ("POST", "/account/password"): S,
    ("GET", "/account/totp"): S,
    ("POST", "/account/totp"): S,
    ("POST", "/account/recovery-codes"): S,
    ("POST", "/account/sessions/{session_id}/revoke"): S,
    ("POST", "/account/tokens"): S,
    ("POST", "/account/tokens/{token_id}/revoke"): S,
    ("POST", "/account/sign-out-all"): S,
    ("GET", "/api/v1/account"): S,
    ("PUT", "/api/v1/account/password"): S,
    ("POST", "/api/v1/account/totp"): S,
    ("POST", "/api/v1/account/totp/confirm"): S,
    ("POST", "/api/v1/account/recovery-codes"): S,
    ("GET", "/api/v1/account/sessions"): S,
    ("DELETE", "/api/v1/account/sessions/{session_id}"): S,
    ("POST", "/account/ssh-keys"): S,
    ("POST", "/account/ssh-keys/{key_id}/remove"): S,
    ("GET", "/self"): L,
    ("POST", "/self/vms"): L,
    ("POST", "/self/vms/{vm_uuid}/power"): (OPERATE, VM),
    ("GET", "/self/vms/{vm_uuid}/delete"): (ADMIN, VM),
    ("POST", "/self/vms/{vm_uuid}/delete"): (ADMIN, VM),
    ("GET", "/admin/resource-sets"): A,
    ("POST", "/admin/resource-sets"): A,
    ("GET", "/admin/resource-sets/{set_id}"): A,
    ("POST", "/admin/resource-sets/{set_id}"): A,
    ("GET", "/admin/resource-sets/{set_id}/delete"): A,
    ("POST", "/admin/resource-sets/{set_id}/delete"): A,
    ("GET", "/api/v1/account/ssh-keys"): S,
    ("POST", "/api/v1/account/ssh-keys"): S,
    ("DELETE", "/api/v1/account/ssh-keys/{key_id}"): S,
    ("GET", "/api/v1/resource-sets"): A,
    ("POST", "/api/v1/resource-sets"): A,
    ("GET", "/api/v1/resource-sets/{set_id}"): A,
    ("PUT", "/api/v1/resource-sets/{set_id}"): A,
    ("DELETE", "/api/v1/resource-sets/{set_id}"): A,
    ("GET", "/api/v1/self/usage"): L,
    ("GET", "/api/v1/self/vms"): L,
    ("POST", "/api/v1/self/vms"): L,
    ("POST", "/api/v1/self/vms/{vm_uuid}/start"): (OPERATE, VM),
    ("POST", "/api/v1/self/vms/{vm_uuid}/stop"): (OPERATE, VM),
    ("POST", "/api/v1/self/vms/{vm_uuid}/reboot"): (OPERATE, VM),
    ("GET", "/api/v1/self/vms/{vm_uuid}/console"): (VIEW, VM),
    ("DELETE", "/api/v1/self/vms/{vm_uuid}"): (ADMIN, VM),
    ("GET", "/admin/users"): A,
    ("POST", "/admin/users"): A,
    ("GET", "/admin/users/{user_id}"): A,
    ("POST", "/admin/users/{user_id}"): A,
    ("POST", "/admin/users/{user_id}/disable"): A,
    ("POST", "/admin/users/{user_id}/enable"): A,
    ("POST", "/admin/users/{user_id}/password"): A,
    ("GET", "/admin/users/{user_id}/delete"): A,
    ("POST", "/admin/users/{user_id}/delete"): A,
    ("POST", "/admin/users/{user_id}/groups"): A,
    ("GET", "/admin/groups"): A,
    ("POST", "/admin/groups"): A,
    ("GET", "/admin/groups/{group_id}"): A,
    ("POST", "/admin/groups/{group_id}"): A,
    ("POST", "/admin/groups/{group_id}/members"): A,
    ("POST", "/admin/groups/{group_id}/members/{user_id}/remove"): A,
    ("GET", "/admin/groups/{group_id}/delete"): A,
    ("POST", "/admin/groups/{group_id}/delete"): A,
    ("GET", "/admin/grants"): A,
    ("POST", "/admin/grants"): A,
    ("POST", "/admin/grants/{grant_id}/remove"): A,
    ("GET", "/api/v1/users"): A,
    ("POST", "/api/v1/users"): A,
    ("GET", "/api/v1/users/{user_id}"): A,
    ("PATCH", "/api/v1/users/{user_id}"): A,
    ("DELETE", "/api/v1/users/{user_id}"): A,
    ("POST", "/api/v1/users/{user_id}/password"): A,
    ("GET", "/api/v1/groups"): A,
    ("POST", "/api/v1/groups"): A,
    ("GET", "/api/v1/groups/{group_id}"): A,
    ("PATCH", "/api/v1/groups/{group_id}"): A,
    ("DELETE", "/api/v1/groups/{group_id}"): A,
    ("POST", "/api/v1/groups/{group_id}/members"): A,
    ("DELETE", "/api/v1/groups/{group_id}/members/{user_id}"): A,
    ("GET", "/api/v1/grants"): A,
    ("POST", "/api/v1/grants"): A,
    ("GET", "/api/v1/grants/objects"): A,
    ("DELETE", "/api/v1/grants/{grant_id}"): A,
    ("GET", "/admin/audit"): A,
    ("GET", "/admin/settings"): A,
    ("POST", "/admin/settings"): A,
    ("GET", "/api/v1/health"): P,
    ("GET", "/api/v1/csrf"): P,
    ("GET", "/api/v1/setup"): P,
    ("POST", "/api/v1/setup/token"): P,
    ("POST", "/api/v1/setup/admin"): P,
    ("POST", "/api/v1/session"): P,
    ("GET", "/api/v1/session"): S,
    ("DELETE", "/api/v1/session"): S,
    ("DELETE", "/api/v1/sessions"): S,
    ("GET", "/api/v1/tokens"): S,
    ("POST", "/api/v1/tokens"): S,
    ("DELETE", "/api/v1/tokens/{token_id}"): S,
    ("GET", "/api/v1/audit"): A,
    ("GET", "/api/v1/appliance"): A,
    ("PUT", "/api/v1/appliance"): A,
    # Registering pools is the appliance's; reading them, whoever may view.
    ("GET", "/pools"): A,
    ("POST", "/pools"): A,
    ("POST", "/pools/{pool_id}/remove"): A,
    ("GET", "/api/v1/pools"): L,
    ("POST", "/api/v1/pools"): A,
    ("POST", "/api/v1/pools/probe"): A,
    ("GET", "/api/v1/pools/overview"): L,
    ("GET", "/api/v1/pools/{pool_id}"): (VIEW, POOL),
    ("DELETE", "/api/v1/pools/{pool_id}"): A,
    ("GET", "/api/v1/events"): L,
    # An operation is seen and cancelled as its object (here: job A).
    ("GET", "/operations"): L,
    ("GET", "/operations/{op_id}"): (VIEW, JOB),
    ("POST", "/operations/{op_id}/cancel"): (OPERATE, JOB),
    ("GET", "/api/v1/operations"): L,
    ("GET", "/api/v1/operations/{op_id}"): (VIEW, JOB),
    ("GET", "/api/v1/operations/{op_id}/events"): (VIEW, JOB),
    ("POST", "/api/v1/operations/{op_id}/cancel"): (OPERATE, JOB),
    # The backup storage, its disks, verify and mail are the appliance's.
    ("GET", "/backup"): L,
    ("GET", "/backup/storage"): A,
    ("POST", "/backup/storage"): A,
    ("POST", "/backup/verify"): A,
    ("POST", "/backup/disks/detach"): A,
    ("POST", "/backup/disks/{device}/format"): A,
    ("POST", "/backup/disks/{device}/attach"): A,
    ("POST", "/backup/verify/schedule"): A,
    ("GET", "/backup/jobs/new"): L,
    # A job is made and changed by an administrator of its pool.
    ("POST", "/backup/jobs"): (ADMIN, POOL),
    ("GET", "/backup/jobs/{job_id}"): (VIEW, JOB),
    ("POST", "/backup/jobs/{job_id}"): (ADMIN, POOL),
    ("POST", "/backup/jobs/{job_id}/delete"): (ADMIN, JOB),
    ("POST", "/backup/jobs/{job_id}/run"): (OPERATE, JOB),
    ("POST", "/backup/jobs/{job_id}/prune"): (ADMIN, JOB),
    ("POST", "/backup/vms/{vm_uuid}/points/{point_id}/delete"): (ADMIN, VM),
    ("GET", "/backup/runs/{run_id}"): (VIEW, JOB),
    ("POST", "/backup/runs/{run_id}/cancel"): (OPERATE, JOB),
    ("GET", "/backup/mail"): A,
    ("POST", "/backup/mail"): A,
    ("GET", "/backup/restore"): L,
    # Operator of the VM and administrator of the pool restored into.
    ("POST", "/backup/restore"): (ADMIN, POOL),
    ("GET", "/api/v1/backup/storage"): A,
    ("GET", "/api/v1/backup/verify"): A,
    ("POST", "/api/v1/backup/verify"): A,
    ("GET", "/api/v1/backup/verify/schedule"): A,
    ("PUT", "/api/v1/backup/verify/schedule"): A,
    ("POST", "/api/v1/backup/storage"): A,
    ("GET", "/api/v1/backup/disks"): A,
    ("POST", "/api/v1/backup/disks/detach"): A,
    ("POST", "/api/v1/backup/disks/{device}/format"): A,
    ("POST", "/api/v1/backup/disks/{device}/attach"): A,
    ("GET", "/api/v1/backup/jobs"): L,
    ("POST", "/api/v1/backup/jobs"): (ADMIN, POOL),
    ("GET", "/api/v1/backup/jobs/{job_id}"): (VIEW, JOB),
    ("PUT", "/api/v1/backup/jobs/{job_id}"): (ADMIN, POOL),
    ("DELETE", "/api/v1/backup/jobs/{job_id}"): (ADMIN, JOB),
    ("POST", "/api/v1/backup/jobs/{job_id}/run"): (OPERATE, JOB),
    ("GET", "/api/v1/backup/runs"): L,
    ("GET", "/api/v1/backup/runs/{run_id}"): (VIEW, JOB),
    ("GET", "/api/v1/backup/runs/{run_id}/events"): (VIEW, JOB),
    ("POST", "/api/v1/backup/runs/{run_id}/cancel"): (OPERATE, JOB),
    ("GET", "/api/v1/backup/vms"): L,
    ("GET", "/api/v1/backup/vms/{vm_uuid}/points"): (VIEW, VM),
    ("DELETE", "/api/v1/backup/vms/{vm_uuid}/points/{point_id}"): (ADMIN, VM),
    ("POST", "/api/v1/backup/jobs/{job_id}/prune"): (ADMIN, JOB),
    ("POST", "/api/v1/backup/restore"): (ADMIN, POOL),
    ("GET", "/api/v1/backup/smtp"): A,
    ("PUT", "/api/v1/backup/smtp"): A,
    # Signing in through a provider: before anyone is signed in, by nature.
    ("GET", "/auth/{slug}/start"): P,
    ("GET", "/auth/{slug}/callback"): P,
    ("POST", "/auth/{slug}/callback"): P,
    ("GET", "/auth/{slug}/metadata"): P,
    ("GET", "/admin/providers"): A,
    ("POST", "/admin/providers/settings"): A,
    ("GET", "/admin/providers/new"): A,
    ("POST", "/admin/providers"): A,
    ("GET", "/admin/providers/{provider_id}"): A,
    ("POST", "/admin/providers/{provider_id}"): A,
    ("POST", "/admin/providers/{provider_id}/mappings"): A,
    ("POST", "/admin/providers/{provider_id}/test"): A,
    ("GET", "/admin/providers/{provider_id}/delete"): A,
    ("POST", "/admin/providers/{provider_id}/delete"): A,
    ("GET", "/api/v1/auth/provider-types"): A,
    ("GET", "/api/v1/auth/providers"): A,
    ("POST", "/api/v1/auth/providers"): A,
    ("PUT", "/api/v1/auth/providers/settings"): A,
    ("GET", "/api/v1/auth/providers/{provider_id}"): A,
    ("PUT", "/api/v1/auth/providers/{provider_id}"): A,
    ("DELETE", "/api/v1/auth/providers/{provider_id}"): A,
    ("POST", "/api/v1/auth/providers/{provider_id}/test"): A,
    # Backups: job pages, confirmations, health checks, test mail.
    ("GET", "/pools/{pool_id}/remove"): A,
    ("GET", "/backup/jobs/{job_id}/edit"): (ADMIN, JOB),
    ("GET", "/backup/jobs/{job_id}/delete"): (ADMIN, JOB),
    ("GET", "/backup/vms/{vm_uuid}/points/{point_id}/delete"): (ADMIN, VM),
    ("POST", "/backup/vms/{vm_uuid}/points/{point_id}/health-check"): A,
    ("GET", "/backup/vms/{vm_uuid}/delete"): (ADMIN, VM),
    ("POST", "/backup/vms/{vm_uuid}/delete"): (ADMIN, VM),
    ("POST", "/backup/mail/test"): A,
    ("GET", "/api/v1/backup/jobs/{job_id}/overview"): (VIEW, JOB),
    ("GET", "/api/v1/backup/overview"): L,
    ("POST", "/api/v1/backup/vms/{vm_uuid}/points/delete"): (ADMIN, VM),
    ("POST", "/api/v1/backup/vms/{vm_uuid}/points/{point_id}/health-check"): A,
    ("POST", "/api/v1/backup/smtp/test"): A,
    # The appliance's address, DNS and NTP: super-administrators only.
    ("GET", "/admin/network"): A,
    ("POST", "/admin/network"): A,
    ("POST", "/admin/network/ntp"): A,
    ("POST", "/admin/network/keep"): A,
    ("POST", "/admin/network/revert"): A,
    ("GET", "/api/v1/network"): A,
    ("PUT", "/api/v1/network"): A,
    ("PUT", "/api/v1/network/ntp"): A,
    ("POST", "/api/v1/network/confirm"): A,
    ("POST", "/api/v1/network/revert"): A,
    # The appliance's own backup: super-administrators only.
    ("GET", "/backup/appliance"): A,
    ("POST", "/backup/appliance/passphrase"): A,
    ("POST", "/backup/appliance/recovery-key"): A,
    ("POST", "/backup/appliance/retention"): A,
    ("POST", "/backup/appliance/run"): A,
    ("POST", "/backup/appliance/open"): A,
    ("POST", "/backup/appliance/discard"): A,
    ("POST", "/backup/appliance/restore"): A,
    ("GET", "/backup/appliance/pools/{pool_uuid}/{copy_id}"): A,
    ("GET", "/api/v1/appliance-backup"): A,
    ("PUT", "/api/v1/appliance-backup/passphrase"): A,
    ("POST", "/api/v1/appliance-backup/recovery-key"): A,
    ("PUT", "/api/v1/appliance-backup/retention"): A,
    ("POST", "/api/v1/appliance-backup/run"): A,
    ("GET", "/api/v1/appliance-backup/copies"): A,
    ("POST", "/api/v1/appliance-backup/copies/{copy_id}/open"): A,
    ("POST", "/api/v1/appliance-backup/restore"): A,
    ("GET", "/api/v1/appliance-backup/pools/{pool_uuid}/{copy_id}"): A,
    # Diagnostics, the journal and the support bundle: support staff too.
    ("GET", "/diagnostics"): T,
    ("POST", "/diagnostics/run"): T,
    ("GET", "/diagnostics/logs"): T,
    ("GET", "/api/v1/diagnostics"): T,
    ("POST", "/api/v1/diagnostics/run"): T,
    ("GET", "/api/v1/diagnostics/bundle"): T,
    ("GET", "/api/v1/logs"): T,
    # Replication: super-administrators only (a job spans two pools, so no
    # grant on one pool's objects is enough for it).
    ("GET", "/replication"): A,
    ("GET", "/replication/jobs/new"): A,
    ("POST", "/replication/jobs"): A,
    ("GET", "/replication/jobs/{job_id}"): A,
    ("GET", "/replication/jobs/{job_id}/edit"): A,
    ("POST", "/replication/jobs/{job_id}"): A,
    ("POST", "/replication/jobs/{job_id}/delete"): A,
    ("POST", "/replication/jobs/{job_id}/run"): A,
    ("GET", "/replication/replicas/{replica_id}/start"): A,
    ("POST", "/replication/replicas/{replica_id}/start"): A,
    ("GET", "/replication/replicas/{replica_id}/failback"): A,
    ("POST", "/replication/replicas/{replica_id}/failback"): A,
    ("GET", "/api/v1/replication/jobs"): A,
    ("POST", "/api/v1/replication/jobs"): A,
    ("GET", "/api/v1/replication/jobs/{job_id}"): A,
    ("PUT", "/api/v1/replication/jobs/{job_id}"): A,
    ("DELETE", "/api/v1/replication/jobs/{job_id}"): A,
    ("POST", "/api/v1/replication/jobs/{job_id}/run"): A,
    ("GET", "/api/v1/replication/runs"): A,
    ("GET", "/api/v1/replication/replicas"): A,
    ("GET", "/api/v1/replication/replicas/{replica_id}"): A,
    ("DELETE", "/api/v1/replication/replicas/{replica_id}"): A,
    ("GET", "/api/v1/replication/replicas/{replica_id}/points"): A,
    ("POST", "/api/v1/replication/replicas/{replica_id}/start"): A,
    ("POST", "/api/v1/replication/replicas/{replica_id}/failback"): A,
}

PRINCIPALS = (
    "anonymous",
    "viewer of A",
    "operator of A",
    "admin of B",
    "admin of A",
    "support",
    "super-admin",
)
_GRANTED = {"viewer of A": VIEW, "operator of A": OPERATE, "admin of A": ADMIN}


def expected(rule: Rule, principal: str) -> bool:
    """Whether the policy lets ``principal`` through."""
    if principal == "super-admin" or rule == P:
        return True
    if principal == "anonymous":
        return False
    if rule == S:
        return True
    if rule == T:
        return principal == "support"
    if rule == L:
        return principal != "support"
    if rule == A or principal in ("support", "admin of B"):
        return False
    assert isinstance(rule, tuple)
    need, _kind = rule
    return _GRANTED[principal].rank >= need.rank


# --- the route table --------------------------------------------------------------------


def app_routes(app: web.Application) -> list[tuple[str, str, Permission | None]]:
    """Every route of the app: method, path template, declared permission."""
    out = []
    for route in app.router.routes():
        if isinstance(route.resource, web.StaticResource) or route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        assert path, f"cannot tell the path of {route}"
        out.append((route.method, path, permission_of(route.handler)))
    return out


# --- the world the matrix runs in -------------------------------------------------------


@dataclass
class Matrix:
    world: World
    #: The id or uuid each URL parameter gets, and the refs of objects A and B by kind.
    params: dict[str, str]
    objects: dict[str, tuple[ObjectRef, ObjectRef]]
    #: Browsers by (kind, principal); the anonymous one is signed in as nobody.
    browsers: dict[tuple[str, str], Browser]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def matrix(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Matrix]:
    tmp: Path = tmp_path_factory.mktemp("matrix")
    async with world(tmp) as w:
        app = w.server.app
        backup = keys.backup(app)
        spec = {"selector": "pool", "schedule": "", "retention": 3}
        job_a = await backup.create_job({"name": "job-a", "pool_id": str(w.a.pool.id), **spec})
        job_b = await backup.create_job({"name": "job-b", "pool_id": str(w.b.pool.id), **spec})
        # A finished run of job A: the object of the operation routes.
        store = keys.operations(app).store
        op_id = await store.create(
            "backup", target=f"backup-job:{job_a.id}", title="job-a", trigger="manual"
        )
        await store.update(op_id, status=OpStatus.SUCCESS.value, finished_at=1.0)
        objects = {
            POOL: (w.a.ref, w.b.ref),
            VM: (w.a.vm("web-01"), w.a.vm("db-01")),
            JOB: (
                ObjectRef(ObjectKind.BACKUP_JOB, str(job_a.id)),
                ObjectRef(ObjectKind.BACKUP_JOB, str(job_b.id)),
            ),
        }
        browsers: dict[tuple[str, str], Browser] = {}
        for kind, (ref_a, ref_b) in objects.items():
            grants = {
                "viewer of A": (ref_a, VIEW),
                "operator of A": (ref_a, OPERATE),
                "admin of A": (ref_a, ADMIN),
                "admin of B": (ref_b, ADMIN),
            }
            for principal, grant in grants.items():
                name = f"{kind}-{principal.replace(' ', '-')}"
                await user_with_grant(w.server, name, grant)
                browsers[(kind, principal)] = await w.browser(name)
        await user_with_grant(w.server, "sam-support", role=Role.SUPPORT)
        support = await w.browser("sam-support")
        anonymous = Browser(w.server)
        w.browsers.append(anonymous)
        for kind in objects:
            browsers[(kind, "support")] = support
            browsers[(kind, "super-admin")] = w.admin
            browsers[(kind, "anonymous")] = anonymous
        params = {
            "pool_id": str(w.a.pool.id),
            "vm_uuid": w.a.vms["web-01"],
            "job_id": str(job_a.id),
            "replica_id": "999999",
            "op_id": str(op_id),
            "run_id": str(op_id),
            "point_id": "20260101T000000Z-000001",
            "device": "xvdq",
            "token_id": "999999",
            "session_id": "0" * 16,
            "user_id": "999999",
            "group_id": "999999",
            "grant_id": "999999",
            "key_id": "999999",
            "set_id": "999999",
            "step": "token",
            "slug": "no-such-provider",
            "provider_id": "999999",
            "pool_uuid": "00000000-0000-4000-8000-000000000000",
            "copy_id": "20260101T000000Z",
        }
        yield Matrix(w, params, objects, browsers)


def _body(permission: Permission | None, m: Matrix) -> dict[str, str]:
    """The fields the route's declared requirements read from the body: object A's."""
    body: dict[str, str] = {}
    for req in permission.requirements if permission else ():
        if req.source is not Source.BODY:
            continue
        if req.named is Via.POOL_ID:
            value = m.params["pool_id"]
            body[req.name] = f"{value}:sr" if req.pick else value
        elif req.named is ObjectKind.VM:
            body[req.name] = m.params["vm_uuid"]
        else:
            raise AssertionError(f"no sample for a body field naming {req.named}")
    return body


async def call(b: Browser, method: str, path: str, body: dict[str, str]) -> tuple[int, str, str]:
    """Status, error code (or "") and redirect target of one request, never
    carrying a CSRF token."""
    kwargs: dict[str, Any] = {}
    if method != "GET":
        kwargs = {"json": body} if path.startswith("/api/") else {"data": body}
    async with b.session.request(method, b.url(path), allow_redirects=False, **kwargs) as resp:
        code = ""
        if resp.content_type != "text/event-stream":  # a live stream is not read to its end
            # Bytes: a support bundle is a gzip, not text.
            text = (await resp.read()).decode("utf-8", "replace")
            if resp.content_type == "application/json":
                data = json.loads(text)
                error = data.get("error") if isinstance(data, dict) else None
                code = str(error.get("code", "")) if isinstance(error, dict) else ""
            elif found := CODE.search(text):
                code = found.group(1)
        return resp.status, code, resp.headers.get("Location", "")


def allowed(status: int, code: str, location: str) -> bool:
    """True when authorization let the request through (whatever came after)."""
    if status == 401 or (status == 303 and location.startswith("/login")):
        return False
    return not (status == 403 and code != "csrf_failed")


# --- the tests --------------------------------------------------------------------------


async def test_every_route_declares_a_permission_and_has_a_policy(matrix: Matrix) -> None:
    routes = app_routes(matrix.world.server.app)
    missing = [(m, p) for m, p, permission in routes if permission is None]
    assert not missing, f"routes without a declared permission: {missing}"
    unknown = [(m, p) for m, p, _ in routes if (m, p) not in POLICY]
    assert not unknown, f"routes the policy of this test does not know (add them): {unknown}"
    gone = sorted(set(POLICY) - {(m, p) for m, p, _ in routes})
    assert not gone, f"policy for routes that no longer exist: {gone}"


@pytest.mark.parametrize("principal", PRINCIPALS)
async def test_the_matrix(matrix: Matrix, principal: str) -> None:
    wrong = []
    for method, path, permission in app_routes(matrix.world.server.app):
        rule = POLICY[(method, path)]
        kind = rule[1] if isinstance(rule, tuple) else VM
        browser = matrix.browsers[(kind, principal)]
        url = PARAM.sub(lambda m: matrix.params[m.group(1)], path)
        status, code, location = await call(browser, method, url, _body(permission, matrix))
        want = expected(rule, principal)
        got = allowed(status, code, location)
        if got != want:
            wrong.append(
                f"{method} {path}: {status} {code or location} "
                f"(expected {'allowed' if want else 'refused'})"
            )
        elif not want and principal == "anonymous" and path.startswith("/api/") and status != 401:
            wrong.append(f"{method} {path}: the API answers anonymous with 401, not {status}")
        elif not want and principal != "anonymous" and (status, location) != (403, ""):
            wrong.append(f"{method} {path}: refused with {status} {location}, not 403")
    assert not wrong, f"{principal}:\n" + "\n".join(wrong)


async def test_a_refusal_is_in_the_audit_log(matrix: Matrix) -> None:
    await user_with_grant(matrix.world.server, "nosy")
    nosy = await matrix.world.browser("nosy")
    status, code, _ = await call(nosy, "GET", "/api/v1/users", {})
    assert (status, code) == (403, "forbidden")
    _, body = await matrix.world.admin.api("GET", "/api/v1/audit?limit=50")
    denied = [e for e in body["entries"] if e["event"] == "permission_denied"]
    assert any(
        e["username"] == "nosy" and e["detail"] == {"method": "GET", "path": "/api/v1/users"}
        for e in denied
    ), denied
