"""Each connected pool: reachable, latency, certificate unchanged, session
valid, XAPI version, and snapshots XenKeep left behind."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import urlsplit

from xenkeep.diagnostics.check import Check, Finding, failure, ok, warning
from xenkeep.diagnostics.sources import Sources
from xenkeep.errors import XenKeepError
from xenkeep.pools.pool import Pool
from xenkeep.xapi.client import XapiClient, probe_fingerprint
from xenkeep.xapi.errors import XapiFailure

CONNECT_TIMEOUT: Final = 5.0
#: Round trips of a small call: a warning above the first, a failure above the second.
LATENCY_WARN: Final = 0.25
LATENCY_FAIL: Final = 2.0
LATENCY_SAMPLES: Final = 3
#: Below this XAPI version the pool lacks what backups use (changed block tracking).
MIN_API: Final = (2, 9)

PoolLook = Callable[[Sources, Pool], Awaitable[Finding]]


def each_pool(look: PoolLook) -> Callable[[Sources], Awaitable[list[Finding]]]:
    """A check run once per registered pool; one pool's error is that pool's failure."""

    async def run(s: Sources) -> list[Finding]:
        pools = await s.pools.pools()
        if not pools:
            return [ok("no pool is connected")]
        found = []
        for pool in pools:
            try:
                f = await look(s, pool)
            except XenKeepError as exc:
                f = failure(exc.message, exc.hint or "See the pool on the Pools page.")
            found.append(
                Finding(
                    f.status, f.value, f.remedy, subject=f"pool:{pool.id}", subject_name=pool.name
                )
            )
        return found

    return run


def live_client(s: Sources, pool: Pool) -> XapiClient | None:
    """The pool's live client, or None when it is not connected."""
    try:
        return s.pools.connection(pool.id).client
    except XenKeepError:
        return None


async def master_of(client: XapiClient) -> str:
    """The pool master's host ref."""
    ref = next(iter(await client.call("pool.get_all")))
    return str(await client.call("pool.get_master", ref))


NOT_CONNECTED: Final = "XenKeep holds no connection to this pool (see the Pools page)."


def host_port(url: str) -> tuple[str, int]:
    """The host and port of a pool URL."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


async def reachable(s: Sources, pool: Pool) -> Finding:
    host, port = host_port(pool.url)
    started = time.monotonic()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        return failure(
            f"{host}:{port} does not accept connections: {exc or 'no answer in time'}",
            "Check that the pool master is up and that the appliance's network reaches it "
            f"(TCP port {port}); if the master changed, remove the pool and add the new one.",
        )
    writer.close()
    await writer.wait_closed()
    return ok(f"{host}:{port} accepts connections ({(time.monotonic() - started) * 1000:.0f} ms)")


async def latency(s: Sources, pool: Pool) -> Finding:
    client = live_client(s, pool)
    if client is None:
        return warning("not measured: not connected", NOT_CONNECTED)
    rounds = []
    for _ in range(LATENCY_SAMPLES):
        started = time.monotonic()
        await client.call("pool.get_all")
        rounds.append(time.monotonic() - started)
    median = statistics.median(rounds)
    words = f"{median * 1000:.0f} ms per XAPI call (median of {LATENCY_SAMPLES})"
    remedy = (
        "The pool answers slowly: a busy or overloaded master, or a slow link. Backups "
        "still work but take longer; look at the master's load and the network between."
    )
    if median > LATENCY_FAIL:
        return failure(words, remedy)
    if median > LATENCY_WARN:
        return warning(words, remedy)
    return ok(words)


async def certificate(s: Sources, pool: Pool) -> Finding:
    if not pool.url.startswith("https://"):
        return warning(
            "plain http: no certificate (development only)",
            "Connect pools over https: plain http carries the password in clear.",
        )
    presented = await probe_fingerprint(pool.url, timeout=CONNECT_TIMEOUT)
    if presented != pool.fingerprint:
        return failure(
            f"the pool now presents SHA-256 {presented}, not the confirmed {pool.fingerprint}",
            "XenKeep refuses the pool until this is explained. If its certificate was "
            "renewed on purpose, remove the pool and add it again to confirm the new "
            "fingerprint; otherwise someone may be between the appliance and the pool.",
        )
    return ok(f"SHA-256 {presented}, as confirmed")


async def session(s: Sources, pool: Pool) -> Finding:
    client = live_client(s, pool)
    if client is None:
        return warning("not checked: not connected", NOT_CONNECTED)
    try:
        # The call logs in again once if the session is gone, as every call does.
        ref = await client.session_ref()
        await client.call("session.get_uuid", ref)
    except XapiFailure as exc:
        if exc.xapi_code in ("SESSION_AUTHENTICATION_FAILED", "HOST_IS_SLAVE"):
            return failure(
                f"the pool refused XenKeep's session: {exc.message}",
                f"The password of {pool.username} may have changed on the pool: remove the "
                "pool and add it again with the current password.",
            )
        raise
    return ok(f"signed in as {pool.username}")


def _version(host: dict[str, Any]) -> tuple[str, tuple[int, int]]:
    software = host.get("software_version") or {}
    api = (int(host.get("API_version_major") or 0), int(host.get("API_version_minor") or 0))
    brand = software.get("product_brand") or "XAPI"
    product = software.get("product_version") or software.get("platform_version") or "?"
    return f"{brand} {product}, XAPI {api[0]}.{api[1]}", api


async def version(s: Sources, pool: Pool) -> Finding:
    client = live_client(s, pool)
    if client is None:
        return warning("not read: not connected", NOT_CONNECTED)
    master = await master_of(client)
    words, api = _version(await client.call("host.get_record", master))
    if api < MIN_API:
        return failure(
            f"{words}: older than XAPI {MIN_API[0]}.{MIN_API[1]}",
            "This pool lacks changed block tracking, which incremental backups need: "
            "upgrade it (XenServer 7.3 / XCP-ng 7.4 or later).",
        )
    return ok(words)


async def leftover_snapshots(s: Sources, pool: Pool) -> Finding:
    if live_client(s, pool) is None:
        return warning("not looked for: not connected", NOT_CONNECTED)
    names = await s.backup.leftover_snapshots(str(pool.id))
    if names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return warning(
            f"{len(names)} snapshot(s) of runs that died: {shown}",
            "They take space on the pool's SRs. XenKeep removes them at its next start and "
            "before the next backup of their VM; restart the appliance to remove them now.",
        )
    return ok("none")


CHECKS: Final = (
    Check("pool.reachable", "Pool reachable", each_pool(reachable)),
    Check("pool.latency", "Pool latency", each_pool(latency)),
    Check("pool.certificate", "Pool certificate unchanged", each_pool(certificate)),
    Check("pool.session", "Pool session valid", each_pool(session)),
    Check("pool.version", "Pool XAPI version", each_pool(version)),
    Check("pool.snapshots", "Snapshots left behind in the pool", each_pool(leftover_snapshots)),
)
