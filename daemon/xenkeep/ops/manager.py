"""The operations service: start, cancel, wait for and watch any long task.

Created once by the composition root. Each domain defines its kinds
(:class:`OperationKind`, with the stages of the kind) and starts work with
:meth:`Operations.start`, naming the claims the work needs (see
:mod:`.claims`). The work is an ``async def work(ctx) -> Outcome`` that
reports through its :class:`~xenkeep.ops.context.OperationContext`; this
module turns what it returns, raises or is cancelled with into the final
status, error and report, the same way for every kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from xenkeep.errors import ConflictError, XenKeepError
from xenkeep.store import Database

from .claims import Claim, ClaimConflictError, ClaimTable, Holder
from .const import FINISHED, INTERRUPTED_MESSAGE, OpKind, OpStatus, TargetFilter
from .context import OperationCancelledError, OperationContext
from .store import OperationStore

log = logging.getLogger(__name__)

#: Live streams send at most one update per this many seconds.
WATCH_COALESCE: Final = 0.5


def describe_error(exc: BaseException) -> str:
    """A cause in words for a failure (never a bare traceback)."""
    if isinstance(exc, XenKeepError):
        return exc.message + (f" — {exc.hint}" if exc.hint else "")
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class OperationKind:
    """A kind of operation, defined where its work lives."""

    kind: OpKind
    #: How people call one: "backup", "restore", "verify", "disk format".
    noun: str
    #: The kind's stages; ``ctx.stage()`` accepts only these.
    stages: type[StrEnum] | None = None
    #: Words for a failure of this kind (storage full, pool refused...).
    describe: Callable[[BaseException], str] = describe_error


@dataclass
class Outcome:
    """What the work of an operation ends with.

    ``warnings`` name what needs a look although the work was done (a
    snapshot that could not be removed...): a successful outcome with
    warnings ends as :attr:`OpStatus.WARNING`, whatever the kind.
    """

    report: dict[str, Any] = field(default_factory=dict)
    status: OpStatus = OpStatus.SUCCESS
    error: str = ""
    warnings: list[str] = field(default_factory=list)


#: Causes named in a summary line; the report and the sub-tasks hold every one.
SUMMARY_ITEMS: Final = 3


def summary_line(items: Sequence[str]) -> str:
    """``a; b; c; and 2 more``: several causes in one line."""
    shown = "; ".join(items[:SUMMARY_ITEMS])
    more = len(items) - SUMMARY_ITEMS
    return shown + (f"; and {more} more" if more > 0 else "")


Work = Callable[[OperationContext], Awaitable[Outcome]]


class _LaterClaims:
    """What a running operation's context calls to take claims as it goes."""

    def __init__(self, ops: Operations, op_id: int) -> None:
        self._ops = ops
        self._op_id = op_id

    def take(self, claims: Sequence[Claim], action: str) -> None:
        self._ops.take_later(self._op_id, claims, action)

    def release(self, claims: Sequence[Claim]) -> None:
        self._ops.release_later(self._op_id, claims)


@dataclass
class _Running:
    task: asyncio.Task[None]
    holder: Holder
    claims: tuple[Claim, ...]
    target: str
    kind: OpKind
    #: Claims the work took once it knew what it touches (see OperationContext.claim).
    later: list[Claim] = field(default_factory=list)


