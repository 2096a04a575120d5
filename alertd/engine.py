"""The one writer: batches check results, runs the pure lifecycle, group-commits, fires timers.

Handlers call `submit()` and await it; the writer task drains everything queued (bounded by
`max_batch` results), applies the lifecycle to the in-memory cache of active incidents, writes
the changed incidents and their events in ONE transaction, commits, and only then answers every
waiter. Timers (recovery holds, reopen windows) are due times on the incidents; the same task
wakes at the earliest one, so there is no task per incident and no second writer.

Maintenance windows, heartbeats and the stale sweep are the engine's `Watch` (alertd.watch),
called at fixed points of each commit and staging into the same `Batch` (alertd.batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import heapq
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from alertd import lifecycle, notices
from alertd.batch import Batch
from alertd.cache import IncidentCache
from alertd.clock import Clock
from alertd.codec import Folded
from alertd.errors import NotSettled, StoreError, StoreRefused
from alertd.gauges import GaugeKey, gauge_key
from alertd.heartbeats import Beat, Heartbeat, HeartbeatRemove
from alertd.host_index import HostServices
from alertd.inbox import Inbound, Inbox, inboundable
from alertd.model import (
    CheckResult,
    CheckState,
    Event,
    EventKind,
    Incident,
    IncidentKey,
    Notice,
    Status,
    Transition,
    key_text,
)
from alertd.policy import LifecyclePolicy
from alertd.silences import Silence, SilenceChange, SilenceExpire
from alertd.store import (
    JournalMark,
    NewOp,
    OutboxUpdate,
    Prepared,
    Purge,
    PurgeKind,
    Redrive,
    Store,
    TicketLink,
    WriteBatch,
)
from alertd.tickets import PlannedOp, TicketPlanner
from alertd.watch import Watch

log: structlog.typing.FilteringBoundLogger = structlog.get_logger(__name__)

OK_STATES = frozenset({CheckState.OK, CheckState.UP})

# Longest the writer sleeps with nothing queued: bounds the cost of a missed wake-up.
MAX_IDLE_SECONDS = 30.0
# Incidents per step of a pass over the whole cache outside a commit (the loop runs between).
_CHUNK = 5_000
# Incident timers fired per commit at most: the writer wakes at once for the rest.
TIMER_CHUNK = 5_000
# Folded incidents decoded per step of `unfold_all` (~30 ms of the loop).
_UNFOLD_CHUNK = 2_000
# A load this large leaves the cyclic GC's sight (a small one is not worth a full collection).
_FREEZE_FROM = 10_000
# Inputs applied between two turns of the event loop while a round is prepared.
_YIELD_EVERY = 50
# Longest a read waits for what was acknowledged before it to be applied (then 503).
_SETTLE_SECONDS = 15.0
# Inbox input alone, and little of it (under `max_batch` results accepted and not applied):
# the writer lets it gather this long after a commit before the next round, so that a round
# (its commit, fsync and thread hand-offs) carries several appends' worth, not one. The
# requests were answered already; reads, timers and anything else submitted end the wait.
_GATHER_SECONDS = 0.005
# Longest wait between attempts to apply inbox rows whose commit keeps failing (disk full).
_INBOX_RETRY_MAX = 30.0


# What the writer takes: check results and notices (acks, downtimes, ...) from handlers, in
# arrival order, the outbox dispatcher's delivery records, silences and heartbeats.
Input = (
    CheckResult | Notice | OutboxUpdate | TicketLink | Redrive
    | SilenceChange | SilenceExpire | Beat | HeartbeatRemove | JournalMark
)  # fmt: skip

# A standby's submit (PostgreSQL, several daemons): inputs go to the shared journal instead,
# with the time they were received (see `Engine.submit`).
Forward = Callable[[Sequence["Input"], "datetime | None"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Retention:
    """How long resolved incidents and delivered operations are kept, and how fast the writer
    deletes what is older ([store] retention, retention_chunk, retention_interval)."""

    keep: timedelta = timedelta(days=90)
    chunk: int = 500
    every: timedelta = timedelta(seconds=10)


# Inbox rows handed over together: each row's inputs and its id, in id order.
_Rows = list[tuple[Sequence[Inbound], int]]


@dataclass(slots=True)
class _Submission:
    results: Sequence[Input]
    done: asyncio.Future[None]
    # From the inbox: acknowledged already, so it is never failed back to anyone; its last
    # input is the `JournalMark` of its (last) row.
    inboxed: bool = False
    # Several inbox rows handed over together (their inputs and ids, in order): if they cannot
    # be committed together, each is tried on its own (`_failed`). None: one row, or not inbox.
    rows: _Rows | None = None


@dataclass(slots=True)
class _Round:
    """One group commit on its way: applied in memory (not yet published), encoded, and
    committing on the store's thread while the writer applies the next one on top of it."""

    subs: list[_Submission]
    batch: Batch
    started: float  # loop time when it was applied
    prepared: Prepared | None  # None: nothing to write (the commit is a no-op)
    commit: asyncio.Future[dict[PurgeKind, int]] | None = None


@dataclass(frozen=True, slots=True)
class BatchStats:
    results: int
    submissions: int
    incidents_written: int
    events_written: int
    commit_seconds: float


# Called after each successful commit with its stats, what it wrote, and the inputs it applied
# (metrics and incident logs live outside the engine; the hook must not raise or block).
BatchHook = Callable[[BatchStats, WriteBatch, Sequence[Sequence[Input]]], None]


