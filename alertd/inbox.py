"""The inbox: check results and notices acknowledged once they are on disk, applied after.

An ingest request's inputs are appended to the inbox (its own SQLite file, `alertd.inbox_file`)
as one row, several requests per transaction (a group commit of small rows; no incident
touched), and the handler answers 202 once that transaction is fsync'd. In the same turn of
the event loop the inputs are handed to the engine, in inbox order, each batch with the id of
its row (`JournalMark`). The engine's commit that applies them moves the store's mark
(`inbox_applied`) past their rows in the same transaction, so after a crash the rows after the
mark are exactly what was acknowledged and not applied, and the next start applies them first
(`Engine.start`). docs/architecture.md, Decision 14, argues the design and its bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import structlog

from alertd.errors import StoreError
from alertd.inbox_file import InboxFile
from alertd.model import CheckResult, CheckState, Notice, NoticeKind, Reporting, StateType

log: structlog.typing.FilteringBoundLogger = structlog.get_logger(__name__)

Inbound = CheckResult | Notice

# Rows read back per step when a start applies what a crash left in the inbox.
REPLAY_PAGE = 500
# Longest the writer gives way to one append in flight (`Inbox.turn`), and to a burst
# (`Inbox.quiet`).
_TURN_SECONDS = 0.02
_QUIET_SECONDS = 0.1

_RESULT, _NOTICE = 0, 1


def encode(items: Sequence[Inbound]) -> bytes:
    """One request's inputs as one inbox row: positional JSON arrays (0.6 us per result, where
    a document per result costs 3), tagged result or notice, in arrival order."""
    return orjson.dumps([
        (_RESULT, *item[:10], dict(item[10]) or None, item[11], item[12],
         None if item[13] is None else item[13].total_seconds())
        if type(item) is CheckResult else (_NOTICE, *item)
        for item in items
    ])  # fmt: skip


def decode(body: bytes) -> list[Inbound]:
    """Inverse of `encode` (read back only after a crash, so plain code is fast enough)."""
    items: list[Inbound] = []
    for row in orjson.loads(body):
        if row[0] == _RESULT:
            (_, host, service, state, at, output, long_output, perfdata, state_type, attempt,
             max_attempts, labels, source, reporting, interval) = row  # fmt: skip
            items.append(CheckResult(
                host, service, CheckState(state), datetime.fromisoformat(at), output,
                long_output, perfdata, None if state_type is None else StateType(state_type),
                attempt, max_attempts, labels or {}, source, Reporting(reporting),
                None if interval is None else timedelta(seconds=interval),
            ))  # fmt: skip
        else:
            (_, kind, host, service, at, author, comment, sticky, source, ticket_id,
             incident_id, merged_into) = row  # fmt: skip
            items.append(Notice(
                NoticeKind(kind), host, service, datetime.fromisoformat(at), author, comment,
                sticky, source, ticket_id, incident_id, merged_into,
            ))  # fmt: skip
    return items


def inboundable(items: Sequence[Any]) -> bool:
    """Whether every input may go through the inbox: check results, and notices that do not
    name an incident by id (those are decided by the writer and answered 404/409)."""
    for item in items:
        kind = type(item)
        if kind is CheckResult:
            continue
        if kind is not Notice or item.incident_id is not None:
            return False
    return True


# Called once per append, in inbox order, in the turn its rows committed: the inputs of each
# row, and the id of the first (the ids are consecutive).
HandOver = Callable[[Sequence[Sequence[Inbound]], int], None]


@dataclass(slots=True)
class _Waiting:
    items: Sequence[Inbound]
    body: bytes
    done: asyncio.Future[None]


class Inbox:
    """Group-commits accepted inputs into the inbox table and hands them to the engine."""

    def __init__(self, file: InboxFile, mark: Callable[[], Awaitable[int]]) -> None:
        self._file = file
        self._mark = mark
        # The last row the store says is applied (`load_mark`): a start applies the rows after.
        self.applied_upto = 0
        self._waiting: list[_Waiting] = []
        self._inflight: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set while no append is in flight
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.hand_over: HandOver | None = None

    def start(self, hand_over: HandOver) -> None:
        self.hand_over = hand_over
        self._task = asyncio.create_task(self._run(), name="alertd-inbox")

    async def stop(self) -> None:
        """Commit and hand over what is waiting, then stop taking input."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def accept(self, items: Sequence[Inbound]) -> asyncio.Future[None]:
        """A future done once `items` are in the inbox, durably (StoreError if they could not
        be). A plain future, not a coroutine: one object less per request. Await it bare (no
        shield): cancelling the request cancels its own future only, which the commit it
        shares then skips (`_commit`)."""
        if self._closing or self._task is None or self._task.done():
            raise StoreError("the inbox is not taking input (shutting down)")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(items, encode(items), done))
        self._wake.set()
        return done

    async def turn(self) -> None:
        """The writer's way of giving ingest the right of way: while requests wait to be
        appended or an append is in flight, return once the append in flight has ended (at
        most `_TURN_SECONDS`), so the writer applies a chunk per append and the answers go
        out at the inbox's pace; otherwise after one turn of the loop."""
        if not self._inflight and not self._waiting:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), _TURN_SECONDS)

    async def quiet(self) -> None:
        """Return once no request waits to be appended and no append is in flight (at most
        `_QUIET_SECONDS`): the writer's way of letting a burst be answered first."""
        loop = asyncio.get_running_loop()
        until = loop.time() + _QUIET_SECONDS
        while self._inflight or self._waiting:
            left = until - loop.time()
            if left <= 0:
                return
            if self._inflight:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), left)
            await asyncio.sleep(0)  # the answers of what was appended, the next requests

    async def load_mark(self) -> int:
        """The store's mark, as committed (after a commit of unknown outcome, too)."""
        self.applied_upto = await self._mark()
        return self.applied_upto

    def applied(self, upto: int) -> None:
        """A commit of the store moved its mark to `upto`."""
        self.applied_upto = max(self.applied_upto, upto)
        self._file.applied(upto)

    async def flushed(self) -> None:
        """Return once every input accepted before the call is committed and handed over (or
        refused)."""
        pending = [w.done for w in (*self._inflight, *self._waiting)]
        if pending:
            await asyncio.wait(pending)

    async def read(self, after: int, limit: int = REPLAY_PAGE) -> list[tuple[int, list[Inbound]]]:
        rows = await self._file.read(after, limit)
        return [(row_id, decode(body)) for row_id, body in rows]

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._waiting = self._waiting, []
            if batch:
                self._inflight = batch
                self._idle.clear()
                try:
                    await self._commit(batch)
                finally:
                    self._inflight = []
                    self._idle.set()
            if self._closing and not self._waiting:
                return

    async def _commit(self, batch: list[_Waiting]) -> None:
        try:
            last = await self._file.append([w.body for w in batch])
        except Exception as exc:
            log.error("inbox_append_failed", error=str(exc), requests=len(batch))
            failure = exc if isinstance(exc, StoreError) else StoreError(str(exc))
            for waiting in batch:
                if not waiting.done.done():
                    waiting.done.set_exception(failure)
            return
        # Ids are consecutive: one writer appends, in one transaction.
        first = last - len(batch) + 1
        hand_over = self.hand_over
        assert hand_over is not None
        hand_over([waiting.items for waiting in batch], first)
        for waiting in batch:
            if not waiting.done.done():
                waiting.done.set_result(None)
