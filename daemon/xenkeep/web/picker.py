"""The VM picker and the selection preview of the job forms (backup and
replication), cut to the VMs the user may see.

The picker lists the chosen pool's VMs with what the form says of each
(picked, excluded); the preview is what the selection takes now. Both are
rendered by the server, so the form works without JavaScript
(``static/vmpicker.js`` only keeps them current while the form is edited).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from xenkeep.auth.permissions import Action, ObjectKind, ObjectRef
from xenkeep.errors import ValidationError, XenKeepError
from xenkeep.jobs.vmselect import names
from xenkeep.units import local_time
from xenkeep.web import keys
from xenkeep.web.choices import pool_choices
from xenkeep.web.templating import appliance_timezone

Preview = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]


async def visible_preview(request: web.Request, answer: dict[str, Any]) -> dict[str, Any]:
    """A selection preview with only the VMs the user may view."""
    principal = keys.principal(request)
    view = await keys.places(request.app).view()
    return {
        **answer,
        "vms": [
            vm
            for vm in answer["vms"]
            if principal.may(Action.VIEW, view.path(ObjectRef(ObjectKind.VM, str(vm["uuid"]))))
        ],
    }


def _listed(raw: object) -> set[str]:
    """The names of a names field as typed so far (nothing for what is not one)."""
    try:
        return set(names(raw, "names"))
    except ValidationError:
        return set()


def wants_choices(body: Mapping[str, Any]) -> bool:
    """The preview body's ``choices`` flag: answer the pool's VMs too."""
    value = body.get("choices", False)
    if not isinstance(value, bool):
        raise ValidationError("choices must be true or false", field="choices")
    return value


async def picker_rows(request: web.Request, pool_id: str) -> list[dict[str, Any]]:
    """The VMs of a pool the picker lists, of those the user may view, each
    with its last backup also in words (``last_backup_shown``, in the
    appliance's zone, as the pages show times)."""
    rows = await keys.backup(request.app).pickable_vms(pool_id)
    principal = keys.principal(request)
    view = await keys.places(request.app).view()
    zone = await appliance_timezone(request)
    return [
        {**row, "last_backup_shown": local_time(row["last_backup"], zone)}
        for row in rows
        if principal.may(Action.VIEW, view.path(ObjectRef(ObjectKind.VM, str(row["uuid"]))))
    ]


async def picker_context(
    request: web.Request, job: Mapping[str, Any], *, preview: Preview | None = None
) -> dict[str, Any]:
    """The picker of the form showing ``job`` (its fields as the form holds
    them) and, with ``preview``, what its selection takes now.

    Keys: ``picker_pool`` and ``picker_pool_name`` (the pool listed), ``picker``
    (its VMs, each with ``picked`` and ``excluded``), ``picker_problem`` (why
    none are listed), ``preview`` (None unless asked) and ``preview_problem``."""
    pools = dict(await pool_choices(request))
    wanted = str(job.get("pool_id") or "")
    # A new form lists the pool its pool field shows first.
    pool_id = wanted if wanted in pools else (next(iter(pools), "") if not wanted else "")
    out: dict[str, Any] = {
        "picker_pool": pool_id,
        "picker_pool_name": pools.get(pool_id, ""),
        "picker": [],
        "picker_problem": "",
        "preview": None,
        "preview_problem": "",
    }
    if not pool_id:
        out["picker_problem"] = "choose a pool to list its VMs"
        return out
    try:
        rows = await picker_rows(request, pool_id)
    except XenKeepError as exc:
        out["picker_problem"] = exc.message
        rows = []
    by_name = job.get("selector") == "name"
    targets, exclude = _listed(job.get("targets")), _listed(job.get("exclude"))
    out["picker"] = [
        {
            **row,
            "picked": by_name and bool({row["key"], row["uuid"], row["name"]} & targets),
            "excluded": bool({row["uuid"], row["name"]} & exclude),
        }
        for row in rows
    ]
    if preview is not None:
        try:
            out["preview"] = await visible_preview(
                request, await preview({**job, "pool_id": pool_id})
            )
        except XenKeepError as exc:
            out["preview_problem"] = exc.message
    return out


async def preview_answer(
    request: web.Request, body: Mapping[str, Any], preview: Preview
) -> dict[str, Any]:
    """The preview API's answer: the preview of ``body``'s selection, and with
    ``"choices": true`` the pool's VMs for a picker (``choices``)."""
    with_choices = wants_choices(body)
    answer = await visible_preview(request, await preview(body))
    if with_choices:
        answer["choices"] = await picker_rows(request, str(answer["pool"]["id"]))
    return answer
