"""What a job's VM selection takes *now*, and what it can choose from.

Thin over the pools: one ``VM.get_all_records`` of the chosen pool, then
:mod:`.vmselect`'s rules, the same the save check and the runs apply, so
the preview cannot disagree with them. Unknown names are answered as
errors (saving the selection would be refused for them), not raised: a
preview is asked while the selection is still being typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xenkeep.pools.access import PoolAccess

from . import vmselect
from .vmselect import PickableVm, Selection


class SelectionPreview:
    """Previews of job selections over the registered pools."""

    def __init__(self, pools: PoolAccess) -> None:
        self.pools = pools

    async def _records(self, pool_id: str) -> dict[str, Any]:
        client = await self.pools.client(pool_id)
        records: dict[str, Any] = await client.call("VM.get_all_records")
        return records

    async def preview(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The selection fields of a job (``selector``, ``targets``,
        ``exclude``, ``pool_id``) → the VMs they take now (``vms``: name,
        uuid, pool), ``errors`` (field, names, message: what saving would
        refuse) and ``shared_names`` (a listed name several VMs bear → their
        uuids). ValidationError for input that is not a selection at all."""
        sel = vmselect.parse_selection(data, partial=True)
        pool_name = await self.pools.pool_name(sel.pool_id)
        records = await self._records(sel.pool_id)
        return describe(sel, records, pool_name)

    async def choices(self, pool_id: str) -> list[PickableVm]:
        """Every VM of the pool a job may take, for the picker."""
        await self.pools.pool_name(pool_id)  # NotFoundError for a pool that is not registered
        return vmselect.pickable(await self._records(pool_id))


def describe(
    sel: Selection, records: Mapping[str, Mapping[str, Any]], pool_name: str
) -> dict[str, Any]:
    """The preview of ``sel`` over a pool's ``VM.get_all_records`` (pure)."""
    chosen = vmselect.match(sel, records)
    unknown = vmselect.unknown_names(sel, records)
    errors = [
        {"field": field, "names": unknown[field], "message": message, "hint": vmselect.NAMES_HINT}
        for field, message in vmselect.name_problems(sel, records, pool_name)
    ]
    if sel.selector is not vmselect.Selector.POOL and not sel.targets:
        errors.insert(
            0,
            {
                "field": "targets",
                "names": [],
                "message": f"give at least one VM {sel.selector.value}",
                "hint": "",
            },
        )
    return {
        "pool": {"id": sel.pool_id, "name": pool_name},
        "selection": sel.as_dict(),
        "vms": [
            {"name": c.name, "uuid": c.uuid, "pool_id": sel.pool_id, "pool": pool_name}
            for c in chosen
        ],
        "errors": errors,
        "shared_names": vmselect.ambiguous_names(sel, records),
    }
