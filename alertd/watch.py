"""Maintenance windows (silences), heartbeats and the stale sweep: the writer's other timers.

The engine owns one `Watch` and calls it at fixed points of a commit: `fire` with the timers,
`apply` and `downtime` for their inputs, `silenced` on a result's transition while a window is
open (`active`), `release` when a host's hold lifts. Its state is small, kept in memory and
written through the engine's batch; it stages incidents only through the hooks the engine
passes in, so it never commits and never holds the write connection.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Collection, Iterable, Set
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from alertd import heartbeats, lifecycle, staleness
from alertd.batch import Batch
from alertd.heartbeats import Beat, Heartbeat, HeartbeatRemove
from alertd.model import (
    CheckResult,
    Event,
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
    SilenceIndex,
    downtime_key,
    downtime_key_of,
    downtime_silence,
    literal_host,
    silence_id,
)
from alertd.store import Store

_DOWNTIME_ENDS = frozenset({NoticeKind.DOWNTIME_ENDED, NoticeKind.DOWNTIME_CANCELLED})

# The engine's side of a batch, as the watch uses it: read an incident as staged so far,
# stage a transition, apply a check result (a heartbeat's), find a host's open problem.
Get = Callable[[Batch, IncidentKey], Incident | None]
Stage = Callable[[Batch, IncidentKey, Incident | None, Transition], None]
Apply = Callable[[Batch, CheckResult, datetime], None]
HostProblem = Callable[[Batch, str], Incident | None]
# The keys of a host's incidents (its host check and services), staged ones included.
HostKeys = Callable[[Batch, str], Iterable[IncidentKey]]

log: structlog.typing.FilteringBoundLogger = structlog.get_logger(__name__)

# Incidents a window's pass looks at per commit (~10 ms of the loop).
SWEEP_CHUNK = 5_000
# "Look now": earlier than any time the writer can be asked about.
_AT_ONCE = datetime.min.replace(tzinfo=UTC)


@dataclass(slots=True)
class _Sweep:
    """A window's pass over incidents: suppress what `silence` matches (it opened), or, with
    None, release what no open window holds any more (windows closed)."""

    silence: Silence | None
    keys: list[IncidentKey]
    done: int = 0


class Watch:
    """Silences not yet over, heartbeats by name, and when each next needs the writer."""

    def __init__(
        self,
        store: Store,
        cache: Collection[IncidentKey],
        *,
        get: Get,
        stage: Stage,
        apply: Apply,
        host_problem: HostProblem,
        host_keys: HostKeys,
        held: Set[IncidentKey],
    ) -> None:
        self._store = store
        self._cache = cache  # the keys of the engine's cache of active incidents, read-only
        self._host_keys = host_keys
        self._held = held  # the keys of the cached incidents that are suppressed, read-only
        self._get = get
        self._stage = stage
        self._apply = apply
        self._host_problem = host_problem
        # Silences not yet over, and the Nagios downtimes among them by (host, service), so a
        # DOWNTIMESTART or END finds its own without a scan (thousands arrive at once).
        self._silences: dict[int, Silence] = {}
        self._downtimes: dict[tuple[str, str | None], set[int]] = {}
        # Never rebound: the engine holds this dict to skip `silenced` while it is empty.
        self.active: dict[int, Silence] = {}
        # `active` indexed by host, kept in step one silence at a time, read for every result
        # while any window is open (often).
        self._active_index = SilenceIndex()
        # When each silence next starts or ends: a heap of (due, id) with lazy deletion (an
        # entry counts only while `_silence_sched` still names its time), so a change or a due
        # window costs that silence, never a pass over all of them.
        self._silence_heap: list[tuple[datetime, int]] = []
        self._silence_sched: dict[int, datetime] = {}
        self._next_silence_id = 1
        self._heartbeats: dict[str, Heartbeat] = {}
        # Stale deadlines of open incidents fed by a stream: a heap of (deadline, tiebreak, key)
        # and each key's earliest entry. A result moves a deadline later, which leaves the entry
        # as it is (it is looked at when due and pushed again then), so the heap holds about one
        # entry per incident and a sweep costs the incidents due, not every incident.
        self._stale_heap: list[tuple[datetime, int, IncidentKey]] = []
        self._stale_sched: dict[IncidentKey, datetime] = {}
        self._tiebreak = itertools.count()
        # When the daemon started: silence is counted from then at the earliest, since
        # alertd's own downtime is not the checks' silence.
        self._started: datetime | None = None
        self._rescan = False  # compare every held incident with the silences at the next look
        # Passes over many incidents for windows that opened or closed, a chunk per commit.
        self._sweeps: deque[_Sweep] = deque()

    @property
    def silences(self) -> int:
        return len(self._silences)

    @property
    def heartbeats(self) -> int:
        return len(self._heartbeats)

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

    def begin(self, now: datetime) -> None:
        """The daemon starts at `now`: stale deadlines count from then at the earliest. Called
        before the incidents are loaded (each loaded one goes through `changed`)."""
        if self._started is None:  # not moved by a reload after a failed commit
            self._started = now

    async def load(self, now: datetime) -> None:
        self.begin(now)
        self._next_silence_id = await self._store.max_silence_id() + 1
        self._silences = {s.id: s for s in await self._store.load_silences(now)}
        self._downtimes = {}
        for silence in self._silences.values():
            self._index_downtime(silence)
        self._heartbeats = {h.name: h for h in await self._store.load_heartbeats()}
        # The first commit compares the incidents with the windows open now, which also
        # releases incidents held by a silence that ended while the daemon was down.
        self.active.clear()
        self._active_index = SilenceIndex()
        self._sweeps.clear()  # the rescan and the windows turned again redo every pass
        self._silence_heap = [(now, sid) for sid in self._silences]
        self._silence_sched = dict.fromkeys(self._silences, now)
        self._rescan = True

    async def reload(self, now: datetime) -> None:
        """After a failed commit: memory goes back to what the store holds."""
        handed_out = self._next_silence_id  # ids handlers hold for submissions still queued
        try:
            await self.load(now)
        except Exception:  # keep the memory state; the next commit tries again
            log.exception("watch_reload_failed")
        self._next_silence_id = max(self._next_silence_id, handed_out)

    def due(self) -> datetime | None:
        """When the writer must next wake for a silence, the stale sweep or a heartbeat."""
        if self._sweeps:
            return _AT_ONCE  # a window's pass over many incidents goes on at once
        dues = [d for d in (self._silence_due(), self.stale_due()) if d is not None]
        dues += [h.due for h in self._heartbeats.values()]
        return min(dues, default=None)

    def _silence_due(self) -> datetime | None:
        heap, sched = self._silence_heap, self._silence_sched
        while heap and sched.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # the silence changed or ended since: its new time is queued
        return heap[0][0] if heap else None

    def stale_due(self) -> datetime | None:
        heap, sched = self._stale_heap, self._stale_sched
        while heap and sched.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def stale_rules_changed(self, incidents: Iterable[Incident], policy: LifecyclePolicy) -> None:
        """The lifecycle policy was reloaded: a deadline may have come earlier. `incidents` (a
        chunk of the cache: the engine walks it between commits) get their new deadlines."""
        for incident in incidents:
            self.changed(incident, policy)

    def changed(self, incident: Incident, policy: LifecyclePolicy) -> None:
        """A committed (or loaded) incident: the stale look comes no later than its deadline."""
        deadline = staleness.stale_deadline(incident, policy, self._started)
        if deadline is not None:  # else an entry it may have is dropped when it falls due
            self._stale_look(incident.key, deadline)

    def loaded(
        self, key: IncidentKey, last_seen: datetime, interval: float | None,
        policy: LifecyclePolicy,
    ) -> None:  # fmt: skip
        """`changed` for an open incident fed by a stream, not stale, loaded folded (not
        decoded: alertd.codec `Folded.stream`)."""
        deadline = staleness.silence_deadline(last_seen, interval, policy, self._started)
        if deadline is not None:
            self._stale_look(key, deadline)

    def _stale_look(self, key: IncidentKey, deadline: datetime) -> None:
        queued = self._stale_sched.get(key)
        if queued is None or deadline < queued:
            self._stale_sched[key] = deadline
            heapq.heappush(self._stale_heap, (deadline, next(self._tiebreak), key))

    def fire(self, batch: Batch, now: datetime, policy: LifecyclePolicy) -> None:
        self._sweep_stale(batch, now, policy)
        due: list[int] = []
        heap, sched = self._silence_heap, self._silence_sched
        while heap and heap[0][0] <= now:
            at, sid = heapq.heappop(heap)
            if sched.get(sid) == at:
                del sched[sid]
                due.append(sid)
        self._go_on_sweeps(batch, now)  # before new ones: a window's passes stay in order
        if due or self._rescan:
            self._turn_silences(batch, due, now)
        for hb in list(self._heartbeats.values()):
            if hb.due <= now:
                missed, result = heartbeats.miss(hb, now)
                self._heartbeats[hb.name] = missed
                batch.write.heartbeats.append(missed)
                self._apply(batch, result, now)

    def _sweep_stale(self, batch: Batch, now: datetime, policy: LifecyclePolicy) -> None:
        """Mark stale the open incidents whose stream went quiet: only the heap's entries due
        now are looked at; one whose deadline moved since goes back in at its new time."""
        heap, sched = self._stale_heap, self._stale_sched
        budget = SWEEP_CHUNK  # all going quiet at once: a chunk per commit, the next at once
        while heap and heap[0][0] <= now and budget > 0:
            budget -= 1
            at, _, key = heapq.heappop(heap)
            if sched.get(key) != at:
                continue  # superseded by an earlier entry for the same key
            del sched[key]
            incident = self._get(batch, key)
            if incident is None:
                continue
            deadline = staleness.stale_deadline(incident, policy, self._started)
            if deadline is None:
                continue
            if deadline <= now:
                self._stage(batch, key, incident, staleness.mark_stale(incident, now))
            else:
                sched[key] = deadline
                heapq.heappush(heap, (deadline, next(self._tiebreak), key))

    def apply(self, batch: Batch, item: object, now: datetime) -> None:
        """A silence or heartbeat input (the engine's other inputs never reach here)."""
        if type(item) is SilenceChange:
            self._put_silence(item.silence)
            batch.write.silences.append(item.silence)
            self._turn_silences(batch, [item.silence.id], now)
        elif type(item) is SilenceExpire:
            live = self._silences.get(item.silence_id)
            if live is not None:
                batch.write.silences.append(live.expire(now))
                self._put_silence(live.expire(now))
                self._turn_silences(batch, [live.id], now)
        elif type(item) is Beat:
            before = self._heartbeats.get(item.name)
            if before is None and item.interval is None:
                # Deleted since the handler looked: nothing to beat (it answers 404), and a
                # raise here would fail the commit of everything batched with it.
                return
            after, result = heartbeats.beat(before, item)
            self._heartbeats[item.name] = after
            batch.write.heartbeats.append(after)
            if result is not None:
                self._apply(batch, result, now)
        elif type(item) is HeartbeatRemove and item.name in self._heartbeats:
            del self._heartbeats[item.name]
            batch.write.heartbeat_deletes.append(item.name)
            # Nobody waits for these beats any more: a miss's incident must not stay open
            # (and escalate) for ever. Reported as a change, so its recovery always resolves.
            self._apply(batch, heartbeats.retired(item.name, now), now)

    def downtime(self, batch: Batch, notice: Notice, now: datetime) -> None:
        """A Nagios downtime starts or ends the equivalent silence (one per host/service)."""
        host, service = notice.key
        ids = self._downtimes.get(downtime_key_of(host, service), ())
        mine = [self._silences[sid] for sid in sorted(ids)]
        if notice.kind in _DOWNTIME_ENDS:
            for silence in mine:
                self.apply(batch, SilenceExpire(silence.id), now)
        elif not [s for s in mine if s.is_active(now)]:
            silence = downtime_silence(
                self.new_silence_id(), notice.host, notice.service, notice.author,
                notice.comment, min(notice.at, now),
            )  # fmt: skip
            self.apply(batch, SilenceChange(silence), now)

    def _put_silence(self, silence: Silence) -> None:
        previous = self._silences.get(silence.id)
        if previous is not None:
            self._unindex_downtime(previous)
        self._silences[silence.id] = silence
        self._index_downtime(silence)

    def _index_downtime(self, silence: Silence) -> None:
        key = downtime_key(silence)
        if key is not None:
            self._downtimes.setdefault(key, set()).add(silence.id)

    def _unindex_downtime(self, silence: Silence) -> None:
        key = downtime_key(silence)
        ids = self._downtimes.get(key) if key is not None else None
        if ids is not None and key is not None:
            ids.discard(silence.id)
            if not ids:
                del self._downtimes[key]

    def _turn_silences(self, batch: Batch, ids: Iterable[int], now: datetime) -> None:
        """Silences `ids` changed or fell due: those that opened suppress what they match,
        those that closed release what they held. Costs these silences and the incidents they
        can match (a host's, for a silence naming one host), not every silence or incident."""
        started: list[Silence] = []
        ended: list[Silence] = []
        for sid in sorted(set(ids)):
            silence = self._silences.get(sid)
            was = self.active.get(sid)
            if silence is not None and silence.is_active(now):
                if was != silence:
                    if was is not None:  # changed while open: its old form holds incidents
                        self._active_index.remove(was)
                        ended.append(was)
                    self.active[sid] = silence
                    self._active_index.add(silence)
                    started.append(silence)
            else:
                if was is not None:
                    del self.active[sid]
                    self._active_index.remove(was)
                    ended.append(was)
                if silence is not None and silence.is_expired(now):
                    del self._silences[sid]
                    self._unindex_downtime(silence)
            live = self._silences.get(sid)
            self._schedule(sid, live.next_change(now) if live is not None else None)
        if started or ended or self._rescan:
            self._rematch(batch, started, ended, now)

    def _schedule(self, sid: int, at: datetime | None) -> None:
        if at is None:
            self._silence_sched.pop(sid, None)
        elif self._silence_sched.get(sid) != at:
            self._silence_sched[sid] = at
            heapq.heappush(self._silence_heap, (at, sid))

    def _candidates(self, batch: Batch, silence: Silence) -> list[IncidentKey]:
        """The incidents `silence` may match: its host's, or every incident."""
        host = literal_host(silence)
        if host is not None:
            return list(self._host_keys(batch, host))
        keys = list(self._cache)
        keys += [k for k in batch.staged if k not in self._cache]
        return keys

    def _held_keys(self, batch: Batch, silence: Silence | None) -> list[IncidentKey]:
        """The suppressed incidents `silence` may hold (None: every suppressed incident)."""
        host = None if silence is None else literal_host(silence)
        if host is not None:
            return list(self._host_keys(batch, host))
        held = list(self._held)
        held += [k for k, i in batch.staged.items()
                 if i is not None and i.suppressed and k not in self._held]  # fmt: skip
        return held

    def _rematch(
        self, batch: Batch, started: list[Silence], ended: list[Silence], now: datetime
    ) -> None:
        for silence in started:  # by id: the lowest matching id holds an incident
            self._sweep(batch, _Sweep(silence, self._candidates(batch, silence)), now)
        if self._rescan:
            # At start: any incident held by a window that closed while the daemon was down.
            self._rescan = False
            keys = self._held_keys(batch, None)
        elif len(ended) == 1:
            keys = self._held_keys(batch, ended[0])
        else:
            keys = list(dict.fromkeys(k for e in ended for k in self._held_keys(batch, e)))
        if keys:
            self._sweep(batch, _Sweep(None, keys), now)

    def _sweep(self, batch: Batch, sweep: _Sweep, now: datetime) -> None:
        """Do the first chunk of `sweep` now; the rest waits for the next commits (the writer
        wakes at once while any is left), so a window over every incident of a million never
        stalls the loop in one commit."""
        self._go_on(batch, sweep, now)
        if sweep.done < len(sweep.keys):
            self._sweeps.append(sweep)

    def _go_on_sweeps(self, batch: Batch, now: datetime) -> None:
        while self._sweeps:
            sweep = self._sweeps[0]
            self._go_on(batch, sweep, now)
            if sweep.done < len(sweep.keys):
                return  # this commit's share is done
            self._sweeps.popleft()

    def _go_on(self, batch: Batch, sweep: _Sweep, now: datetime) -> None:
        """One chunk of `sweep`: suppress what its window matches, or release what no open
        window holds any more."""
        silence = sweep.silence
        if silence is not None and self.active.get(silence.id) != silence:
            sweep.done = len(sweep.keys)  # the window closed or changed meanwhile
            return
        chunk = sweep.keys[sweep.done : sweep.done + SWEEP_CHUNK]
        sweep.done += len(chunk)
        for key in chunk:
            incident = self._get(batch, key)
            if incident is None or incident.status is Status.RESOLVED:
                continue
            if silence is not None:
                if not incident.suppressed and silence.matches(
                    incident.host, incident.service, incident.labels
                ):
                    self._stage(batch, key, incident, self._suppress(incident, silence, now))
                continue
            if not incident.suppressed:
                continue
            held_by = silence_id(incident.suppressed_reason)
            if held_by is None:
                continue
            live = self.active.get(held_by)
            if live is None or not live.matches(incident.host, incident.service,
                                                incident.labels):  # fmt: skip
                self._stage(batch, key, incident, self.release(batch, incident))

    def silenced(self, transition: Transition, now: datetime) -> Transition:
        """`transition`, with its incident suppressed if an open window matches it."""
        incident = transition.incident
        if incident is None or incident.suppressed or incident.status is Status.RESOLVED:
            return transition
        silence = self._active_index.first_match(incident.host, incident.service,
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

    def release(self, batch: Batch, incident: Incident) -> Transition:
        """Lift a host's or a silence's hold, unless another still applies."""
        now = batch.now
        silence = self._active_index.first_match(incident.host, incident.service,
                              incident.labels)  # fmt: skip
        if silence is not None:
            return self._suppress(incident, silence, now)
        host = None if incident.service is None else self._host_problem(batch, incident.host)
        if host is not None:
            reason = f"host {host.host} is {host.check_state.value} (incident {host.id})"
            return lifecycle.suppress(incident, reason, now)
        return lifecycle.unsuppress(incident, now)
