"""Task records and the ``Async.*`` jobs behind them.

A task is created ``pending`` with progress 0, moves its progress while the
work runs, and ends ``success`` (its result in XAPI's XML form),
``failure`` (``error_info`` = the error list) or ``cancelled``. ``spawn``
runs an ``Async.<call>`` as an asyncio job tied to a new task; injected
``fail_call`` and ``delay_call`` faults apply inside the job, so a client
sees them on the task, as with XAPI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from xml.sax.saxutils import escape

from ..db import Database, now
from ..errors import INTERNAL_ERROR, TASK_CANCELLED, XapiError
from ..faults import Faults
from .records import master_ref

log = logging.getLogger(__name__)


def xml_value(value: Any) -> str:
    """XAPI's XML form of a task result (``<value>OpaqueRef:...</value>``)."""
    if isinstance(value, bool):
        return f"<value><boolean>{int(value)}</boolean></value>"
    if isinstance(value, int):
        return f"<value>{value}</value>"
    if isinstance(value, float):
        return f"<value><double>{value}</double></value>"
    if isinstance(value, list | tuple):
        inner = "".join(xml_value(v) for v in value)
        return f"<value><array><data>{inner}</data></array></value>"
    if isinstance(value, dict):
        members = "".join(
            f"<member><name>{escape(str(k))}</name>{xml_value(v)}</member>"
            for k, v in value.items()
        )
        return f"<value><struct>{members}</struct></value>"
    return f"<value>{escape(str(value))}</value>"


class Tasks:
    """The task records of one pool and the jobs running for them."""

    def __init__(self, db: Database, faults: Faults) -> None:
        self.db = db
        self.faults = faults
        #: Running ``Async.*`` jobs by task ref, so ``task.cancel`` can reach them.
        self.jobs: dict[str, asyncio.Task[None]] = {}

    def new_task(self, label: str, description: str = "") -> str:
        return self.db.create(
            "task",
            {
                "name_label": label,
                "name_description": description,
                "created": now(),
                "status": "pending",
                "resident_on": master_ref(self.db),
                "progress": 0.0,
                "allowed_operations": ["cancel"],
            },
        )

    def task_progress(self, task: str, progress: float) -> None:
        if self.db.exists("task", task):
            self.db.set("task", task, progress=round(min(max(progress, 0.0), 1.0), 4))

    def task_done(self, task: str, result: Any = "") -> None:
        if self.db.exists("task", task):
            res = "" if result in ("", None) else xml_value(result)
            self.db.set(
                "task",
                task,
                status="success",
                progress=1.0,
                result=res,
                finished=now(),
                allowed_operations=[],
            )

    def task_failed(self, task: str, description: list[str]) -> None:
        if self.db.exists("task", task):
            cancelled = description[:1] == [TASK_CANCELLED]
            self.db.set(
                "task",
                task,
                status="cancelled" if cancelled else "failure",
                error_info=[str(d) for d in description],
                finished=now(),
                allowed_operations=[],
            )

    def task_cancelling(self, task: str) -> bool:
        return self.db.exists("task", task) and self.db.get("task", task)["status"] == "cancelling"

    def cancel(self, task: str) -> None:
        """Mark a task ``cancelling`` and interrupt its job, if one runs here."""
        self.db.set("task", task, status="cancelling")
        job = self.jobs.get(task)
        if job is not None:
            job.cancel()

    def spawn(self, name: str, run: Callable[[], Awaitable[Any]]) -> str:
        """Start an Async call as a task and return the task ref."""
        task = self.new_task(f"Async.{name}")

        async def body() -> None:
            try:
                self.faults.raise_if_failing(name)
                delay = self.faults.call_delay(name)
                steps = 10
                for i in range(steps if delay else 0):
                    await asyncio.sleep(delay / steps)
                    self.task_progress(task, (i + 1) / (steps + 1))
                result = await run()
            except asyncio.CancelledError:
                self.task_failed(task, [TASK_CANCELLED, task])
            except XapiError as e:
                self.task_failed(task, e.description)
            except Exception as e:  # a simulator bug must still end the task
                log.exception("task %s failed", name)
                self.task_failed(task, [INTERNAL_ERROR, repr(e)])
            else:
                self.task_done(task, result)
            finally:
                self.jobs.pop(task, None)

        self.jobs[task] = asyncio.create_task(body())
        return task

    async def close(self) -> None:
        """Cancel every running job and wait for it to record its end."""
        jobs = list(self.jobs.values())
        for job in jobs:
            job.cancel()
        for job in jobs:
            with contextlib.suppress(BaseException):
                await job
