"""The choices job and restore forms offer: pools, and the SRs a disk can be written to."""

from __future__ import annotations

from aiohttp import web

from xenkeep.units import human_bytes
from xenkeep.web import keys


async def pool_choices(request: web.Request) -> list[tuple[str, str]]:
    pools = keys.pools(request.app)
    return [(str(p.id), p.name) for p in await pools.pools()]


# SR types that hold no VM disks: ISO libraries and removable devices.
_NOT_FOR_DISKS = frozenset({"iso", "udev"})


async def restore_targets(request: web.Request) -> list[tuple[str, list[tuple[str, str]]]]:
    """Per pool, the SRs a disk can be restored to: (``pool_id:sr_uuid``, label)."""
    pools = keys.pools(request.app)
    out = []
    for pool in await pools.pools():
        srs = [sr for sr in pools.summary(pool.id)["srs"] if sr["type"] not in _NOT_FOR_DISKS]
        choices = [
            (
                f"{pool.id}:{sr['uuid']}",
                f"{sr['name'] or sr['uuid']}{' on ' + sr['host'] if sr['host'] else ''} "
                f"({sr['type']}, "
                f"{human_bytes(max(0, sr['size'] - sr['used']))} free)",
            )
            for sr in sorted(srs, key=lambda sr: str(sr["name"]).lower())
        ]
        if choices:
            out.append((pool.name, choices))
    return out
