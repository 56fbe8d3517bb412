"""Pool tasks: create, watch, cancel, and read their results.

Long XAPI operations run as tasks: ``Async.VM.snapshot`` returns a task ref
at once, HTTP transfers take a ``task_id`` the pool updates as bytes move.
A task's ``status`` goes ``pending`` → ``success`` | ``failure`` |
``cancelled`` (via ``cancelling``); ``progress`` runs from 0 to 1. On
success, ``result`` holds the value as XAPI's XML-RPC text, e.g.
``<value>OpaqueRef:…</value>`` for a new object; some versions and calls
give the bare string. :func:`parse_task_result` reads both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import xmlrpc.client
from collections.abc import Awaitable, Callable
from typing import Any
from xml.parsers.expat import ExpatError

from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import (
    TaskCancelledError,
    TaskFailedError,
    XapiConnectionError,
    XapiFailure,
)

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float], Awaitable[None] | None]
PENDING = ("pending", "cancelling")


def parse_task_result(text: Any) -> Any:
    """The value of a task's ``result`` field.

    XML-RPC text is decoded (a ref, a string, a number, a struct...); bare
    text is returned as it is; an empty result is ``""``.
    """
    if not isinstance(text, str):
        return text
    stripped = text.strip()
    if not stripped.startswith("<value"):
        return stripped
    try:
        (value,), _ = xmlrpc.client.loads(
            f"<methodResponse><params><param>{stripped}</param></params></methodResponse>"
        )
    except (ExpatError, ValueError, xmlrpc.client.ResponseError):
        return stripped
    return value


async def _report(callback: ProgressCallback | None, progress: float) -> None:
    if callback is None:
        return
    outcome = callback(progress)
    if outcome is not None:
        await outcome


async def create_task(client: XapiClient, label: str, description: str = "") -> str:
    """A task the pool will update (for HTTP transfers)."""
    return str(await client.call("task.create", label, description))


async def cancel_task(client: XapiClient, task: str) -> None:
    """Ask the pool to cancel a task; a task already finished is left alone."""
    try:
        await client.call("task.cancel", task)
    except XapiFailure as exc:
        if exc.xapi_code not in ("OPERATION_NOT_ALLOWED", "HANDLE_INVALID"):
            raise


async def destroy_task(client: XapiClient, task: str) -> None:
    """Forget a finished task on the pool (best effort)."""
    with contextlib.suppress(XapiFailure, XapiConnectionError):
        await client.call("task.destroy", task)


def task_outcome(record: dict[str, Any], task: str = "") -> Any:
    """The result of a finished task record, or its failure raised."""
    status = record.get("status")
    if status == "success":
        return parse_task_result(record.get("result", ""))
    error = [str(e) for e in record.get("error_info") or []] or ["INTERNAL_ERROR", "no error"]
    label = str(record.get("name_label", task))
    if status == "cancelled" or error[0] == "TASK_CANCELLED":
        raise TaskCancelledError(error[0], error[1:], method=label)
    raise TaskFailedError(error[0], error[1:], method=label)


async def wait_task(
    client: XapiClient,
    task: str,
    *,
    on_progress: ProgressCallback | None = None,
    poll_seconds: float = 0.5,
    timeout: float | None = None,  # noqa: ASYNC109
) -> Any:
    """Wait for a task to finish and return its parsed result.

    Polls ``task.get_record`` (cheap, and independent of any event watcher);
    progress is reported whenever it moves. A failed task raises
    :class:`TaskFailedError`, a cancelled one :class:`TaskCancelledError`.
    """

    async def poll() -> Any:
        last = -1.0
        while True:
            record = await client.call("task.get_record", task)
            progress = float(record.get("progress", 0.0))
            if progress != last:
                last = progress
                await _report(on_progress, progress)
            if record.get("status") not in PENDING:
                return task_outcome(record, task)
            await asyncio.sleep(poll_seconds)

    return await asyncio.wait_for(poll(), timeout)


async def run_async(
    client: XapiClient,
    method: str,
    *args: Any,
    on_progress: ProgressCallback | None = None,
    poll_seconds: float = 0.5,
    timeout: float | None = None,  # noqa: ASYNC109
) -> Any:
    """Run ``Async.<method>`` as a task, wait, return its result.

    Cancelling the awaiting coroutine cancels the pool task too; the task
    is destroyed on the pool once finished either way.
    """
    task = str(await client.call(f"Async.{method}", *args))
    try:
        return await wait_task(
            client, task, on_progress=on_progress, poll_seconds=poll_seconds, timeout=timeout
        )
    except (asyncio.CancelledError, TimeoutError):
        with contextlib.suppress(XapiFailure, XapiConnectionError):
            await asyncio.shield(cancel_task(client, task))
        raise
    finally:
        await destroy_task(client, task)
