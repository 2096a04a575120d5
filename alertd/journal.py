"""Several daemons on one PostgreSQL store (docs/architecture.md, "Beyond one machine").

A standby's engine does not write: its `forward` is a `Forwarder`, which group-commits what the
handlers submit into the shared journal (202 once that transaction commits). The leader runs a
`Consumer`, which feeds the journal's rows, in id order, to its engine with a `JournalMark`: the
checkpoint commits in the same transaction as what the rows changed, so each row applies once.

Check results and notices travel; other inputs (acks and escalations by incident id, silences,
heartbeats, outbox retries) are decided with the leader's state, and a standby refuses them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from alertd import codec
from alertd.clock import Clock
from alertd.engine import Engine, Input
from alertd.errors import NotLeader, StoreError
from alertd.model import CheckResult, CheckState, Notice, NoticeKind, Reporting, StateType
from alertd.store import JournalMark
from alertd.store_pg import PgStore

log: structlog.typing.FilteringBoundLogger = structlog.get_logger(__name__)

# Rows the leader takes from the journal per submission to its engine.
CONSUME_BATCH = 5000
# The consumer looks even without a NOTIFY this often (a notification lost with a connection).
POLL_SECONDS = 1.0


def encode(item: Input, received: datetime | None = None) -> str:
    """An input as a journal row's body; StoreError for one a standby does not forward.
    `stamped`: its time is `received`, the standby's time of arrival, not the source's: the
    leader stamps it with its own on applying it (`decode`)."""
    if type(item) is CheckResult:
        return codec.dumps({
            "stamped": received is not None and item.timestamp == received,
            "t": "result", "host": item.host, "service": item.service, "state": item.state,
            "at": codec.ts(item.timestamp), "output": item.output,
            "long_output": item.long_output, "perfdata": item.perfdata,
            "state_type": item.state_type, "attempt": item.attempt,
            "max_attempts": item.max_attempts, "labels": dict(item.labels),
            "source": item.source, "reporting": item.reporting,
            "interval": None if item.interval is None else item.interval.total_seconds(),
        })  # fmt: skip
    if type(item) is Notice:
        return codec.dumps({
            "stamped": received is not None and item.at == received,
            "t": "notice", "kind": item.kind, "host": item.host, "service": item.service,
            "at": codec.ts(item.at), "author": item.author, "comment": item.comment,
            "sticky": item.sticky, "source": item.source, "ticket_id": item.ticket_id,
            "incident_id": item.incident_id, "merged_into": item.merged_into,
        })  # fmt: skip
    raise StandbyRefusal(type(item).__name__)


def decode(body: str, now: datetime) -> Input:
    """The input of a journal row, as the leader applies it `now`."""
    d: Mapping[str, Any] = codec.loads(body)
    at = now if d["stamped"] else codec.req_ts(d["at"])
    if d["t"] == "result":
        return CheckResult(
            host=d["host"], service=d["service"], state=CheckState(d["state"]),
            timestamp=at, output=d["output"], long_output=d["long_output"],
            perfdata=d["perfdata"],
            state_type=StateType(d["state_type"]) if d["state_type"] else None,
            attempt=d["attempt"], max_attempts=d["max_attempts"], labels=d["labels"],
            source=d["source"], reporting=Reporting(d["reporting"]),
            interval=None if d["interval"] is None else timedelta(seconds=d["interval"]),
        )  # fmt: skip
    return Notice(
        kind=NoticeKind(d["kind"]), host=d["host"], service=d["service"],
        at=at, author=d["author"], comment=d["comment"],
        sticky=d["sticky"], source=d["source"], ticket_id=d["ticket_id"],
        incident_id=d["incident_id"], merged_into=d["merged_into"],
    )  # fmt: skip


class StandbyRefusal(NotLeader):
    """An input a standby cannot take: it needs the leader's state."""

    def __init__(self, what: str) -> None:
        super().__init__(f"this daemon is a standby and does not take {what}: send it to the "
                         'leader (its GET /readyz says "lease": "held")')  # fmt: skip


@dataclass(slots=True)
class _Waiting:
    bodies: list[str]
    done: asyncio.Future[None]


