"""The one writer: batches check results, runs the pure lifecycle, group-commits, fires timers.

Handlers call `submit()` and await it; the writer task drains everything queued (bounded by
`max_batch` results), applies the lifecycle to the in-memory cache of active incidents, writes
the changed incidents and their events in ONE transaction, commits, and only then answers every
waiter. Timers (recovery holds, reopen windows) are due times on the incidents; the same task
wakes at the earliest one, so there is no task per incident and no second writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from alertd import heartbeats, lifecycle, notices
from alertd.clock import Clock
from alertd.errors import StoreError
from alertd.heartbeats import Beat, Heartbeat, HeartbeatRemove
from alertd.model import (
    CheckResult,
    CheckState,
    Event,
    EventKind,
    Incident,
    IncidentKey,
    Notice,
    NoticeKind,
    Status,
    Transition,
)
from alertd.policy import LifecyclePolicy
from alertd.silences import (
    Silence,
    SilenceChange,
    SilenceExpire,
    downtime_silence,
    first_match,
    is_downtime_of,
    silence_id,
)
from alertd.store import NewOp, OutboxUpdate, Redrive, Store, TicketLink, WriteBatch
from alertd.tickets import PlannedOp, TicketPlanner

log = structlog.get_logger(__name__)

OK_STATES = frozenset({CheckState.OK, CheckState.UP})

# Longest the writer sleeps with nothing queued: bounds the cost of a missed wake-up.
MAX_IDLE_SECONDS = 30.0
# The writer looks for stale incidents at least this often (config: stale_after >= 1m).
STALE_SWEEP = timedelta(minutes=1)
_DOWNTIME_ENDS = frozenset({NoticeKind.DOWNTIME_ENDED, NoticeKind.DOWNTIME_CANCELLED})


# What the writer takes: check results and notices (acks, downtimes, ...) from handlers, in
# arrival order, the outbox dispatcher's delivery records, silences and heartbeats.
Input = (
    CheckResult | Notice | OutboxUpdate | TicketLink | Redrive
    | SilenceChange | SilenceExpire | Beat | HeartbeatRemove
)  # fmt: skip


@dataclass(slots=True)
class _Submission:
    results: Sequence[Input]
    done: asyncio.Future[None]


@dataclass(slots=True)
class _Batch:
    """The in-memory side of one group commit: incidents as they will be after it."""

    now: datetime
    staged: dict[IncidentKey, Incident | None] = field(default_factory=dict)
    expired: list[IncidentKey] = field(default_factory=list)
    write: WriteBatch = field(default_factory=WriteBatch)
    dedup_counts: dict[int, tuple[int, datetime]] = field(default_factory=dict)
    timers_taken: list[tuple[datetime, int, IncidentKey]] = field(default_factory=list)


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
        max_batch: int = 20_000,
        max_queue: int = 10_000,
        planner: TicketPlanner | None = None,
        on_batch: BatchHook | None = None,
    ) -> None:
        self._store = store
        self._on_batch = on_batch
        self.policy = policy
        self._clock = clock
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Submission | None] = asyncio.Queue(max_queue)
        self._cache: dict[IncidentKey, Incident] = {}
        self._services_by_host: dict[str, set[str]] = {}
        # (due, incident id, key): ids are unique per live timer, so keys are never compared.
        self._timers: list[tuple[datetime, int, IncidentKey]] = []
        self._next_id = 1
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.last_batch: BatchStats | None = None
        self._planner = planner
        # Set after a commit that queued ticket operations: the dispatcher's doorbell.
        self.outbox_ready = asyncio.Event()
        # Silences not yet over, the active ones, and when that set next changes (None: never;
        # the first commit looks at once). Heartbeats by name. Few of each: plain dicts.
        self._silences: dict[int, Silence] = {}
        self._active: dict[int, Silence] = {}
        self._silence_due: datetime | None = None
        self._next_silence_id = 1
        self._heartbeats: dict[str, Heartbeat] = {}
        self._stale_due: datetime | None = None
        self._rescan = False  # compare every incident with the silences at the next look

    # -- lifecycle of the engine itself ----------------------------------------------------------

    async def start(self) -> None:
        now = self._clock.now()
        self._next_id = await self._store.max_incident_id() + 1
        for incident in await self._store.load_active(now - self.policy.reopen_window):
            if lifecycle.is_active(incident, now):
                self._remember(incident)
        await self._load_watch(now)
        log.info("engine_started", active_incidents=len(self._cache), next_id=self._next_id,
                 silences=len(self._silences), heartbeats=len(self._heartbeats))  # fmt: skip
        self._task = asyncio.create_task(self._run(), name="alertd-writer")
        # Holds that fell due while the daemon was down fire now, before any new input.
        await self.run_timers()

    async def stop(self) -> None:
        """Commit everything already submitted, then end the writer task."""
        if self._task is None:
            return
        self._closing = True
        await self._queue.put(None)
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

    def incidents(self) -> Iterable[Incident]:
        """The cached incidents (active ones, and resolved ones that may still reopen), read-only;
        iterate without awaiting in between."""
        return self._cache.values()

    # -- API for handlers ------------------------------------------------------------------------

    async def submit(self, results: Sequence[Input]) -> None:
        """Return once `results` are committed to disk; raise StoreError if they could not be."""
        if self._closing or not self.running:
            raise StoreError("engine is not running (shutting down)")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Submission(results, done))
        # Shield: a client that hangs up must not cancel a commit other requests share.
        await asyncio.shield(done)

    async def run_timers(self) -> None:
        """Fire every timer due now and commit; used at start and by tests driving the clock."""
        await self.submit(())

    def cached(self, key: IncidentKey) -> Incident | None:
        return self._cache.get(key)

    # -- the writer task -------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                first = await asyncio.wait_for(self._queue.get(), self._idle_timeout())
            except TimeoutError:
                first = _Submission((), asyncio.get_running_loop().create_future())
            subs, stop = self._drain(first)
            if subs:
                await self._commit_batch(subs)
            if stop:
                return

    def _drain(self, first: _Submission | None) -> tuple[list[_Submission], bool]:
        if first is None:
            return [], True
        subs = [first]
        count = len(first.results)
        while count < self._max_batch and not self._queue.empty():
            nxt = self._queue.get_nowait()
            if nxt is None:
                return subs, True
            subs.append(nxt)
            count += len(nxt.results)
        return subs, False

    def _idle_timeout(self) -> float:
        return min(self._incident_timeout(), self._watch_timeout())

    def _incident_timeout(self) -> float:
        while self._timers:
            due, incident_id, key = self._timers[0]
            current = self._cache.get(key)
            if current is None or current.id != incident_id or self._due(current) != due:
                heapq.heappop(self._timers)  # stale entry: the incident moved on
                continue
            wait = (due - self._clock.now()).total_seconds()
            return min(max(wait, 0.0), MAX_IDLE_SECONDS)
        return MAX_IDLE_SECONDS

    async def _commit_batch(self, subs: list[_Submission]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        now = self._clock.now()
        batch = _Batch(now)
        try:
            self._fire_timers(batch, now)
            for sub in subs:
                for result in sub.results:
                    self._apply(batch, result, now)
            self._finish(batch, now)
            if batch.write:
                batch.write.at = now
                await self._store.write(batch.write)
        except Exception as exc:
            # Nothing was published: memory is as before, and the timers taken go back.
            for entry in batch.timers_taken:
                heapq.heappush(self._timers, entry)
            if len(subs) > 1:
                # Shared fate is the price of group commit, not of a bad input: try each
                # submission alone, so only the one that cannot be committed fails.
                log.warning("commit_failed_retrying_alone", error=str(exc), submissions=len(subs))
                for sub in subs:
                    await self._commit_batch([sub])
                return
            log.error("commit_failed", error=str(exc), submissions=len(subs))
            await self._reload_watch(now)
            failure = exc if isinstance(exc, StoreError) else StoreError(f"commit failed: {exc}")
            for sub in subs:
                if not sub.done.done():
                    sub.done.set_exception(failure)
            return
        self._publish(batch, now)
        if batch.write.new_ops or batch.write.redrive:
            self.outbox_ready.set()
        for sub in subs:
            if not sub.done.done():
                sub.done.set_result(None)
        self.last_batch = BatchStats(
            results=sum(len(s.results) for s in subs),
            submissions=len(subs),
            incidents_written=len(batch.write.upserts),
            events_written=len(batch.write.events),
            commit_seconds=loop.time() - started,
        )
        if self._on_batch is not None:
            self._on_batch(self.last_batch, batch.write, [s.results for s in subs])

    # -- applying inputs to the staged view ------------------------------------------------------

    def _get(self, batch: _Batch, key: IncidentKey) -> Incident | None:
        if key in batch.staged:
            return batch.staged[key]
        return self._cache.get(key)

    def _host_problem(self, batch: _Batch, host: str) -> Incident | None:
        incident = self._get(batch, (host, None))
        return incident if _is_host_problem(incident) else None

    def _apply(self, batch: _Batch, item: Input, now: datetime) -> None:
        if type(item) is not CheckResult:
            self._apply_other(batch, item, now)
            return
        key = (item.host, item.service)
        before = batch.staged[key] if key in batch.staged else self._cache.get(key)
        if before is None and item.state in OK_STATES:
            return  # the common case: all is well and nothing was wrong before
        host_problem = None if item.service is None else self._host_problem(batch, item.host)
        transition = lifecycle.apply(
            before, item, self.policy, now, new_id=self._next_id, host_problem=host_problem
        )
        if self._active:  # maintenance: cheap to skip, since rarely any window is open
            transition = self._silenced(transition, now)
        self._stage(batch, key, before, transition)

    def _apply_other(self, batch: _Batch, item: Input, now: datetime) -> None:
        if type(item) is Notice and item.kind.startswith("downtime"):
            self._downtime(batch, item, now)
        elif type(item) is Notice:
            key = item.key
            before = self._get(batch, key)
            self._stage(batch, key, before, notices.annotate(before, item, self.policy, now))
        elif type(item) is OutboxUpdate:
            batch.write.op_updates.append(item)
        elif type(item) is TicketLink:
            batch.write.tickets.append(item)
        elif type(item) is Redrive:
            batch.write.redrive.append(item.row_id)
        else:
            self._apply_watch(batch, item, now)

    def _stage(
        self, batch: _Batch, key: IncidentKey, before: Incident | None, transition: Transition
    ) -> None:
        after = transition.incident
        if after is not None and after.id == self._next_id:
            self._next_id += 1
        if transition.discarded and before is not None:
            batch.staged[key] = None
            batch.write.deletes.append(before.id)
            batch.dedup_counts.pop(before.id, None)
        elif after is not before or transition.events:  # events need planning too
            batch.staged[key] = after
        if after is None:
            return
        for event in transition.events:
            if event.kind is EventKind.DEDUPLICATED:
                count, _ = batch.dedup_counts.get(after.id, (0, event.at))
                batch.dedup_counts[after.id] = (count + 1, event.at)
            else:
                batch.write.events.append((after.id, event))
        if key[1] is None:
            self._absorb_services(batch, before, after)

    def _absorb_services(self, batch: _Batch, before: Incident | None, host: Incident) -> None:
        """A host DOWN/UNREACHABLE incident absorbs its services; its recovery releases them."""
        was = _is_host_problem(before)
        now_problem = _is_host_problem(host)
        if was == now_problem:
            return
        for service in sorted(self._services_by_host.get(host.host, ())):
            key = (host.host, service)
            incident = self._get(batch, key)
            if incident is None or incident.status is Status.RESOLVED:
                continue
            if now_problem:
                reason = f"host {host.host} is {host.check_state.value} (incident {host.id})"
                transition = lifecycle.suppress(incident, reason, batch.now)
            elif incident.suppressed_reason and incident.suppressed_reason.startswith("host "):
                transition = self._release(batch, incident)
            else:
                continue
            self._stage(batch, key, incident, transition)

    def _fire_timers(self, batch: _Batch, now: datetime) -> None:
        self._fire_watch(batch, now)
        while self._timers and self._timers[0][0] <= now:
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
                continue
            self._stage(batch, key, incident, lifecycle.tick(incident, self.policy, now))
            if self._planner is not None:
                self._fire_ticket_timers(batch, key, now, self._planner)

    def _fire_ticket_timers(
        self, batch: _Batch, key: IncidentKey, now: datetime, planner: TicketPlanner
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

    def _finish(self, batch: _Batch, now: datetime) -> None:
        """Turn the staged view into rows: one upsert per changed incident, coalesced dedups,
        and the ticket operations the changes imply (same transaction: the outbox)."""
        by_incident: dict[int, list[Event]] = {}
        for incident_id, event in batch.write.events:
            by_incident.setdefault(incident_id, []).append(event)
        for incident_id, (count, at) in batch.dedup_counts.items():
            event = Event(EventKind.DEDUPLICATED, at, {"count": count})
            batch.write.events.append((incident_id, event))
            by_incident.setdefault(incident_id, []).append(event)
        for key, incident in batch.staged.items():
            if incident is None:
                continue
            events = by_incident.get(incident.id)
            if self._planner is not None and events:
                incident, ops = self._planner.plan(incident, events, now)
                batch.staged[key] = incident  # same key: the dict does not change size
                self._queue_ops(batch, incident.id, ops, now)
            batch.write.upserts.append((incident, self._due(incident)))

    def _queue_ops(
        self, batch: _Batch, incident_id: int, ops: list[PlannedOp], now: datetime
    ) -> None:
        batch.write.new_ops.extend(
            NewOp(incident_id, op.op.value, op.payload, op.priority, op.not_before or now)
            for op in ops
        )

    def _due(self, incident: Incident) -> datetime | None:
        """The incident's earliest timer: lifecycle's, or one of its ticket's."""
        due = lifecycle.due_at(incident)
        if self._planner is None:
            return due
        timers = [t for t in (due, *self._planner.timers(incident)) if t is not None]
        return min(timers) if timers else None

    def _publish(self, batch: _Batch, now: datetime) -> None:
        """After a successful commit: the staged view becomes the cache."""
        for key in batch.expired:
            if key not in batch.staged:
                self._forget(key)
        for key, incident in batch.staged.items():
            if incident is None or not lifecycle.is_active(incident, now):
                self._forget(key)
            else:
                self._remember(incident)

    def _remember(self, incident: Incident) -> None:
        previous = self._cache.get(incident.key)
        self._cache[incident.key] = incident
        if incident.service is not None:
            self._services_by_host.setdefault(incident.host, set()).add(incident.service)
        due = self._due(incident)
        # Push a timer only when it changed, so repeated results do not grow the heap.
        if due is not None and (
            previous is None or previous.id != incident.id or self._due(previous) != due
        ):
            heapq.heappush(self._timers, (due, incident.id, incident.key))

    def _forget(self, key: IncidentKey) -> None:
        self._cache.pop(key, None)
        host, service = key
        if service is not None:
            services = self._services_by_host.get(host)
            if services is not None:
                services.discard(service)
                if not services:
                    del self._services_by_host[host]

    # -- silences, staleness and heartbeats ------------------------------------------------------
    # Timers too, served by the same loop: a silence's start and end, the stale sweep, and each
    # heartbeat's due time. Their state is small, kept in memory and written through batches.

    def new_silence_id(self) -> int:
        """A fresh silence id; handlers take one before they submit the silence (no await
        between, so ids never collide; a failed commit leaves a gap)."""
        self._next_silence_id += 1
        return self._next_silence_id - 1

    def silence(self, silence_id_: int) -> Silence | None:
        """A silence not over yet, by id."""
        return self._silences.get(silence_id_)

    def heartbeat(self, name: str) -> Heartbeat | None:
        return self._heartbeats.get(name)

    async def _load_watch(self, now: datetime) -> None:
        self._next_silence_id = await self._store.max_silence_id() + 1
        self._silences = {s.id: s for s in await self._store.load_silences(now)}
        self._heartbeats = {h.name: h for h in await self._store.load_heartbeats()}
        # The first commit compares every incident with the windows open now, which also
        # releases incidents held by a silence that ended while the daemon was down.
        self._active = {}
        self._silence_due = self._stale_due = now
        self._rescan = True

    async def _reload_watch(self, now: datetime) -> None:
        """After a failed commit: memory goes back to what the store holds."""
        handed_out = self._next_silence_id  # ids handlers hold for submissions still queued
        with contextlib.suppress(StoreError):
            await self._load_watch(now)
        self._next_silence_id = max(self._next_silence_id, handed_out)

    def _watch_timeout(self) -> float:
        dues = [d for d in (self._silence_due, self._stale_due) if d is not None]
        dues += [h.due for h in self._heartbeats.values()]
        if not dues:
            return MAX_IDLE_SECONDS
        return max((min(dues) - self._clock.now()).total_seconds(), 0.0)

    def _fire_watch(self, batch: _Batch, now: datetime) -> None:
        # Staleness first: a hold that ends as the data stops must not resolve the incident.
        if self._stale_due is not None and self._stale_due <= now:
            self._sweep_stale(batch, now)
        if self._silence_due is not None and self._silence_due <= now:
            self._turn_silences(batch, now)
        for hb in list(self._heartbeats.values()):
            if hb.due <= now:
                missed, result = heartbeats.miss(hb, now)
                self._heartbeats[hb.name] = missed
                batch.write.heartbeats.append(missed)
                self._apply(batch, result, now)

    def _sweep_stale(self, batch: _Batch, now: datetime) -> None:
        """Mark stale every open or recovering incident whose check went quiet."""
        upcoming = now + STALE_SWEEP
        for key in list(self._cache):
            incident = self._get(batch, key)
            deadline = None if incident is None else lifecycle.stale_deadline(incident, self.policy)
            if incident is None or deadline is None:
                continue
            if deadline <= now:
                self._stage(batch, key, incident, lifecycle.mark_stale(incident, now))
            else:
                upcoming = min(upcoming, deadline)
        self._stale_due = upcoming

    def _apply_watch(self, batch: _Batch, item: Input, now: datetime) -> None:
        if type(item) is SilenceChange:
            self._silences[item.silence.id] = item.silence
            batch.write.silences.append(item.silence)
            self._turn_silences(batch, now)
        elif type(item) is SilenceExpire:
            live = self._silences.get(item.silence_id)
            if live is not None:
                batch.write.silences.append(live.expire(now))
                self._silences[live.id] = live.expire(now)
                self._turn_silences(batch, now)
        elif type(item) is Beat:
            before = self._heartbeats.get(item.name)
            after, result = heartbeats.beat(before, item)
            self._heartbeats[item.name] = after
            batch.write.heartbeats.append(after)
            if result is not None:
                self._apply(batch, result, now)
        elif type(item) is HeartbeatRemove and item.name in self._heartbeats:
            del self._heartbeats[item.name]
            batch.write.heartbeat_deletes.append(item.name)

    def _downtime(self, batch: _Batch, notice: Notice, now: datetime) -> None:
        """A Nagios downtime starts or ends the equivalent silence (one per host/service)."""
        host, service = notice.key
        mine = [s for s in self._silences.values() if is_downtime_of(s, host, service)]
        if notice.kind in _DOWNTIME_ENDS:
            for silence in mine:
                self._apply_watch(batch, SilenceExpire(silence.id), now)
        elif not [s for s in mine if s.is_active(now)]:
            silence = downtime_silence(
                self.new_silence_id(), notice.host, notice.service, notice.author,
                notice.comment, min(notice.at, now),
            )  # fmt: skip
            self._apply_watch(batch, SilenceChange(silence), now)

    def _turn_silences(self, batch: _Batch, now: datetime) -> None:
        """Windows that opened suppress what they match; those that closed release it."""
        started: list[Silence] = []
        ended = False
        for sid, silence in list(self._silences.items()):
            if silence.is_active(now):
                if self._active.get(sid) != silence:
                    started.append(silence)
                self._active[sid] = silence
            else:
                ended |= self._active.pop(sid, None) is not None
                if silence.is_expired(now):
                    del self._silences[sid]
        for sid in [sid for sid in self._active if sid not in self._silences]:
            ended |= self._active.pop(sid, None) is not None
        changes = [s.next_change(now) for s in self._silences.values()]
        self._silence_due = min((c for c in changes if c is not None), default=None)
        if started or ended or self._rescan:
            self._rescan = False
            self._rematch(batch, started, now)

    def _rematch(self, batch: _Batch, started: list[Silence], now: datetime) -> None:
        for key in list(self._cache.keys() | batch.staged.keys()):
            incident = self._get(batch, key)
            if incident is None or incident.status is Status.RESOLVED:
                continue
            if not incident.suppressed:
                silence = first_match(started, incident.host, incident.service, incident.labels)
                if silence is not None:
                    self._stage(batch, key, incident, self._suppress(incident, silence, now))
                continue
            held_by = silence_id(incident.suppressed_reason)
            if held_by is not None and held_by not in self._active:
                self._stage(batch, key, incident, self._release(batch, incident))

    def _silenced(self, transition: Transition, now: datetime) -> Transition:
        """`transition`, with its incident suppressed if an open window matches it."""
        incident = transition.incident
        if incident is None or incident.suppressed or incident.status is Status.RESOLVED:
            return transition
        silence = first_match(self._active.values(), incident.host, incident.service,
                              incident.labels)  # fmt: skip
        if silence is None:
            return transition
        held = self._suppress(incident, silence, now)
        return Transition(held.incident, transition.events + held.events, transition.discarded)

    def _suppress(self, incident: Incident, silence: Silence, now: datetime) -> Transition:
        held = lifecycle.suppress(incident, silence.reason, now)
        extra = {"silence": silence.id, "author": silence.author, "comment": silence.comment,
                 "source": silence.source}  # fmt: skip
        events = tuple(Event(e.kind, e.at, {**e.detail, **extra}) for e in held.events)
        return Transition(held.incident, events)

    def _release(self, batch: _Batch, incident: Incident) -> Transition:
        """Lift a host's or a silence's hold, unless another still applies."""
        now = batch.now
        silence = first_match(self._active.values(), incident.host, incident.service,
                              incident.labels)  # fmt: skip
        if silence is not None:
            return self._suppress(incident, silence, now)
        host = None if incident.service is None else self._host_problem(batch, incident.host)
        if host is not None:
            reason = f"host {host.host} is {host.check_state.value} (incident {host.id})"
            return lifecycle.suppress(incident, reason, now)
        return lifecycle.unsuppress(incident, now)


def _is_host_problem(incident: Incident | None) -> bool:
    return (
        incident is not None
        and incident.status is Status.OPEN
        and incident.check_state.is_host_problem
    )
