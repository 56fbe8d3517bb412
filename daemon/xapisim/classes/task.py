"""task: the calls on task objects; running ``Async.*`` calls is ``model/tasks.py``'s."""

from __future__ import annotations

from typing import Any

from ..errors import OPERATION_NOT_ALLOWED, XapiError
from ..pool import SimPool
from ..schema import coerce
from .registry import Registry

methods = Registry()


@methods.api("task.create")
async def task_create(pool: SimPool, _s: str, label: Any, description: Any) -> Any:
    return pool.tasks.new_task(str(label), str(description))


@methods.api("task.cancel")
async def task_cancel(pool: SimPool, _s: str, task: Any) -> Any:
    rec = pool.db.get("task", task)
    if rec["status"] != "pending":
        raise XapiError(OPERATION_NOT_ALLOWED, f"task is {rec['status']}")
    pool.tasks.cancel(task)
    return ""


@methods.api("task.destroy")
async def task_destroy(pool: SimPool, _s: str, task: Any) -> Any:
    pool.db.get("task", task)
    pool.db.destroy("task", task)
    return ""


@methods.api("task.set_status")
async def task_set_status(pool: SimPool, _s: str, task: Any, value: Any) -> Any:
    pool.db.get("task", task)
    pool.db.set("task", task, status=coerce("enum task_status_type", value))
    return ""


@methods.api("task.set_progress")
async def task_set_progress(pool: SimPool, _s: str, task: Any, value: Any) -> Any:
    pool.db.get("task", task)
    pool.tasks.task_progress(task, coerce("float", value))
    return ""