class Forwarder:
    """A standby's engine input: group-commits submissions into the journal, as the engine
    group-commits into incidents (one transaction for everything queued meanwhile)."""

    def __init__(self, store: PgStore) -> None:
        self._store = store
        self._queue: asyncio.Queue[_Waiting | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alertd-journal-forwarder")

    async def stop(self) -> None:
        if self._task is None:
            return
        await self._queue.put(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def __call__(self, inputs: Sequence[Input], received: datetime | None) -> None:
        bodies = [encode(item, received) for item in inputs]  # refuses before storing any
        if not bodies:
            return
        if self._task is None or self._task.done():
            raise StoreError("the journal forwarder is not running (shutting down)")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Waiting(bodies, done))
        await asyncio.shield(done)

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch, stop = ([first] if first else []), first is None
            while not stop and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                else:
                    batch.append(nxt)
            if batch:
                try:
                    await self._store.append_journal([b for w in batch for b in w.bodies])
                except Exception as exc:
                    log.error("journal_append_failed", error=str(exc))
                    failure = exc if isinstance(exc, StoreError) else StoreError(str(exc))
                    for waiting in batch:
                        if not waiting.done.done():
                            waiting.done.set_exception(failure)
                else:
                    for waiting in batch:
                        if not waiting.done.done():
                            waiting.done.set_result(None)
            if stop:
                return


class Consumer:
    """The leader's task: the journal's rows after the checkpoint, in order, into the engine."""

    def __init__(self, store: PgStore, engine: Engine, clock: Clock) -> None:
        self._store = store
        self._engine = engine
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.applied = 0

    async def start(self) -> None:
        await self._store.listen_journal(self._wake)
        self.applied = await self._store.journal_applied()
        self._task = asyncio.create_task(self._run(), name="alertd-journal-consumer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # before the read: a commit after it rings again
            try:
                rows = await self._store.read_journal(self.applied, CONSUME_BATCH)
                if rows:
                    now = self._clock.now()
                    inputs = [decode(body, now) for _, body in rows]
                    upto = rows[-1][0]
                    await self._engine.submit([*inputs, JournalMark(upto)])
                    self.applied = upto
                    continue  # more may be waiting
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the consumer must outlive any failure; it retries
                log.warning("journal_consume_failed", error=str(exc))
                await asyncio.sleep(POLL_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)


class Leadership:
    """Which part this daemon plays on a shared PostgreSQL store, and the move from standby to
    leader. A leader runs its engine (timers included) and the journal consumer, and calls
    `on_leader` (the dispatcher's start). A standby forwards into the journal and tries the
    lease every third of its length; once it holds it, it loads the state as any start does
    and leads."""

    def __init__(self, store: PgStore, engine: Engine, lease: timedelta, clock: Clock) -> None:
        self._store = store
        self._engine = engine
        self._every = lease.total_seconds() / 3
        self._forwarder: Forwarder | None = None
        self._consumer = Consumer(store, engine, clock)
        self._waiting: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self.on_leader: list[Callable[[], None]] = []

    @property
    def leader(self) -> bool:
        return self._store.leader

    async def start(self) -> None:
        self._watching = asyncio.create_task(self._watch_backlog(), name="alertd-journal-backlog")
        if self._store.leader:
            try:
                await self._lead()
            except BaseException:
                self._watching.cancel()
                raise
            return
        self._forwarder = Forwarder(self._store)
        self._forwarder.start()
        self._engine.forward = self._forwarder
        log.info("standby", leader=await self._store.holder())
        self._waiting = asyncio.create_task(self._wait(), name="alertd-standby")

    async def _wait(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                if await self._store.try_lease():
                    break
            except StoreError as exc:
                log.warning("lease_try_failed", error=str(exc))
        try:
            await self._lead()
        except Exception as exc:
            # A leader that cannot start must not hold the lease: let another take it.
            log.exception("leading_failed")
            self._store.give_up(f"could not start leading: {exc}")
            raise

    async def _lead(self) -> None:
        # The state as any start loads it; results handed to the forwarder meanwhile are in
        # the journal, which the consumer applies from the checkpoint. `start` stops
        # forwarding once the writer runs and fires the timers that fell due while no one led.
        await self._engine.start()
        if self._forwarder is not None:
            await self._forwarder.stop()
            self._forwarder = None
        await self._consumer.start()
        log.info("leading", checkpoint=self._consumer.applied)
        for call in self.on_leader:
            call()

    async def _watch_backlog(self) -> None:
        """The journal's backlog for the metrics, every `POLL_SECONDS`, whichever part this
        daemon plays (a standby's accepted inputs wait there for the leader)."""
        while True:
            try:
                self._engine.journal_backlog = await self._store.journal_backlog()
            except StoreError as exc:  # the readiness probe reports the store; keep the last
                log.debug("journal_backlog_unread", error=str(exc))
            await asyncio.sleep(POLL_SECONDS)

    async def stop(self) -> None:
        """Before the engine stops: nothing is submitted to it after this."""
        if self._watching is not None:
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watching
            self._watching = None
        if self._waiting is not None:
            self._waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._waiting
            self._waiting = None
        await self._consumer.stop()
        if self._forwarder is not None:
            await self._forwarder.stop()
