"""Test support for permissions: a daemon with two simulated pools, users
holding one grant each, and browsers signed in as them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.web import ADMIN_PASSWORD, Browser, complete_setup, make_settings
from xapisim import RunningSimulator, start_simulator
from xenkeep.app import create_app
from xenkeep.auth.const import Role
from xenkeep.auth.grants import Subject, SubjectKind
from xenkeep.auth.permissions import ObjectKind, ObjectRef, ObjectRole
from xenkeep.pools.pool import Pool
from xenkeep.web import keys
from xenkeep.web.server import RunningServer, start_server


async def signed_in(
    server: RunningServer, username: str, password: str = ADMIN_PASSWORD
) -> Browser:
    """A browser signed in as ``username`` (through the API, with a session cookie)."""
    b = Browser(server)
    status, body = await b.api(
        "POST", "/api/v1/session", {"username": username, "password": password}
    )
    assert status == 200, body
    return b


async def user_with_grant(
    server: RunningServer,
    username: str,
    grant: tuple[ObjectRef, ObjectRole] | None = None,
    *,
    role: Role = Role.USER,
) -> int:
    """A local account holding ``grant`` (or none); its id."""
    app = server.app
    user = await keys.auth(app).create_user(username, ADMIN_PASSWORD, role)
    if grant is not None:
        await keys.grants(app).grant(
            Subject(SubjectKind.USER, user.id), grant[0], grant[1], actor="test"
        )
    return user.id


@dataclass
class PoolFacts:
    """One simulated pool as registered, with two of its VMs."""

    sim: RunningSimulator
    pool: Pool
    #: name → uuid of its plain VMs, and of its hosts.
    vms: dict[str, str]
    hosts: dict[str, str]
    vm_hosts: dict[str, str]

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(ObjectKind.POOL, self.pool.uuid)

    def vm(self, name: str) -> ObjectRef:
        return ObjectRef(ObjectKind.VM, self.vms[name])


@dataclass
class World:
    """A daemon after the wizard (super-administrator ``alice``) with pools A and B."""

    server: RunningServer
    admin: Browser
    a: PoolFacts
    b: PoolFacts
    browsers: list[Browser] = field(default_factory=list)

    async def browser(self, username: str) -> Browser:
        found = await signed_in(self.server, username)
        self.browsers.append(found)
        return found


async def _pool_facts(server: RunningServer, sim: RunningSimulator) -> PoolFacts:
    manager = keys.pools(server.app)
    pool = await manager.add(sim.url, "root", "demo")
    conn = manager.connection(pool.id)
    await conn.watcher.wait_synced()
    cache = conn.watcher.cache
    hosts = {str(h["name_label"]): str(h["uuid"]) for h in cache.all("host").values()}
    host_names = {ref: str(h["name_label"]) for ref, h in cache.all("host").items()}
    vms: dict[str, str] = {}
    vm_hosts: dict[str, str] = {}
    for record in cache.all("vm").values():
        if record["is_a_template"] or record["is_a_snapshot"] or record["is_control_domain"]:
            continue
        vms[str(record["name_label"])] = str(record["uuid"])
        vm_hosts[str(record["name_label"])] = host_names.get(str(record["resident_on"]), "")
    return PoolFacts(sim, await manager.get(pool.id), vms, hosts, vm_hosts)


@contextlib.asynccontextmanager
async def world(tmp: Path) -> AsyncIterator[World]:
    """The daemon, its super-administrator and two demo pools, A and B."""
    settings = make_settings(tmp)
    sims = [await start_simulator(tmp / name, demo=True) for name in ("pool-a", "pool-b")]
    try:
        async with start_server(create_app(settings)) as server:
            admin = Browser(server)
            try:
                await complete_setup(admin, settings)
                a = await _pool_facts(server, sims[0])
                b = await _pool_facts(server, sims[1])
                found = World(server, admin, a, b)
                try:
                    yield found
                finally:
                    for browser in found.browsers:
                        await browser.close()
            finally:
                await admin.close()
    finally:
        for sim in sims:
            await sim.close()


def names_in(value: Any) -> str:
    """Everything a JSON answer or a page says, as one text to search."""
    return value if isinstance(value, str) else repr(value)