class Operations:
    """Every long task of the daemon: one store, one set of calls."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = OperationStore(db)
        self._clock = clock
        self._claims = ClaimTable()
        self._running: dict[int, _Running] = {}
        self._stopping = False
        self._watchers_closed = False
        # Holders of short actions that are not operations (a storage swap).
        self._action_ids = itertools.count(-1, -1)

    # ------------------------------------------------------------- lifecycle

    async def start_up(self) -> list[int]:
        """Mark what a killed daemon left running as interrupted; their ids."""
        ids = await self.store.mark_interrupted()
        if ids:
            log.warning("operations %s were interrupted by a stop of the daemon", ids)
        return ids

    async def stop(self) -> None:
        """Cancel every running operation; they end as interrupted."""
        self._stopping = True
        tasks = [r.task for r in self._running.values()]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        self.end_watches()

    @property
    def stopping(self) -> bool:
        """True once the daemon is stopping."""
        return self._stopping

    # ----------------------------------------------------------------- start

    async def start(
        self,
        kind: OperationKind,
        work: Work,
        *,
        target: str,
        title: str,
        action: str,
        trigger: str = "manual",
        params: Mapping[str, Any] | None = None,
        claims: Sequence[Claim] = (),
        refusal: Callable[[ClaimConflictError], XenKeepError] | None = None,
    ) -> int:
        """Start ``work`` as a new operation; its id.

        ``action`` says what is being done ("run job nightly") for the
        refusal when a claim is held; ``refusal`` may word it for the kind.
        """
        if self._stopping:
            raise ConflictError(f"cannot {action}: the daemon is stopping")
        # Refused at once when the claims are held, before anything is written.
        self._take(Holder(0, kind.noun, title), claims, action, refusal, dry_run=True)
        op_id = await self.store.create(
            kind.kind.value, target=target, title=title, trigger=trigger, params=params
        )
        holder = Holder(op_id, kind.noun, title)
        try:
            # Check and take with no await between them: of requests racing
            # past the first check, one wins and the others are refused here.
            self._take(holder, claims, action, refusal)
        except ConflictError:
            await self.store.delete(op_id)
            raise
        ctx = OperationContext(
            self.store,
            op_id,
            kind=kind.kind.value,
            stages=kind.stages,
            claims=_LaterClaims(self, op_id),
        )
        task = asyncio.create_task(self._run(kind, ctx, work), name=f"{kind.noun} {op_id}")
        self._running[op_id] = _Running(task, holder, tuple(claims), target, kind.kind)
        task.add_done_callback(lambda _t: self._forget(op_id))
        return op_id

    def _take(
        self,
        holder: Holder,
        claims: Sequence[Claim],
        action: str,
        refusal: Callable[[ClaimConflictError], XenKeepError] | None,
        *,
        dry_run: bool = False,
    ) -> None:
        try:
            if dry_run:
                self._claims.check(claims, action)
            else:
                self._claims.take(holder, claims, action)
        except ClaimConflictError as exc:
            raise (refusal(exc) if refusal else exc) from None

    def _forget(self, op_id: int) -> None:
        running = self._running.pop(op_id, None)
        if running is not None:
            self._claims.release(running.holder, running.claims)
            self._claims.release(running.holder, running.later)

    def take_later(self, op_id: int, claims: Sequence[Claim], action: str) -> None:
        """Take more claims for a running operation, or ClaimConflictError.

        For what the work learns only as it goes (the VMs a job selects):
        checked and taken with no await between, like the claims at start.
        """
        running = self._running.get(op_id)
        if running is None:
            raise ConflictError(f"operation {op_id} is not running")
        self._claims.take(running.holder, claims, action)
        running.later.extend(claims)

    def release_later(self, op_id: int, claims: Sequence[Claim]) -> None:
        """Give back claims taken with :meth:`take_later` before the operation ends."""
        running = self._running.get(op_id)
        if running is None:
            return
        self._claims.release(running.holder, claims)
        for c in claims:
            if c in running.later:
                running.later.remove(c)

    async def _run(self, kind: OperationKind, ctx: OperationContext, work: Work) -> None:
        started = time.time()
        await self.store.update(ctx.id, status=OpStatus.RUNNING.value, started_at=started)
        try:
            outcome = await work(ctx)
        except (asyncio.CancelledError, OperationCancelledError):
            outcome = Outcome(status=OpStatus.CANCELLED, error="cancelled")
        except Exception as exc:
            error = kind.describe(exc)
            log.exception("%s %s failed", kind.noun, ctx.id)
            await ctx.log(f"{kind.noun} failed: {error}", level="error")
            outcome = Outcome(status=OpStatus.FAILED, error=error)
        if outcome.status is OpStatus.CANCELLED and self._stopping:
            outcome.status, outcome.error = OpStatus.INTERRUPTED, INTERRUPTED_MESSAGE
        # Shielded: a cancel arriving now must not leave the row "running".
        await asyncio.shield(self._finish(ctx, outcome, started))

    async def _finish(self, ctx: OperationContext, outcome: Outcome, started: float) -> None:
        """Write the final status, error and report, so that the operation's
        summary agrees with its parts, whatever its kind: a success with
        warnings is a warning, a failure names a cause, no sub-task is left
        running, and the bytes are those its sub-tasks moved."""
        if outcome.warnings and outcome.status is OpStatus.SUCCESS:
            outcome.status = OpStatus.WARNING
        if outcome.status is OpStatus.WARNING and not outcome.error:
            outcome.error = summary_line(outcome.warnings) or "finished with warnings"
        if outcome.status is OpStatus.FAILED and not outcome.error:
            outcome.error = await self._failure_cause(ctx.id)
        if outcome.status is not OpStatus.SUCCESS:
            await self.store.close_open_tasks(ctx.id, outcome.status, outcome.error)
        finished = time.time()
        outcome.report.setdefault("status", outcome.status.value)
        outcome.report.setdefault("error", outcome.error)
        outcome.report.setdefault("started", started)
        outcome.report.setdefault("finished", finished)
        if outcome.warnings:
            outcome.report.setdefault("warnings", list(outcome.warnings))
        fields: dict[str, Any] = {}
        moved = await self.store.leaf_bytes(ctx.id)
        if moved:
            fields["bytes"] = moved
        await self.store.update(
            ctx.id,
            status=outcome.status.value,
            finished_at=finished,
            error=outcome.error,
            report=outcome.report,
            speed=0,
            eta=None,
            **fields,
        )

    async def _failure_cause(self, op_id: int) -> str:
        """A failed operation's cause from its parts: its failed sub-tasks,
        else its last error line (a failure is never shown as "—")."""
        failed = [
            f"{t['name']}{' ' + str(t['part']) if t.get('part') else ''}: {t['error']}"
            for t in await self.store.tasks(op_id)
            if t["status"] == OpStatus.FAILED.value and t.get("error")
        ]
        if failed:
            return summary_line(failed)
        errors = [
            line["message"]
            for line in await self.store.log_lines(op_id)
            if line["level"] == "error"
        ]
        return errors[-1] if errors else "failed without saying why (see its log)"

    @contextlib.asynccontextmanager
    async def holding(
        self, claims: Iterable[Claim], *, action: str, noun: str = "change"
    ) -> AsyncIterator[None]:
        """Hold ``claims`` for a short action that is not an operation itself
        (swapping the storage), under the same rules as operations."""
        holder = Holder(next(self._action_ids), noun, action)
        claims = tuple(claims)
        self._claims.take(holder, claims, action)
        try:
            yield
        finally:
            self._claims.release(holder, claims)

    # ------------------------------------------------- cancel, wait, running

    def is_running(self, op_id: int) -> bool:
        """True while the operation runs in this daemon."""
        return op_id in self._running

    def running(self, *, kind: OpKind | None = None, target: str | None = None) -> list[int]:
        """Ids of the operations running now, optionally of one kind or target."""
        return sorted(
            op_id
            for op_id, r in self._running.items()
            if (kind is None or r.kind is kind) and (target is None or r.target == target)
        )

    async def cancel(self, op_id: int) -> None:
        """Cancel a running operation; its work undoes what it must."""
        running = self._running.get(op_id)
        if running is None:
            op = await self.store.get(op_id)
            if op["status"] in FINISHED:
                raise ConflictError(f"operation {op_id} has already finished ({op['status']})")
            raise ConflictError(f"operation {op_id} is not running in this daemon")
        await self.store.log(op_id, "cancel requested", level="warning")
        running.task.cancel()

    async def wait(self, op_id: int) -> dict[str, Any]:
        """Wait for an operation started here to finish; its row."""
        running = self._running.get(op_id)
        if running is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(running.task)
        return await self.store.get(op_id)

    # ------------------------------------------------------------ read, watch

    async def get(self, op_id: int) -> dict[str, Any]:
        """One operation's row, or NotFoundError."""
        return await self.store.get(op_id)

    async def find(
        self,
        *,
        kinds: Sequence[str] = (),
        statuses: Sequence[str] = (),
        target: str | None = None,
        only: TargetFilter | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Recent operations, newest first (``only``: on the targets it allows)."""
        return await self.store.find(
            kinds=kinds, statuses=statuses, target=target, only=only, limit=limit
        )

    async def detail(self, op_id: int, *, log_after: int = 0) -> dict[str, Any]:
        """An operation with its sub-tasks (live progress) and log lines."""
        op = await self.store.get(op_id)
        op["tasks"] = await self.store.tasks(op_id)
        op["log"] = await self.store.log_lines(op_id, log_after)
        op["cancellable"] = op_id in self._running
        return op

    async def watch(
        self, op_id: int, *, log_after: int = 0, keepalive: float = 15.0
    ) -> AsyncIterator[dict[str, Any] | None]:
        """The detail now, then again after each change (new log lines only),
        at most every WATCH_COALESCE seconds; ``None`` when nothing changed for
        ``keepalive`` seconds. Ends after the detail that shows it finished."""
        while True:
            changed = self.store.changes()
            detail = await self.detail(op_id, log_after=log_after)
            if detail["log"]:
                log_after = detail["log"][-1]["id"]
            yield detail
            if detail["status"] in FINISHED or self._watchers_closed:
                return
            # Progress moves many times a second: two updates a second are live enough.
            await asyncio.sleep(WATCH_COALESCE)
            try:
                await asyncio.wait_for(changed.wait(), keepalive)
            except TimeoutError:
                yield None

    def end_watches(self) -> None:
        """On shutdown: end every :meth:`watch` stream at once."""
        self._watchers_closed = True
        self.store.touch()