class Engine:
    """Owns the cache of active incidents and the store's write connection (through `Store`)."""

    def __init__(
        self,
        store: Store,
        policy: LifecyclePolicy,
        clock: Clock,
        *,
        max_batch: int = 500,
        planner: TicketPlanner | None = None,
        on_batch: BatchHook | None = None,
        retention: Retention | None = None,
        inbox: Inbox | None = None,
        max_backlog: int = 50_000,
    ) -> None:
        self._store = store
        # Ingest is acknowledged once in the inbox and applied after (alertd.inbox); None, or
        # `max_backlog` 0: a 202 waits for its results to be applied and committed (what an
        # earlier run left in the inbox is applied at start all the same).
        self._inbox = inbox
        self._max_backlog = max_backlog
        # Inbox results accepted and not yet applied (bounded by `max_backlog`: `accept`
        # waits for room), and the room's signal.
        self.backlog = 0
        # On PostgreSQL: inputs any daemon accepted into the shared journal that the leader has
        # not applied yet, as last read (alertd.journal.Leadership); shown with `backlog`.
        self.journal_backlog = 0
        self._room = asyncio.Event()
        self._room.set()
        self._inbox_next = 0  # the first inbox row not queued yet
        self._resyncing = False
        self._inbox_stopped = False  # a row could not be applied: later ones wait for a start
        self._retention = retention or Retention()
        # When the next retention pass may run (monotonic seconds of the loop): the first one
        # waits a full interval, so a start never begins with deletes.
        self._retention_at: float | None = None
        self._retention_backlog = False
        self._on_batch = on_batch
        self.policy = policy
        self._clock = clock
        self._max_batch = max_batch
        # Unbounded in submissions: inbox input is bounded by `max_backlog`, and every other
        # submission is awaited by its request.
        self._queue: asyncio.Queue[_Submission | None] = asyncio.Queue()
        # Live incidents; those loaded at start stay folded until the writer first reads them
        # (alertd.cache), and each one decoded gets its timer checked (`_unfolded`).
        self._cache = IncidentCache(self._unfolded)
        # The round committing right now, as the next one sees it while it is applied: its
        # staged incidents (None: gone) over the cache. Empty outside `_prepare`.
        self._overlay: dict[IncidentKey, Incident | None] = {}
        self._purge_inflight = False
        self._services_by_host = HostServices()
        # The cached incidents that are suppressed: what a closing window may have to release.
        self._held: set[IncidentKey] = set()
        # Unresolved cached incidents by what the gauges count (gauges.gauge_key).
        self._gauges: dict[GaugeKey, int] = {}
        # (due, incident id, key): ids are unique per live timer, so keys are never compared.
        self._timers: list[tuple[datetime, int, IncidentKey]] = []
        self._next_id = 1
        self._task: asyncio.Task[None] | None = None
        self._rescans: set[asyncio.Task[None]] = set()
        self._closing = False
        # Something other than inbox input is queued (a read's settle, a timer, the stop):
        # no gathering until the queue was drained. `_hurry`: set to end a gathering now.
        self._urgent = False
        self._hurry: asyncio.Future[None] | None = None
        self.last_batch: BatchStats | None = None
        # Why the last commit failed, until one succeeds: the writer reports the store's health
        # (readiness reads this), so no probe ever has to touch the write connection.
        self.commit_error: str | None = None
        self._planner = planner
        # Set after a commit that queued ticket operations: the dispatcher's doorbell.
        self.outbox_ready = asyncio.Event()
        # Silences, heartbeats and the stale sweep: timers too, served by the same loop.
        self._watch = Watch(
            store, self._cache, get=self._get, stage=self._stage, apply=self._apply,
            host_problem=self._host_problem, host_keys=self._host_keys, held=self._held,
        )  # fmt: skip
        # The open windows, as the hot path checks them: one dict lookup, as before the split.
        self._active = self._watch.active
        # Set while this daemon is a standby (alertd.journal): `submit` hands inputs to it.
        self.forward: Forward | None = None

    # -- lifecycle of the engine itself ----------------------------------------------------------

    def reconfigure(self, policy: LifecyclePolicy) -> None:
        """A reloaded lifecycle policy. The writer reads `policy` once per input between awaits,
        so a batch never mixes two."""
        self.policy = policy
        # Deadlines follow `stale_after`: every incident gets its new one, a chunk at a time
        # between commits (a million incidents must not stall the loop).
        if len(self._cache) <= _CHUNK:
            self._watch.stale_rules_changed(self._cache.values(), policy)  # at once: small
        elif self._task is not None:
            rescan = asyncio.create_task(self._rescan_stale(policy), name="alertd-stale-rescan")
            self._rescans.add(rescan)
            rescan.add_done_callback(self._rescans.discard)

    async def _rescan_stale(self, policy: LifecyclePolicy) -> None:
        try:
            keys = list(self._cache)
            peek = self._cache.peek  # decoded for the look only: folded ones stay folded
            for start in range(0, len(keys), _CHUNK):
                chunk = [peek(key) for key in keys[start : start + _CHUNK]]
                self._watch.stale_rules_changed([i for i in chunk if i is not None], policy)
                await asyncio.sleep(0)
            if self.running and not self._closing:
                await self.run_timers()  # a deadline may have come earlier than the next wake
        except StoreError:
            pass  # stopping; or the commit failed and the writer says why

    async def start(self) -> None:
        now = self._clock.now()
        self._next_id = await self._store.max_incident_id() + 1
        self._watch.begin(now)  # stale deadlines count from now: set before any is queued
        await self._load(now, freeze=True)
        await self._watch.load(now)
        log.info("engine_started", active_incidents=len(self._cache), next_id=self._next_id,
                 silences=self._watch.silences, heartbeats=self._watch.heartbeats)  # fmt: skip
        self._task = asyncio.create_task(self._run(), name="alertd-writer")
        # A standby that takes the lease starts here (alertd.journal): from now on this engine
        # writes, so its own timers below are committed, not forwarded into the journal (a
        # forwarded `run_timers` fires nothing, and the loop below would never end).
        self.forward = None
        if self._inbox is not None:
            # What was acknowledged before a crash and not applied: first, in its order.
            await self._replay_inbox()
        # Holds that fell due while the daemon was down fire now, before any new input (the
        # listener answers "starting" until then), a chunk per commit.
        await self.run_timers()
        while self._timers_due(self._clock.now()):
            await self.run_timers()
        if self._inbox is not None:
            self._inbox.start(self._hand_over)

    async def _replay_inbox(self) -> None:
        """Apply the inbox rows a crash left (acknowledged, not applied), in id order, a page
        per commit, each with its mark so its rows go with it."""
        assert self._inbox is not None
        after = await self._inbox.load_mark()
        rows = inputs = 0
        while page := await self._inbox.read(after):
            items: list[Input] = []
            for row_id, row in page:  # rounds of about `max_batch`, as when they came in
                items.extend(row)
                rows, inputs = rows + 1, inputs + len(row)
                if len(items) >= self._max_batch or row_id == page[-1][0]:
                    await self.submit([*items, JournalMark(row_id)])
                    items = []
            after = page[-1][0]
        self._inbox_next = after + 1
        if rows:
            log.warning("inbox_replayed", rows=rows, inputs=inputs)

    async def stop(self) -> None:
        """Commit everything already submitted, then end the writer task."""
        if self._task is None:
            return
        if self._inbox is not None:
            await self._inbox.stop()  # what it acknowledged is queued before the end
        self._closing = True
        for rescan in list(self._rescans):
            rescan.cancel()
        await self._queue.put(None)
        self._ring()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def active_incidents(self) -> int:
        return len(self._cache)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def gauge_counts(self) -> Mapping[GaugeKey, int]:
        """Unresolved cached incidents by `gauges.gauge_key`, kept as the cache changes."""
        return self._gauges

    def incidents(self) -> Iterable[Incident]:
        """The cached incidents (active ones, and resolved ones that may still reopen), read-only;
        iterate without awaiting in between. Decodes those still folded: a caller that reads
        them all awaits `unfold_all` first, so that the loop runs meanwhile."""
        return self._cache.values()

    async def unfold_all(self) -> None:
        """Decode every incident still folded since the start, a chunk at a time with the loop
        running between (a million take seconds). Once done, returns at once."""
        if not self._cache.folded():
            return
        keys, get = list(self._cache), self._cache.get
        for start in range(0, len(keys), _UNFOLD_CHUNK):
            for key in keys[start : start + _UNFOLD_CHUNK]:
                get(key)
            await asyncio.sleep(0)

    # -- API for handlers ------------------------------------------------------------------------

    async def accept(self, inputs: Sequence[Input], *, received: datetime | None = None) -> None:
        """Ingest: return once `inputs` are durable. With an inbox, that is before they are
        applied (they are, in order, once; `settled` waits for it); without, as `submit`."""
        inbox = self._inbox
        if (
            inbox is None or not self._max_backlog or self.forward is not None
            or not inputs or not inboundable(inputs)
        ):  # fmt: skip
            await self.submit(inputs, received=received)
            return
        if self._closing or not self.running:
            raise StoreError("engine is not running (shutting down)")
        while self.backlog >= self._max_backlog:  # a storm outran the writer: wait for room
            self._room.clear()
            await self._room.wait()
        count = len(inputs)
        self._grow(count)
        try:
            await inbox.accept(inputs)  # type: ignore[arg-type]  # checked by inboundable
        except StoreError:
            self._shrink(count)  # not appended (a request cancelled meanwhile still is)
            raise

    async def settled(self) -> None:
        """Return once every input acknowledged before the call is applied and committed:
        reads that follow an ingest see it (a no-op while nothing waits in the inbox).
        StoreError if that takes longer than `_SETTLE_SECONDS` (the store fails or lags)."""
        if self._inbox is None or not self.backlog:
            return
        try:
            await asyncio.wait_for(self._settle_inbox(), _SETTLE_SECONDS)
        except TimeoutError:
            raise NotSettled(self.backlog, self.commit_error or "slow") from None

    async def _settle_inbox(self) -> None:
        assert self._inbox is not None
        await self._inbox.flushed()
        await self.submit(())  # queued after everything handed over so far

    async def _give_way(self) -> None:
        """Between chunks of a round: ingest first. While the backlog is small (a burst), the
        writer waits until the requests coming in are answered (answering is cheap, and the
        burst ends sooner); past a quarter of `max_backlog` (ingest outruns it for long) it
        applies a chunk per inbox append; without an inbox, one turn of the loop."""
        inbox = self._inbox
        if inbox is None or not self._max_backlog:
            await asyncio.sleep(0)
        elif self.backlog * 4 < self._max_backlog:
            await inbox.quiet()
        else:
            await inbox.turn()

    def _grow(self, count: int) -> None:
        self.backlog += count
        if self.backlog >= self._max_backlog:
            self._room.clear()
        if self.backlog >= self._max_batch and self._hurry is not None:
            _wake(self._hurry)  # enough for a full round: no reason to wait

    def _ring(self) -> None:
        """Input that must not wait for inbox input to gather is queued."""
        self._urgent = True
        if self._hurry is not None:
            _wake(self._hurry)

    def _gathers(self) -> bool:
        """Whether the writer may let inbox input gather before its next round."""
        return not self._urgent and not self._closing and self.backlog < self._max_batch

    async def _gather(self, commit: asyncio.Future[dict[PurgeKind, int]] | None) -> None:
        """Wait until `commit` is done (None: `_GATHER_SECONDS` have passed), or input
        arrives that must not wait (`_ring`), or a full round's worth is accepted."""
        loop = asyncio.get_running_loop()
        hurry = self._hurry = loop.create_future()
        if commit is None:
            timer = loop.call_later(_GATHER_SECONDS, _wake, hurry)
        else:
            commit.add_done_callback(lambda _: _wake(hurry))
        try:
            await hurry
        finally:
            self._hurry = None
            if commit is None:
                timer.cancel()

    def _shrink(self, count: int) -> None:
        self.backlog -= count
        if self.backlog < self._max_backlog:
            self._room.set()

    def _hand_over(self, rows: Sequence[Sequence[Inbound]], first: int) -> None:
        """The rows of one inbox append (ids `first`, `first` + 1, ...), as they commit: queued
        for the writer in id order, as few submissions as `max_batch` allows (one request per
        row: a submission, its future and its mark per request cost the loop more than
        applying a single result does)."""
        group: _Rows = []
        size = 0
        for offset, items in enumerate(rows):
            row_id = first + offset
            if self._resyncing or self._inbox_stopped or row_id < self._inbox_next:
                self._shrink(len(items))  # read back from the inbox (or at the next start)
                continue
            self._inbox_next = row_id + 1
            if group and size + len(items) > self._max_batch:
                self._queue_rows(group, size)
                group, size = [], 0
            group.append((items, row_id))
            size += len(items)
        if group:
            self._queue_rows(group, size)

    def _queue_rows(self, rows: _Rows, count: int) -> None:
        """Consecutive inbox rows as one submission, ending with the mark of the last."""
        if len(rows) == 1:
            items, row_id = rows[0]
            self._queue_inboxed([*items, JournalMark(row_id)], count)
            return
        inputs: list[Input] = []
        for items, _ in rows:
            inputs.extend(items)
        inputs.append(JournalMark(rows[-1][1]))
        self._queue_inboxed(inputs, count, rows)

    def _queue_inboxed(self, inputs: list[Input], count: int, rows: _Rows | None = None) -> None:
        self._queue.put_nowait(self._inboxed(inputs, count, rows))

    def _inboxed(self, inputs: list[Input], count: int, rows: _Rows | None) -> _Submission:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(functools.partial(self._inboxed_done, count))
        return _Submission(inputs, done, inboxed=True, rows=rows)

    def _inboxed_done(self, count: int, done: asyncio.Future[None]) -> None:
        if not done.cancelled():
            done.exception()  # retrieved: nobody awaits an inboxed submission
        self._shrink(count)

    async def submit(self, results: Sequence[Input], *, received: datetime | None = None) -> None:
        """Return once `results` are committed to disk; raise StoreError if they could not be.

        `received`: the time handlers stamped on inputs that came without one of their own.
        Only a standby uses it: the leader applies such inputs at its own time of arrival, so
        that results received by different daemons are ordered as the one writer sees them."""
        if self.forward is not None:
            await self.forward(results, received)
            return
        if self._closing or not self.running:
            raise StoreError("engine is not running (shutting down)")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Submission(results, done))
        self._ring()
        # Shield: a client that hangs up must not cancel a commit other requests share.
        await asyncio.shield(done)

    async def run_timers(self) -> None:
        """Fire every timer due now and commit; used at start and by tests driving the clock."""
        await self.submit(())

    def cached(self, key: IncidentKey) -> Incident | None:
        return self._cache.get(key)

    @property
    def folded_incidents(self) -> int:
        """Cached incidents not decoded since the start loaded them (alertd.cache)."""
        return self._cache.folded()

    def new_silence_id(self) -> int:
        """A fresh silence id; handlers take one before they submit the silence (no await
        between, so ids never collide; a failed commit leaves a gap)."""
        return self._watch.new_silence_id()

    def silence(self, silence_id_: int) -> Silence | None:
        """A silence not over yet, by id."""
        return self._watch.silence(silence_id_)

    def heartbeat(self, name: str) -> Heartbeat | None:
        return self._watch.heartbeat(name)

    # -- the writer task -------------------------------------------------------------------------

    async def _run(self) -> None:
        """The pipelined writer: round N+1 is applied and encoded on the loop while round N
        commits on the store's thread; N+1's commit starts only once N's is settled, so each
        answer still follows its own fsync and a failed N never leaves N+1 on disk."""
        inflight: _Round | None = None
        while True:
            current = following = None
            subs: list[_Submission] = []
            stop = False
            try:
                if inflight is None:
                    try:
                        first = await asyncio.wait_for(self._queue.get(), self._idle_timeout())
                    except TimeoutError:
                        first = _Submission((), asyncio.get_running_loop().create_future())
                    if first is not None and first.inboxed and self._gathers():
                        await self._gather(None)
                else:
                    arrived, first = await self._input_or_commit(inflight)
                    if not arrived:  # committed, and nothing queued to overlap with
                        current, inflight = inflight, None
                        await self._settle(current, None)
                        continue
                subs, stop = self._drain(first)
                following, retry = await self._prepare_on(inflight, subs)
                if inflight is not None:
                    current, inflight = inflight, None
                    if not await self._settle(current, following):
                        following = None  # rolled back with it, and retried alone
                if following is not None:
                    self._start(following)
                    inflight, following = following, None
                for sub in retry:  # the round that could not even be applied
                    await self._commit_batch([sub])
                if stop:
                    if inflight is not None:
                        current, inflight = inflight, None
                        await self._settle(current, None)
                    return
            except Exception as exc:  # the writer must outlive any failure (a bug)
                log.exception("writer_round_failed")
                rounds = [r for r in (inflight, current, following) if r is not None]
                inflight = None
                await self._recover(rounds, subs, StoreError(f"commit failed: {exc}"))
                if stop:
                    return

    async def _recover(
        self, rounds: list[_Round], subs: list[_Submission], failure: StoreError
    ) -> None:
        """After an unexpected failure in the writer: whatever of `rounds` reached the disk,
        memory is rebuilt from the store, and every request not answered yet gets `failure`
        (it may have been stored: a retry of it then counts twice, the price of a bug)."""
        commits = [r.commit for r in rounds if r.commit is not None]
        if commits:
            await asyncio.wait(commits)
        for rnd in rounds:
            self._fail(rnd.subs, failure)
        self._fail(subs, failure)
        try:
            await self._reload(self._clock.now())
            if self._inbox is not None:
                await self._resync_inbox()
        except Exception:
            log.exception("writer_reload_failed")

    async def _resync_inbox(self) -> None:
        """After memory was rebuilt from the store: the inbox rows still stored are exactly
        those not applied. Queued copies are dropped and the rows queued again, in order."""
        assert self._inbox is not None
        self._resyncing = True  # rows committing meanwhile are read below, not handed over
        try:
            kept: list[_Submission | None] = []
            while not self._queue.empty():
                sub = self._queue.get_nowait()
                if sub is not None and sub.inboxed:
                    sub.done.set_result(None)
                else:
                    kept.append(sub)
            for other in kept:
                self._queue.put_nowait(other)
            after = await self._inbox.load_mark()  # a failed round's commit may have landed
            while page := await self._inbox.read(after):
                after = page[-1][0]
                for row_id, items in page:
                    self._grow(len(items))
                    self._queue_inboxed([*items, JournalMark(row_id)], len(items))
            self._inbox_next = after + 1
        finally:
            self._resyncing = False

    async def _reload(self, now: datetime) -> None:
        """The cache, its indexes and timers, and the watch, as the store has them."""
        self._purge_inflight = False
        self._cache.clear()
        self._services_by_host.clear()
        self._held.clear()
        self._gauges.clear()
        self._timers.clear()
        await self._load(now, freeze=False)
        await self._watch.reload(now)

    async def _load(self, now: datetime, *, freeze: bool) -> None:
        """The store's live incidents into the (empty) cache, its indexes and timers, a page
        at a time. Folded ones (alertd.codec) are indexed from their columns, not decoded."""
        policy = self.policy
        loaded = 0
        async for page in self._store.load_active(now - policy.reopen_window):
            for item in page:
                if isinstance(item, Folded):
                    if item.active(now):
                        self._remember_folded(item, policy)
                elif lifecycle.is_active(item, now):
                    self._remember(item)
                    self._watch.changed(item, policy)
            loaded += len(page)
            if freeze and loaded >= _FREEZE_FROM:
                # What is loaded lives long: out of the cyclic GC's sight, or each full
                # collection walks every incident (0.4 s of the loop at 100,000, seconds at a
                # million). The cache's objects hold no cycles; refcounting still frees each
                # one replaced. Garbage from before is collected first, never frozen.
                if loaded - len(page) < _FREEZE_FROM:
                    gc.collect()
                gc.freeze()

    async def _input_or_commit(self, inflight: _Round) -> tuple[bool, _Submission | None]:
        """What comes first: new input to apply beside the commit (True, it), or the end of
        the commit (False, None). A lone request arriving mid-commit is applied at once;
        inbox input, while it may gather (`_gathers`), waits for the commit instead."""
        commit = inflight.commit
        if commit is None or commit.done():
            if not self._queue.empty():
                return True, self._queue.get_nowait()
            return False, None
        if self._inbox is not None and self._max_backlog and self._gathers():
            await self._gather(commit)
            if commit.done():
                return False, None
        if not self._queue.empty():
            return True, self._queue.get_nowait()
        getter = asyncio.ensure_future(self._queue.get())
        try:
            await asyncio.wait((commit, getter), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()  # Queue.get leaves the item queued when cancelled
        if getter.done() and not getter.cancelled():
            return True, getter.result()
        return False, None

    async def _prepare_on(
        self, inflight: _Round | None, subs: list[_Submission]
    ) -> tuple[_Round | None, list[_Submission]]:
        """Apply `subs` on top of the round in flight (as if it were committed already).
        Returns the new round, or (None, subs) if applying failed (retried alone after)."""
        if not subs:
            return None, []
        if inflight is not None:
            staged, expired = inflight.batch.staged, inflight.batch.expired
            # Keys the round in flight lets go of (reopen window over) are gone for this one.
            self._overlay = {**dict.fromkeys(expired), **staged} if expired else staged
        try:
            return await self._prepare(subs), []
        except Exception as exc:
            log.warning("apply_failed_retrying_alone", error=str(exc), submissions=len(subs))
            return None, subs
        finally:
            self._overlay = {}

    async def _prepare(self, subs: list[_Submission]) -> _Round:
        """Apply `subs` (and due timers) to a new staged view and encode its rows; on an
        exception nothing of it stays in memory."""
        started = asyncio.get_running_loop().time()
        now = self._clock.now()
        batch = Batch(now)
        try:
            self._fire_timers(batch, now)
            applied = 0
            for sub in subs:
                for result in sub.results:
                    self._apply(batch, result, now)
                    applied += 1
                    if applied == _YIELD_EVERY:
                        applied = 0
                        await self._give_way()
            self._finish(batch, now)
            if not self._purge_inflight:
                batch.write.purge = self._purge_due(now, started)
            prepared = None
            if batch.write:
                batch.write.at = now
                prepared = self._store.prepare(batch.write)
        except Exception:
            self._rewind(batch)
            raise
        self._purge_inflight = batch.write.purge is not None
        return _Round(subs, batch, started, prepared)

    def _start(self, rnd: _Round) -> None:
        if rnd.prepared is not None:
            rnd.commit = asyncio.ensure_future(self._store.commit(rnd.prepared))

    async def _settle(self, rnd: _Round, following: _Round | None) -> bool:
        """See `rnd`'s commit through: publish it and answer its requests, or, if it failed,
        roll it back in memory together with `following` (applied on top of it, not yet
        committing) and commit each of their submissions alone. True if `rnd` committed."""
        try:
            purged = await rnd.commit if rnd.commit is not None else {}
        except Exception as exc:
            if following is not None:
                self._rewind(following.batch)
            self._rewind(rnd.batch)
            subs = rnd.subs + (following.subs if following is not None else [])
            log.warning("commit_failed_retrying_alone", error=str(exc), submissions=len(subs))
            await self._watch.reload(rnd.batch.now)  # windows and heartbeats as stored, too
            for sub in subs:
                await self._commit_batch([sub])
            return False
        rnd.batch.write.purged = purged
        self._complete(rnd)
        if following is not None:
            # Publishing `rnd` may have unindexed a service `following` staged anew.
            for (host, service), incident in following.batch.staged.items():
                if service is not None and incident is not None:
                    self._services_by_host.add(host, service)
        return True

    def _rewind(self, batch: Batch) -> None:
        """Undo what applying `batch` did outside it: nothing was published, so memory is as
        before once the timers taken go back and services indexed early are unindexed."""
        for entry in batch.timers_taken:
            heapq.heappush(self._timers, entry)
        batch.timers_taken.clear()
        self._unindex(batch)
        if batch.write.purge is not None:
            self._purge_inflight = False

    def _fail(self, subs: Sequence[_Submission], failure: Exception) -> None:
        for sub in subs:
            if not sub.done.done():
                sub.done.set_exception(failure)


    def _drain(self, first: _Submission | None) -> tuple[list[_Submission], bool]:
        if first is None:
            return [], True
        subs = [first] if self._takes(first) else []
        count = len(first.results)
        while count < self._max_batch and not self._queue.empty():
            nxt = self._queue.get_nowait()
            if nxt is None:
                return subs, True
            if self._takes(nxt):
                subs.append(nxt)
                count += len(nxt.results)
        if self._queue.empty():
            self._urgent = False  # whatever could not wait is in this round
        return subs, False

    def _takes(self, sub: _Submission) -> bool:
        """False for inbox rows queued after one that could not be applied before a stop: they
        stay in the inbox, for the next start to apply after it (order is per inbox)."""
        if sub.inboxed and self._inbox_stopped:
            if not sub.done.done():
                sub.done.set_result(None)
            return False
        return True

    def _idle_timeout(self) -> float:
        return min(self._incident_timeout(), self._watch_timeout(), self._retention_timeout())

    def _retention_timeout(self) -> float:
        """Wake for retention only while a backlog is being worked off; otherwise the pass
        rides on the next commit or idle wake (at least every 30 s)."""
        if self._retention_at is None or not self._retention_backlog:
            return MAX_IDLE_SECONDS
        wait = self._retention_at - asyncio.get_running_loop().time()
        return min(max(wait, 0.0), MAX_IDLE_SECONDS)

    def _purge_due(self, now: datetime, loop_now: float) -> Purge | None:
        """A retention pass for this commit, if one is due (at most one per interval).

        Timed by the loop's monotonic clock, so a wall-clock step never runs passes back to
        back; the cut-offs are wall-clock ages, as the stored times are."""
        if self._retention_at is None:
            self._retention_at = loop_now + self._retention.every.total_seconds()
            return None
        if loop_now < self._retention_at:
            return None
        keep = self._retention.keep
        return Purge(
            # Never an incident that may still reopen, whatever `keep` is.
            resolved_before=now - max(keep, self.policy.reopen_window),
            done_before=now - keep,
            limit=self._retention.chunk,
            live=self._holds,
        )

    def _purged(self, deleted: dict[PurgeKind, int], loop_now: float) -> None:
        self._retention_at = loop_now + self._retention.every.total_seconds()
        # A full chunk means more is waiting: the writer wakes for the next pass by itself.
        self._retention_backlog = sum(deleted.values()) >= self._retention.chunk
        if any(deleted.values()):
            log.info("retention_deleted", **{k.value: n for k, n in deleted.items()})

    def _holds(self, incident_id: int, host: str, service: str | None) -> bool:
        entry = self._cache.entry((host, service))  # on the store's thread: never decodes
        return entry is not None and entry.id == incident_id

    def next_due(self) -> datetime | None:
        """The earliest timer the writer wakes for by itself (a hold, a grace, a silence, a
        heartbeat, a stale deadline), or None; it also wakes at least every 30 s."""
        self._incident_timeout()  # drops heap entries of incidents that moved on
        dues = [d for d in (self._timers[0][0] if self._timers else None, self._watch.due()) if d]
        return min(dues, default=None)

    def _timers_due(self, now: datetime) -> bool:
        """Whether incident timers or stale deadlines are due at `now` (more than one commit's
        chunk fell due at once)."""
        self._incident_timeout()  # drops heap entries of incidents that moved on
        if self._timers and self._timers[0][0] <= now:
            return True
        stale = self._watch.stale_due()
        return stale is not None and stale <= now

    def _incident_timeout(self) -> float:
        while self._timers:
            due, incident_id, key = self._timers[0]
            current = self._cache.entry(key)
            if current is None or current.id != incident_id or self._entry_due(current) != due:
                heapq.heappop(self._timers)  # stale entry: the incident moved on
                continue
            wait = (due - self._clock.now()).total_seconds()
            return min(max(wait, 0.0), MAX_IDLE_SECONDS)
        return MAX_IDLE_SECONDS

    def _watch_timeout(self) -> float:
        due = self._watch.due()  # a silence's start or end, the stale sweep, a heartbeat
        if due is None:
            return MAX_IDLE_SECONDS
        return max((due - self._clock.now()).total_seconds(), 0.0)

    async def _commit_batch(self, subs: list[_Submission]) -> None:
        """One round on its own, not pipelined (a retry after a failed round): if it fails
        with several submissions, each is tried alone, so only one that cannot be committed
        fails (shared fate is the price of group commit, not of a bad input)."""
        # Inbox rows after one left for the next start (a stop while its commit failed) are
        # never committed before it: the mark would pass it.
        subs = [sub for sub in subs if self._takes(sub)]
        if not subs:
            return
        now = self._clock.now()
        try:
            rnd = await self._prepare(subs)  # on an exception, nothing of it stays in memory
        except Exception as exc:
            await self._failed(subs, exc, now)
            return
        self._start(rnd)
        try:
            purged = await rnd.commit if rnd.commit is not None else {}
        except Exception as exc:
            self._rewind(rnd.batch)
            await self._failed(subs, exc, now)
            return
        rnd.batch.write.purged = purged
        self._complete(rnd)

    async def _failed(self, subs: list[_Submission], exc: Exception, now: datetime) -> None:
        if len(subs) == 1 and subs[0].rows is not None:
            # Several inbox rows in one submission: each row on its own, as if handed over
            # alone (only a row that cannot be applied is skipped); the whole is then done.
            whole, rows = subs[0], subs[0].rows
            subs = [self._inboxed([*items, JournalMark(row_id)], 0, None) for items, row_id in rows]
            try:
                await self._failed(subs, exc, now)
            finally:
                if not whole.done.done():
                    whole.done.set_result(None)
            return
        if len(subs) > 1:
            log.warning("commit_failed_retrying_alone", error=str(exc), submissions=len(subs))
            await self._watch.reload(now)
            for sub in subs:
                await self._commit_batch([sub])
            return
        if subs[0].inboxed:
            await self._inbox_failed(subs[0], exc, now)
            return
        log.error("commit_failed", error=str(exc), submissions=len(subs))
        self.commit_error = str(exc)
        await self._watch.reload(now)
        failure = exc if isinstance(exc, StoreError) else StoreError(f"commit failed: {exc}")
        self._fail(subs, failure)

    async def _inbox_failed(self, sub: _Submission, exc: Exception, now: datetime) -> None:
        """An inbox row that could not be applied; it was acknowledged, so it is never failed
        back. Its commit failed (the store: disk full, I/O): tried again, waiting longer each
        time, until it commits; the rows after it wait behind it, as their order requires, and
        ingest waits for room meanwhile. Applying it raised (a bug, or a row this version
        cannot apply), or the store refused what it wrote (a constraint): it is skipped with
        an error in the log, and its row deleted."""
        delay = 0.5
        while True:
            await self._watch.reload(now)  # windows and heartbeats as stored
            refused = isinstance(exc, StoreRefused) or not isinstance(exc, StoreError)
            if refused and len(sub.results) > 1:
                log.error("inbox_row_skipped", error=str(exc), inputs=len(sub.results) - 1)
                sub = _Submission(sub.results[-1:], sub.done, inboxed=True)  # its mark alone
            else:
                log.error("commit_failed_inbox_kept", error=str(exc), retry_in=delay)
                self.commit_error = str(exc)
                if self._closing:  # left in the inbox: the next start applies it, then the rest
                    self._inbox_stopped = True
                    if not sub.done.done():
                        sub.done.set_result(None)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, _INBOX_RETRY_MAX)
            now = self._clock.now()
            try:
                rnd = await self._prepare([sub])  # on an exception, nothing stays in memory
            except Exception as again:
                exc = again
                continue
            self._start(rnd)
            try:
                purged = await rnd.commit if rnd.commit is not None else {}
            except Exception as again:
                self._rewind(rnd.batch)
                exc = again if isinstance(again, StoreError) else StoreError(str(again))
                continue
            rnd.batch.write.purged = purged
            self._complete(rnd)
            return

    def _complete(self, rnd: _Round) -> None:
        """After a successful commit: publish, answer every waiter, report."""
        batch = rnd.batch
        self._publish(batch, batch.now)
        if batch.write.purge is not None:
            self._purge_inflight = False
            self._purged(batch.write.purged, rnd.started)
        if batch.write:
            self.commit_error = None
        if batch.write.new_ops or batch.write.redrive:
            self.outbox_ready.set()
        if batch.write.journal_upto is not None and self._inbox is not None:
            self._inbox.applied(batch.write.journal_upto)
        for sub in rnd.subs:
            if not sub.done.done():
                sub.done.set_result(None)
        # An inbox row's submission ends with its mark, which is not an input of anyone's.
        inputs = [s.results[:-1] if s.inboxed else s.results for s in rnd.subs]
        self.last_batch = BatchStats(
            results=sum(len(i) for i in inputs),
            submissions=len(rnd.subs),
            incidents_written=len(batch.write.upserts) + len(batch.write.repeats),
            events_written=len(batch.write.events),
            commit_seconds=asyncio.get_running_loop().time() - rnd.started,
        )
        if self._on_batch is not None:
            self._on_batch(self.last_batch, batch.write, inputs)

    # -- applying inputs to the staged view ------------------------------------------------------

    def _get(self, batch: Batch, key: IncidentKey) -> Incident | None:
        if key in batch.staged:
            return batch.staged[key]
        if key in self._overlay:
            return self._overlay[key]
        return self._cache.get(key)

    def _host_keys(self, batch: Batch, host: str) -> list[IncidentKey]:
        """A host's incidents as staged so far: its host check's and its services'."""
        keys: list[IncidentKey] = [(host, s) for s in self._services_by_host.get(host)]
        if self._get(batch, (host, None)) is not None:
            keys.append((host, None))
        return keys

    def _host_problem(self, batch: Batch, host: str) -> Incident | None:
        incident = self._get(batch, (host, None))
        return incident if _is_host_problem(incident) else None

    def _apply(self, batch: Batch, item: Input, now: datetime) -> None:
        if type(item) is not CheckResult:
            self._apply_other(batch, item, now)
            return
        key = (item.host, item.service)
        staged, overlay = batch.staged, self._overlay
        if key in staged:
            before = staged[key]
        elif key in overlay:
            before = overlay[key]
        else:
            before = self._cache.get(key)
        if before is None and item.state in OK_STATES:
            return  # the common case: all is well and nothing was wrong before
        host_problem = None if item.service is None else self._host_problem(batch, item.host)
        transition = lifecycle.apply(
            before, item, self.policy, now, new_id=self._next_id, host_problem=host_problem
        )
        if self._active:  # maintenance: cheap to skip, since rarely any window is open
            transition = self._watch.silenced(transition, now)
        self._stage(batch, key, before, transition)

    def _apply_other(self, batch: Batch, item: Input, now: datetime) -> None:
        if type(item) is Notice and item.kind.startswith("downtime"):
            self._watch.downtime(batch, item, now)
        elif type(item) is Notice:
            key = item.key
            before = self._get(batch, key)
            if item.incident_id is not None and (before is None or before.id != item.incident_id):
                return  # the incident it names is gone; the handler answers 404/409
            self._stage(batch, key, before, notices.annotate(before, item, self.policy, now))
        elif type(item) is OutboxUpdate:
            batch.write.op_updates.append(item)
        elif type(item) is TicketLink:
            batch.write.tickets.append(item)
        elif type(item) is Redrive:
            batch.write.redrive.append(item.row_id)
        elif type(item) is JournalMark:
            batch.write.journal_upto = max(batch.write.journal_upto or 0, item.upto)
        else:
            self._watch.apply(batch, item, now)

    def _stage(
        self, batch: Batch, key: IncidentKey, before: Incident | None, transition: Transition
    ) -> None:
        after = transition.incident
        if transition.repeat and after is not None:
            # A plain repeat (the storm's commonest input): same incident, same state, one
            # `deduplicated` event counted per incident and commit; nothing to (un)index.
            batch.staged[key] = after
            if key not in batch.full:
                batch.plain.add(key)
            at = transition.events[0].at
            count, _ = batch.dedup_counts.get(after.id, (0, at))
            batch.dedup_counts[after.id] = (count + 1, at)
            return
        if after is not None and after.id == self._next_id:
            self._next_id += 1
        if transition.discarded and before is not None:
            batch.staged[key] = None
            batch.write.deletes.append(before.id)
            batch.dedup_counts.pop(before.id, None)
        elif after is not before or transition.events:  # events need planning too
            batch.staged[key] = after
        if key not in batch.full:  # written whole, whatever repeats it had before
            batch.plain.discard(key)
            batch.full.add(key)
        host, service = key
        if service is None:
            self._absorb_services(batch, host, before, after)
        elif after is not None and before is None:
            # Indexed at once, not at publication: a host result later in this same batch
            # must find the service to absorb or release it. (The incident's own strings:
            # interned, where the result's are one copy per request.)
            self._services_by_host.add(after.host, after.service or service)
        if after is None:
            return
        for event in transition.events:
            kind = event.kind
            if kind is EventKind.DEDUPLICATED:
                count, _ = batch.dedup_counts.get(after.id, (0, event.at))
                batch.dedup_counts[after.id] = (count + 1, event.at)
            elif kind is EventKind.LATE:
                # A spool or a retry may bring many: one event per incident, source and commit.
                late = (after.id, str(event.detail.get("source")))
                count, first = batch.late_counts.get(late, (0, event))
                batch.late_counts[late] = (count + 1, first)
            else:
                batch.write.events.append((after.id, event))

    def _absorb_services(
        self, batch: Batch, host_name: str, before: Incident | None, host: Incident | None
    ) -> None:
        """A host DOWN/UNREACHABLE incident absorbs its services; its recovery (or a soft
        recovery that discards it) releases them."""
        was = _is_host_problem(before)
        now_problem = _is_host_problem(host)
        if was == now_problem:
            return
        for service in sorted(self._services_by_host.get(host_name)):
            key = (host_name, service)
            incident = self._get(batch, key)
            if incident is None or incident.status is Status.RESOLVED:
                continue
            if now_problem and host is not None:
                reason = f"host {host.host} is {host.check_state.value} (incident {host.id})"
                transition = lifecycle.suppress(incident, reason, batch.now)
            elif incident.suppressed_reason and incident.suppressed_reason.startswith("host "):
                transition = self._watch.release(batch, incident)
            else:
                continue
            self._stage(batch, key, incident, transition)

    def _fire_timers(self, batch: Batch, now: datetime) -> None:
        try:
            self._watch.fire(batch, now, self.policy)
        except Exception:  # a bug in one window or heartbeat must not stop every commit
            log.exception("watch_timers_failed")
        budget = TIMER_CHUNK  # many due at once (after a restart): a chunk per commit
        while self._timers and self._timers[0][0] <= now and budget > 0:
            budget -= 1
            entry = heapq.heappop(self._timers)
            batch.timers_taken.append(entry)
            _, incident_id, key = entry
            incident = self._get(batch, key)
            if incident is None or incident.id != incident_id:
                continue
            due = self._due(incident)
            if due is None or due > now:
                continue
            if not lifecycle.is_active(incident, now):
                batch.expired.append(key)  # reopen window over: nothing left to do in memory
                if key[1] is None and _is_host_problem(incident):
                    # A host leaving memory in a SOFT problem no longer holds its services.
                    batch.staged[key] = None
                    self._absorb_services(batch, key[0], incident, None)
                continue
            try:
                self._fire_incident(batch, key, incident, now)
            except Exception:
                # One incident's broken timer must not fail every commit (and every restart):
                # log it and leave that incident as it is; its timer is not re-armed.
                batch.timers_taken.pop()
                log.exception("incident_timer_failed", incident_id=incident_id, key=key_text(key))

    def _fire_incident(
        self, batch: Batch, key: IncidentKey, incident: Incident, now: datetime
    ) -> None:
        staged = dict(batch.staged)
        events, ops = len(batch.write.events), len(batch.write.new_ops)
        try:
            self._stage(batch, key, incident, lifecycle.tick(incident, self.policy, now))
            if self._planner is not None:
                self._fire_ticket_timers(batch, key, now, self._planner)
        except Exception:
            # Undo what this incident staged, so the commit holds none of it.
            batch.staged.clear()
            batch.staged.update(staged)
            del batch.write.events[events:], batch.write.new_ops[ops:]
            raise

    def _fire_ticket_timers(
        self, batch: Batch, key: IncidentKey, now: datetime, planner: TicketPlanner
    ) -> None:
        incident = self._get(batch, key)
        if incident is None or not any(
            t is not None and t <= now for t in planner.timers(incident)
        ):
            return
        updated, ops, events = planner.fire(incident, now)
        self._stage(batch, key, incident, Transition(updated))
        batch.write.events.extend((updated.id, e) for e in events)
        self._queue_ops(batch, updated.id, ops, now)

    def _finish(self, batch: Batch, now: datetime) -> None:
        """Turn the staged view into rows: one upsert per changed incident, coalesced dedups,
        and the ticket operations the changes imply (same transaction: the outbox)."""
        gone = set(batch.write.deletes)
        if gone:
            # A pending incident opened and discarded in this batch leaves no events behind.
            batch.write.events = [(i, e) for i, e in batch.write.events if i not in gone]
        planner = self._planner
        by_incident: dict[int, list[Event]] = {}  # for the planner only
        if planner is not None:
            for incident_id, event in batch.write.events:
                by_incident.setdefault(incident_id, []).append(event)
        events = batch.write.events
        for incident_id, (count, at) in batch.dedup_counts.items():
            event = Event(EventKind.DEDUPLICATED, at, {"count": count})
            events.append((incident_id, event))
            if planner is not None:
                by_incident.setdefault(incident_id, []).append(event)
        for (incident_id, _), (count, first) in batch.late_counts.items():
            if incident_id not in gone:
                event = Event(EventKind.LATE, first.at, {**first.detail, "count": count})
                batch.write.events.append((incident_id, event))
        repeats, upserts, plain = batch.write.repeats, batch.write.upserts, batch.plain
        if planner is None:  # nothing to plan: each staged incident is a row as it is
            due_at = lifecycle.due_at
            for key, incident in batch.staged.items():
                if incident is not None:
                    rows = repeats if key in plain else upserts
                    rows.append((incident, due_at(incident)))
            return
        for key, incident in batch.staged.items():
            if incident is None:
                continue
            changes = by_incident.get(incident.id)
            planned = incident
            if changes:
                planned, ops = planner.plan(incident, changes, now)
                batch.staged[key] = planned  # same key: the dict does not change size
                self._queue_ops(batch, planned.id, ops, now)
            if planned is incident and key in batch.plain:
                batch.write.repeats.append((incident, self._due(incident)))
            else:
                # The planner changed it (a summary due, say): written and published whole,
                # its timers re-derived.
                batch.plain.discard(key)
                batch.write.upserts.append((planned, self._due(planned)))

    def _queue_ops(
        self, batch: Batch, incident_id: int, ops: list[PlannedOp], now: datetime
    ) -> None:
        batch.write.new_ops.extend(
            NewOp(incident_id, op.op.value, dict(op.payload), op.priority, op.not_before or now)
            for op in ops
        )

    def _due(self, incident: Incident) -> datetime | None:
        """The incident's earliest timer: lifecycle's, or one of its ticket's."""
        due = lifecycle.due_at(incident)
        if self._planner is None:
            return due
        timers = [t for t in (due, *self._planner.timers(incident)) if t is not None]
        return min(timers) if timers else None

    def _publish(self, batch: Batch, now: datetime) -> None:
        """After a successful commit: the staged view becomes the cache."""
        for key in batch.expired:
            if key not in batch.staged:
                self._forget(key)
        plain, cache, changed, policy = batch.plain, self._cache, self._watch.changed, self.policy
        for key, incident in batch.staged.items():
            if key in plain and incident is not None:
                # A plain repeat: the same open incident, its timers and indexes as they were.
                cache[key] = incident
                changed(incident, policy)
            elif incident is None or not lifecycle.is_active(incident, now):
                self._forget(key)
            else:
                self._remember(incident)
                changed(incident, policy)

    def _unindex(self, batch: Batch) -> None:
        """After a failed commit: services indexed by `_stage` that were never published."""
        for host, service in batch.staged:
            if service is not None and (host, service) not in self._cache:
                self._services_by_host.discard(host, service)

    def _remember(self, incident: Incident) -> None:
        previous = self._cache.entry(incident.key)
        self._cache[incident.key] = incident
        self._count(previous, incident)
        if incident.suppressed:
            self._held.add(incident.key)
        elif previous is not None and previous.suppressed:
            self._held.discard(incident.key)
        if incident.service is not None:
            self._services_by_host.add(incident.host, incident.service)
        due = self._due(incident)
        # Push a timer only when it changed, so repeated results do not grow the heap.
        if due is not None and (
            previous is None or previous.id != incident.id or self._entry_due(previous) != due
        ):
            heapq.heappush(self._timers, (due, incident.id, incident.key))

    def _remember_folded(self, folded: Folded, policy: LifecyclePolicy) -> None:
        """`_remember` and the stale watch's `changed` for an incident loaded folded, from the
        fields it keeps (it stays folded until the writer reads it)."""
        key, cache = folded.key, self._cache
        if key in cache:
            self._forget(key)  # an older row of the same key: the newest one wins
        cache.fold(folded)
        gauge = folded.gauge
        if gauge is not None:
            self._gauges[gauge] = self._gauges.get(gauge, 0) + 1
        if folded.suppressed:
            self._held.add(key)
        host, service = key
        if service is not None:
            self._services_by_host.add(host, service)
        if folded.due is not None:
            heapq.heappush(self._timers, (folded.due, folded.id, key))
        if folded.stream is not None:
            last_seen, interval = folded.stream
            self._watch.loaded(key, last_seen, interval, policy)
            folded.stream = None  # needed once

    def _unfolded(self, folded: Folded, incident: Incident) -> None:
        """A folded incident was decoded: its timer was queued at `folded.due`, the earliest
        it may need (a due time stored without the ticket planner, or with it, may differ
        from today's); when its own is another, that one is queued too (the first is then
        dropped as stale when it comes up)."""
        due = self._due(incident)
        if due is not None and due != folded.due:
            heapq.heappush(self._timers, (due, incident.id, incident.key))

    def _entry_due(self, entry: Incident | Folded) -> datetime | None:
        return entry.due if isinstance(entry, Folded) else self._due(entry)

    def _count(self, before: Incident | Folded | None, after: Incident | Folded | None) -> None:
        old = _gauge_key(before)
        new = _gauge_key(after)
        if old == new:
            return
        gauges = self._gauges
        if old is not None:
            left = gauges[old] - 1
            if left:
                gauges[old] = left
            else:
                del gauges[old]
        if new is not None:
            gauges[new] = gauges.get(new, 0) + 1

    def _forget(self, key: IncidentKey) -> None:
        self._count(self._cache.pop(key), None)
        self._held.discard(key)
        host, service = key
        if service is not None:
            self._services_by_host.discard(host, service)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _gauge_key(entry: Incident | Folded | None) -> GaugeKey | None:
    if entry is None:
        return None
    return entry.gauge if isinstance(entry, Folded) else gauge_key(entry)


def _is_host_problem(incident: Incident | None) -> bool:
    """Whether a host's incident absorbs its services: its host is DOWN or UNREACHABLE now.

    A SOFT problem absorbs too, pending or on a resolved incident that may still reopen: Nagios
    forces a service of a host in any problem state HARD at once, and its OCSP forwards that
    before the host is HARD itself. (A recovering incident's state is UP.)
    """
    return incident is not None and incident.check_state.is_host_problem
