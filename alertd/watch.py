"""Maintenance windows (silences), heartbeats and the stale sweep: the writer's other timers.

The engine owns one `Watch` and calls it at fixed points of a commit: `fire` with the timers,
`apply` and `downtime` for their inputs, `silenced` on a result's transition while a window is
open (`active`), `release` when a host's hold lifts. Its state is small, kept in memory and
written through the engine's batch; it stages incidents only through the hooks the engine
passes in, so it never commits and never holds the write connection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    downtime_silence,
    first_match,
    is_downtime_of,
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

log: structlog.typing.FilteringBoundLogger = structlog.get_logger(__name__)

# "Look now": earlier than any time the writer can be asked about.
_AT_ONCE = datetime.min.replace(tzinfo=UTC)


class Watch:
    """Silences not yet over, heartbeats by name, and when each next needs the writer."""

    def __init__(
        self,
        store: Store,
        cache: Mapping[IncidentKey, Incident],
        *,
        get: Get,
        stage: Stage,
        apply: Apply,
        host_problem: HostProblem,
    ) -> None:
        self._store = store
        self._cache = cache  # the engine's cache of active incidents, read-only here
        self._get = get
        self._stage = stage
        self._apply = apply
        self._host_problem = host_problem
        # Silences not yet over, the active ones, and when that set next changes (None: never;
        # the first commit looks at once). Heartbeats by name. Few of each: plain dicts.
        self._silences: dict[int, Silence] = {}
        # Never rebound: the engine holds this dict to skip `silenced` while it is empty.
        self.active: dict[int, Silence] = {}
        # `active` indexed by host, rebuilt whenever the set of open windows changes (rare),
        # read for every result while any window is open (often).
        self._active_index = SilenceIndex()
        self._silence_due: datetime | None = None
        self._next_silence_id = 1
        self._heartbeats: dict[str, Heartbeat] = {}
        # The earliest stale deadline of an open incident (None: none can turn stale), and
        # when the daemon started: silence is counted from then at the earliest, since
        # alertd's own downtime is not the checks' silence.
        self._stale_due: datetime | None = None
        self._started: datetime | None = None
        self._rescan = False  # compare every incident with the silences at the next look

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

    async def load(self, now: datetime) -> None:
        self._next_silence_id = await self._store.max_silence_id() + 1
        self._silences = {s.id: s for s in await self._store.load_silences(now)}
        self._heartbeats = {h.name: h for h in await self._store.load_heartbeats()}
        # The first commit compares every incident with the windows open now, which also
        # releases incidents held by a silence that ended while the daemon was down.
        self.active.clear()
        self._active_index = SilenceIndex()
        self._silence_due = self._stale_due = now
        if self._started is None:  # not moved by a reload after a failed commit
            self._started = now
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
        dues = [d for d in (self._silence_due, self._stale_due) if d is not None]
        dues += [h.due for h in self._heartbeats.values()]
        return min(dues, default=None)

    def stale_rules_changed(self) -> None:
        """The lifecycle policy was reloaded: every deadline may have moved; look again."""
        self._stale_due = _AT_ONCE

    def changed(self, incident: Incident, policy: LifecyclePolicy) -> None:
        """A committed incident: the stale look comes no later than its deadline."""
        deadline = staleness.stale_deadline(incident, policy, self._started)
        if deadline is not None and (self._stale_due is None or deadline < self._stale_due):
            self._stale_due = deadline

    def fire(self, batch: Batch, now: datetime, policy: LifecyclePolicy) -> None:
        if self._stale_due is not None and self._stale_due <= now:
            self._sweep_stale(batch, now, policy)
        if self._silence_due is not None and self._silence_due <= now:
            self._turn_silences(batch, now)
        for hb in list(self._heartbeats.values()):
            if hb.due <= now:
                missed, result = heartbeats.miss(hb, now)
                self._heartbeats[hb.name] = missed
                batch.write.heartbeats.append(missed)
                self._apply(batch, result, now)

    def _sweep_stale(self, batch: Batch, now: datetime, policy: LifecyclePolicy) -> None:
        """Mark stale every open incident whose stream went quiet; the next look is at the
        earliest deadline left (`changed` brings it forward for incidents committed since)."""
        upcoming: datetime | None = None
        for key in list(self._cache):
            incident = self._get(batch, key)
            if incident is None:
                continue
            deadline = staleness.stale_deadline(incident, policy, self._started)
            if deadline is None:
                continue
            if deadline <= now:
                self._stage(batch, key, incident, staleness.mark_stale(incident, now))
            elif upcoming is None or deadline < upcoming:
                upcoming = deadline
        self._stale_due = upcoming

    def apply(self, batch: Batch, item: object, now: datetime) -> None:
        """A silence or heartbeat input (the engine's other inputs never reach here)."""
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
        mine = [s for s in self._silences.values() if is_downtime_of(s, host, service)]
        if notice.kind in _DOWNTIME_ENDS:
            for silence in mine:
                self.apply(batch, SilenceExpire(silence.id), now)
        elif not [s for s in mine if s.is_active(now)]:
            silence = downtime_silence(
                self.new_silence_id(), notice.host, notice.service, notice.author,
                notice.comment, min(notice.at, now),
            )  # fmt: skip
            self.apply(batch, SilenceChange(silence), now)

    def _turn_silences(self, batch: Batch, now: datetime) -> None:
        """Windows that opened suppress what they match; those that closed release it."""
        started: list[Silence] = []
        ended = False
        for sid, silence in list(self._silences.items()):
            if silence.is_active(now):
                if self.active.get(sid) != silence:
                    started.append(silence)
                self.active[sid] = silence
            else:
                ended |= self.active.pop(sid, None) is not None
                if silence.is_expired(now):
                    del self._silences[sid]
        for sid in [sid for sid in self.active if sid not in self._silences]:
            ended |= self.active.pop(sid, None) is not None
        if started or ended:
            self._active_index = SilenceIndex(self.active.values())
        changes = [s.next_change(now) for s in self._silences.values()]
        self._silence_due = min((c for c in changes if c is not None), default=None)
        if started or ended or self._rescan:
            self._rescan = False
            self._rematch(batch, started, now)

    def _rematch(self, batch: Batch, started: list[Silence], now: datetime) -> None:
        if started:
            keys = list(self._cache.keys() | batch.staged.keys())
        else:
            # Only windows that closed: just the incidents a window holds can change (a start
            # with 100,000 incidents and no window would otherwise look at every one).
            held = {k for k, i in self._cache.items() if i.suppressed}
            held |= {k for k, i in batch.staged.items() if i is not None and i.suppressed}
            keys = list(held)
        for key in keys:
            incident = self._get(batch, key)
            if incident is None or incident.status is Status.RESOLVED:
                continue
            if not incident.suppressed:
                silence = first_match(started, incident.host, incident.service, incident.labels)
                if silence is not None:
                    self._stage(batch, key, incident, self._suppress(incident, silence, now))
                continue
            held_by = silence_id(incident.suppressed_reason)
            if held_by is not None and held_by not in self.active:
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
