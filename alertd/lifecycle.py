"""The incident lifecycle as pure functions: (incident, input, policy, now) -> Transition.

pending -> open -> recovering -> resolved, with reopening, Nagios soft/hard emulation, flap
detection, priority and absorption by the host's incident (docs/architecture.md, "The incident
lifecycle"; docs/protocols.md 5). No I/O and no clock: time arrives as `now` (aware UTC), and
timers are due times stored on the incident that `tick` fires and `due_at` reports to the
scheduler. When a silent check's incident turns stale, and its interval, are alertd.staleness's.

A result is a stream or a change report (`Reporting`): only streams are counted for flap
detection and give a check its interval; a recovery reported as a change is resolved after the
hold whatever the flapping flag says. A result older than the newest one applied for its key is
late: recorded as an event, applied to nothing.

`apply` is on the ingest hot path, so each call builds at most one new Incident.
"""

from __future__ import annotations

from datetime import datetime
from sys import intern
from typing import Any

from alertd.flapping import next_flapping, percent_state_change, record
from alertd.model import (
    CheckResult,
    CheckState,
    Event,
    EventKind,
    Incident,
    Level,
    Priority,
    Reporting,
    StateChange,
    StateType,
    Status,
    Transition,
)
from alertd.policy import LifecyclePolicy
from alertd.priority import evaluate

# Staleness is alertd.staleness's: every update observes the interval, and the stale helpers
# stay importable from here.
from alertd.staleness import mark_stale as mark_stale
from alertd.staleness import observed_interval as _observed
from alertd.staleness import stale_deadline as stale_deadline

# Longest check output copied into an event's detail; the incident keeps the full text.
OUTPUT_LIMIT = 200

_HARD, _SOFT = StateType.HARD, StateType.SOFT
_PENDING, _OPEN = Status.PENDING, Status.OPEN
_RECOVERING, _RESOLVED = Status.RECOVERING, Status.RESOLVED
_STREAM = Reporting.STREAM
_NOTHING = Transition(None)
_DISCARDED = Transition(None, discarded=True)

Detail = dict[str, Any]

# Positions in Incident of the fields a plain repeat changes (`_repeat`).
_FIELD = {name: position for position, name in enumerate(Incident._fields)}
_OCCURRENCES, _LAST_SEEN, _ATTEMPT = _FIELD["occurrences"], _FIELD["last_seen"], _FIELD["attempt"]
_LAST_OUTPUT, _LONG_OUTPUT = _FIELD["last_output"], _FIELD["long_output"]
_PERFDATA, _LABELS, _STREAM_SEEN = _FIELD["perfdata"], _FIELD["labels"], _FIELD["stream_seen"]
_INTERVAL, _FLAP_HISTORY = _FIELD["interval"], _FIELD["flap_history"]
_PERCENT_STATE_CHANGE = _FIELD["percent_state_change"]
# A member's text by dict: `.value` goes through Enum's descriptor (~0.5 us each in 3.11), and
# an opened incident's detail takes five. Plain str values, as `.value` gives (equal members of
# different enums share one text, so one map serves them all).
_TEXT: dict[str, str] = {
    m: m.value for enum in (CheckState, StateType, Priority, Level) for m in enum
}
Changes = dict[str, Any]


# Every new incident's flap buffer starts from one OK: one shared tuple each, not 100,000.
_FLAP_START_HOST = (CheckState.UP,)
_FLAP_START_SERVICE = (CheckState.OK,)


def apply(
    incident: Incident | None,
    result: CheckResult,
    policy: LifecyclePolicy,
    now: datetime,
    *,
    new_id: int,
    host_problem: Incident | None = None,
) -> Transition:
    """Apply one check result to the incident of its key (None if the key has none).

    `new_id` is used only when a new incident is created. `host_problem` is the host's open
    DOWN/UNREACHABLE incident: a service incident this result creates or updates is suppressed
    (announced once) and its problem state forced HARD, as Nagios does while the host is down.

    Raises ValueError if the policy gives no urgency for a problem state (see `priority`).
    """
    if incident is None:
        if result.state.is_ok:
            return _NOTHING
        return _create(result, policy, now, new_id, host_problem)
    if result.timestamp < incident.last_seen:
        return _late(incident, result, now)
    if incident.stale:
        fresh = incident._replace(stale=False)
        after = apply(fresh, result, policy, now, new_id=new_id, host_problem=host_problem)
        return _freshened(after, incident, result, now)
    if _same_check_again(incident, result):
        if result.reporting is _STREAM and incident.stream_seen != result.timestamp:
            return _stream_echo(incident, result, policy, now)
        return Transition(incident)
    if host_problem is None and _is_plain_repeat(incident, result, policy):
        return _repeat(incident, result, now)
    if result.state.is_ok:
        return _ok(incident, result, policy, now, host_problem)
    if incident.status is _RESOLVED and not _may_reopen(incident, now):
        return _create(result, policy, now, new_id, host_problem)
    return _problem(incident, result, policy, now, host_problem)


def _same_check_again(incident: Incident, result: CheckResult) -> bool:
    """One Nagios check delivered twice (by the OCSP command and by its notification, both
    stamped with the check's time): the second changes nothing. Only for Nagios, whose
    results carry the check's own time; other sources stamp results on receipt."""
    return (
        result.source == "nagios"
        and result.timestamp == incident.last_seen
        and result.state is incident.check_state
        and (result.state_type is None or result.state_type is incident.state_type)
        and (result.attempt is None or result.attempt == incident.attempt)
        and incident.status is not _RESOLVED
    )


def _late(incident: Incident, result: CheckResult, now: datetime) -> Transition:
    """A result older than the newest one applied for its key (a spool, a retry, two paths
    racing): it is history, not news. Recorded in the audit trail, applied to nothing."""
    detail: Detail = {
        "state": result.state.value,
        "timestamp": result.timestamp.isoformat(),
        "newest": incident.last_seen.isoformat(),
        "source": result.source,
        "output": result.output[:OUTPUT_LIMIT],
    }
    return Transition(incident, (Event(EventKind.LATE, now, detail),))


def _stream_echo(
    incident: Incident, result: CheckResult, policy: LifecyclePolicy, now: datetime
) -> Transition:
    """The stream's copy of a check whose notification came first (Nagios runs OCSP and the
    notification as separate jobs): the state is applied already, so only what a stream adds
    is taken, its place in the flap history and the check's rhythm."""
    changes: Changes = {}
    _stream(incident, result, changes)
    events: list[Event] = []
    if result.state.is_ok or (result.state_type is not _SOFT and incident.state_type is _HARD):
        _record_flap(incident, result.state, policy, now, changes, events)
    return Transition(incident._replace(**changes), tuple(events))


def _is_plain_repeat(incident: Incident, result: CheckResult, policy: LifecyclePolicy) -> bool:
    """The commonest input: the same HARD problem again on an open incident, changing nothing
    but counters and output (no state, priority, flap or suppression change is possible)."""
    state = result.state
    if not (
        incident.status is _OPEN
        and state is incident.check_state
        and incident.state_type is _HARD
        and result.state_type is not _SOFT
        and state is incident.reason.state
        and not incident.flapping
        and not incident.stale
    ):
        return False
    if result.reporting is not _STREAM:
        return True  # change reports are not counted for flap detection
    # Recording the newest state again only ages the buffer's changes: the percentage can only
    # fall, so flapping cannot start (below the start threshold) and `_repeat` records it.
    history = incident.flap_history
    pct = incident.percent_state_change
    return bool(history) and history[-1] is state and pct < policy.flap_high


def _repeat(incident: Incident, result: CheckResult, now: datetime) -> Transition:
    """`_problem` for a plain repeat, without its general bookkeeping (hot path: one new
    Incident, built in place)."""
    attempt = incident.attempt + 1 if result.attempt is None else result.attempt
    values = list(incident)
    values[_OCCURRENCES] = incident.occurrences + 1
    values[_LAST_SEEN] = result.timestamp
    values[_ATTEMPT] = attempt
    values[_LAST_OUTPUT] = result.output
    values[_LONG_OUTPUT] = result.long_output
    values[_PERFDATA] = result.perfdata
    values[_LABELS] = result.labels or incident.labels
    if result.reporting is _STREAM:
        values[_STREAM_SEEN] = result.timestamp
        values[_INTERVAL] = _observed(incident, result)
        if incident.percent_state_change != 0.0:  # ages the buffer's changes
            history = record(incident.flap_history, result.state)
            values[_FLAP_HISTORY] = history
            values[_PERCENT_STATE_CHANGE] = percent_state_change(history)
    # Built from a list rather than with `_replace`: NamedTuple's `_replace` maps a dict pop
    # over all 53 fields, and this runs once per repeat (the storm's commonest input).
    repeated = tuple.__new__(Incident, values)
    # No detail: the engine folds a commit's repeats into one event with their count. One
    # event object serves every repeat applied at the same `now` (a commit's thousands; it is
    # immutable and only read), instead of a new frozen dataclass each (~0.9 us).
    global _dedup
    at, events = _dedup
    if at is not now:
        events = (Event(EventKind.DEDUPLICATED, now),)
        _dedup = (now, events)  # one tuple: the time and its event always match
    return Transition(repeated, events, False, True)  # positional: repeat=True


_dedup: tuple[datetime | None, tuple[Event, ...]] = (None, ())


def _stream(incident: Incident, result: CheckResult, changes: Changes) -> None:
    """What a stream result tells beyond its state, written into `changes`: when the stream was
    last heard, and the check's interval (stated, or observed between stream results)."""
    if result.reporting is _STREAM:
        changes["stream_seen"] = result.timestamp
        changes["interval"] = _observed(incident, result)


def tick(incident: Incident, policy: LifecyclePolicy, now: datetime) -> Transition:
    """Fire the incident's due timer: a recovery hold that has ended resolves the incident.

    A hold that fell due long ago (the daemon was down) resolves on the first tick. An incident
    whose stream says it flaps is not resolved (its stream goes on and settles it); a recovery
    reported as a change is resolved whatever the flag says, since no further result may come.
    Otherwise nothing is due and the incident comes back unchanged.
    """
    due = incident.recovery_due
    if incident.status is not _RECOVERING or due is None or now < due:
        return Transition(incident)
    if _held_by_flapping(incident):
        return Transition(incident)
    reopen_until = now + policy.reopen_window
    detail: Detail = {
        "recovering_since": _iso(incident.recovering_since),
        "recovery_due": due.isoformat(),
        "reopen_until": reopen_until.isoformat(),
    }
    resolved = incident._replace(
        status=_RESOLVED,
        resolved_at=now,
        recovery_due=None,
        reopen_until=reopen_until,
        stale=False,  # stored before staleness stopped at recovery; resolved is not stale
        **_NO_ACK,
    )
    # A resolved incident is acknowledged no more: if it reopens, someone must look again.
    return Transition(resolved, (Event(EventKind.RESOLVED, now, detail),))


def due_at(incident: Incident) -> datetime | None:
    """When the scheduler should next look at this incident, or None.

    For a recovering incident, the end of its recovery hold (`tick` then resolves it); none
    while its stream says it flaps, since `tick` would not act. For a resolved one, the end of
    its reopen window, when `is_active` turns False and the engine may drop it from its cache.
    """
    status = incident.status
    if status is _RECOVERING:
        return None if _held_by_flapping(incident) else incident.recovery_due
    if status is _RESOLVED:
        return incident.reopen_until
    return None


def _held_by_flapping(incident: Incident) -> bool:
    """Whether flapping keeps the incident from resolving: only while its newest result came
    from a stream, which goes on reporting and ends the flapping. A change-report source may
    never send another result, so its recovery is not held (docs/architecture.md)."""
    return incident.flapping and incident.fed_by_stream


def _freshened(
    transition: Transition, before: Incident, result: CheckResult, now: datetime
) -> Transition:
    """`transition` of a stale incident, announcing that data is back (if it is the same one)."""
    after = transition.incident
    if after is None or after.id != before.id:
        return transition
    detail: Detail = {
        "silent_since": before.last_seen.isoformat(),
        "state": result.state.value,
        "output": result.output[:OUTPUT_LIMIT],
    }
    fresh = Event(EventKind.FRESH, now, detail)
    return Transition(after, (fresh, *transition.events), transition.discarded)


def suppress(incident: Incident, reason: str, now: datetime) -> Transition:
    """Mark the incident suppressed for `reason`; a no-op if already suppressed for it."""
    if incident.suppressed and incident.suppressed_reason == reason:
        return Transition(incident)
    detail: Detail = {"reason": reason, "replaces": incident.suppressed_reason}
    suppressed = incident._replace(suppressed=True, suppressed_reason=reason)
    return Transition(suppressed, (Event(EventKind.SUPPRESSED, now, detail),))


def unsuppress(incident: Incident, now: datetime) -> Transition:
    """Lift the incident's suppression; a no-op if it is not suppressed."""
    if not incident.suppressed:
        return Transition(incident)
    detail: Detail = {"reason": incident.suppressed_reason}
    lifted = incident._replace(suppressed=False, suppressed_reason=None)
    return Transition(lifted, (Event(EventKind.UNSUPPRESSED, now, detail),))


def is_active(incident: Incident, now: datetime) -> bool:
    """Whether the incident still belongs in the engine's cache: unresolved, or may reopen."""
    if incident.status is not _RESOLVED:
        return True
    return _may_reopen(incident, now)


def _may_reopen(incident: Incident, now: datetime) -> bool:
    until = incident.reopen_until
    return until is not None and now < until


def _create(
    result: CheckResult,
    policy: LifecyclePolicy,
    now: datetime,
    new_id: int,
    host_problem: Incident | None,
) -> Transition:
    """A new incident for a non-OK result on a key without a live incident."""
    state = result.state
    attempt = 1 if result.attempt is None else result.attempt
    suppressed_reason = _absorbed_reason(host_problem, result)
    if suppressed_reason is not None:
        attempt = _forced_attempt(attempt, result)
    hard = suppressed_reason is not None or _confirmed(result, attempt, policy)
    state_type = _HARD if hard else _SOFT
    priority, reason = evaluate(result.host, result.service, result.labels, state, policy.priority)
    incident = Incident(
        id=new_id,
        # Interned: a host's services, and a service name across hosts, share one string for
        # as long as any live incident holds it (100,000 incidents: ~10 MiB less).
        host=intern(result.host),
        service=None if result.service is None else intern(result.service),
        status=_OPEN if hard else _PENDING,
        check_state=state,
        state_type=state_type,
        priority=priority,
        reason=reason,
        first_seen=result.timestamp,
        last_seen=result.timestamp,
        attempt=attempt,
        last_hard_state=state if hard else None,
        last_output=result.output,
        long_output=result.long_output,
        perfdata=result.perfdata,
        labels=result.labels,
        opened_at=now if hard else None,
        # The key had no incident: it was OK, as Nagios's buffer starts (all OK). A HARD state
        # from a stream is recorded after it, so the OK -> problem change counts, as in Nagios;
        # SOFT states and change reports are not recorded.
        flap_history=_FLAP_START_HOST if result.service is None else _FLAP_START_SERVICE,
        suppressed=suppressed_reason is not None,
        suppressed_reason=suppressed_reason,
        history=_history((), StateChange(result.timestamp, state, state_type), policy),
        source=result.source,
    )
    events: list[Event] = []
    if result.reporting is _STREAM:
        changes: Changes = {}
        _stream(incident, result, changes)
        if hard:
            _record_flap(incident, state, policy, now, changes, events)
        incident = incident._replace(**changes)
    if hard:
        first = Event(EventKind.OPENED, now, _opened_detail(incident))
    else:
        first = Event(EventKind.STATE_CHANGED, now, _state_detail(None, incident))
    events.insert(0, first)
    if suppressed_reason is not None:
        events.append(_suppressed_event(suppressed_reason, now))
    return Transition(incident, tuple(events))


def _problem(
    incident: Incident,
    result: CheckResult,
    policy: LifecyclePolicy,
    now: datetime,
    host_problem: Incident | None,
) -> Transition:
    """A non-OK result on a pending, open, recovering or reopenable resolved incident."""
    state = result.state
    status = incident.status
    previous = incident.check_state
    attempt = _next_attempt(incident, result)
    absorbed_reason = _absorbed_reason(host_problem, result)
    if absorbed_reason is not None:
        attempt = _forced_attempt(attempt, result)
    # Once a problem is confirmed it stays HARD: a HARD problem changing to another non-OK
    # state stays HARD (protocols 5.1), and a recurrence within the recovery hold continues
    # the same ticket (docs/architecture.md).
    hard = absorbed_reason is not None or status is _OPEN or status is _RECOVERING
    hard = hard or _confirmed(result, attempt, policy)
    if status is _RESOLVED and not hard:
        return _resolved_attempt(incident, result, policy, attempt)
    state_type = _HARD if hard else _SOFT
    changes: Changes = {
        "check_state": state,
        "state_type": state_type,
        "last_seen": result.timestamp,
        "occurrences": incident.occurrences + 1,
        "attempt": attempt,
        "last_output": result.output,
        "long_output": result.long_output,
        "perfdata": result.perfdata,
        "labels": result.labels or incident.labels,
    }
    _stream(incident, result, changes)
    kind = _enter_problem(incident, state, hard, now, changes)
    priority, reason = incident.priority, incident.reason
    if state is not reason.state:
        priority, reason = evaluate(
            incident.host, incident.service, changes["labels"], state, policy.priority
        )
        changes["priority"], changes["reason"] = priority, reason
    events: list[Event] = []
    if hard:
        changes["last_hard_state"] = state
        # Nagios records HARD states (and recoveries) only: a problem the source calls SOFT is
        # not recorded, even where alertd keeps a recovering incident's recurrence HARD.
        if result.reporting is _STREAM and result.state_type is not _SOFT:
            _record_flap(incident, state, policy, now, changes, events)
    if state is not previous or state_type is not incident.state_type:
        changes["history"] = _history(
            incident.history, StateChange(result.timestamp, state, state_type), policy
        )
    if absorbed_reason is not None and not incident.suppressed:
        changes["suppressed"], changes["suppressed_reason"] = True, absorbed_reason
        events.append(_suppressed_event(absorbed_reason, now))
    if state is not previous:
        _end_ack(incident, state, now, changes, events)
    updated = incident._replace(**changes)
    events.insert(0, _problem_event(kind, incident, updated, now))
    # A pending incident has no ticket yet: its first priority travels with `opened`.
    if priority is not incident.priority and status is not _PENDING:
        reprioritised = Event(EventKind.PRIORITY_CHANGED, now, _priority_detail(incident, updated))
        events.insert(1, reprioritised)
    return Transition(updated, tuple(events))


def _enter_problem(
    incident: Incident, state: CheckState, hard: bool, now: datetime, changes: Changes
) -> EventKind:
    """The status move a non-OK result causes, written into `changes`; returns its event kind."""
    status = incident.status
    if status is _PENDING:
        if hard:
            changes["status"], changes["opened_at"] = _OPEN, now
            return EventKind.OPENED
    elif status is _RECOVERING:
        changes["status"] = _OPEN
        changes["recovering_since"] = changes["recovery_due"] = None
        return EventKind.RECURRED
    elif status is _RESOLVED:
        changes["status"], changes["reopen_count"] = _OPEN, incident.reopen_count + 1
        changes["resolved_at"] = changes["reopen_until"] = changes["recovering_since"] = None
        return EventKind.REOPENED
    if state is incident.check_state:
        return EventKind.DEDUPLICATED
    return EventKind.STATE_CHANGED


def _resolved_attempt(
    incident: Incident, result: CheckResult, policy: LifecyclePolicy, attempt: int
) -> Transition:
    """A SOFT problem on a resolved incident: it stays resolved, but the attempt counts."""
    state = result.state
    changes: Changes = {
        "check_state": state,
        "state_type": _SOFT,
        "attempt": attempt,
        "last_seen": result.timestamp,
        "last_output": result.output,
        "long_output": result.long_output,
        "perfdata": result.perfdata,
    }
    _stream(incident, result, changes)
    if state is not incident.check_state or incident.state_type is not _SOFT:
        changes["history"] = _history(
            incident.history, StateChange(result.timestamp, state, _SOFT), policy
        )
    return Transition(incident._replace(**changes))


def _ok(
    incident: Incident,
    result: CheckResult,
    policy: LifecyclePolicy,
    now: datetime,
    host_problem: Incident | None,
) -> Transition:
    """An OK result on an existing incident: soft recovery, recovery hold, or nothing."""
    status = incident.status
    if status is _PENDING:
        # A soft recovery: the problem was never confirmed, so no incident remains.
        return _DISCARDED
    state = result.state
    state_type = result.state_type or _HARD
    if status is _RESOLVED:
        return _resolved_ok(incident, result, policy, now, state_type)
    changes: Changes = {
        "check_state": state,
        "state_type": state_type,
        "attempt": 1,
        "last_seen": result.timestamp,
        "last_output": result.output,
        "long_output": result.long_output,
        "perfdata": result.perfdata,
    }
    _stream(incident, result, changes)
    if state_type is _HARD:
        changes["last_hard_state"] = state
    if state is not incident.check_state or state_type is not incident.state_type:
        changes["history"] = _history(
            incident.history, StateChange(result.timestamp, state, state_type), policy
        )
    events: list[Event] = []
    if result.reporting is _STREAM:
        flapping = _record_flap(incident, state, policy, now, changes, events)
    else:
        flapping = False  # a change report may be the last word: its recovery is not held
    # A flapping incident stays open through the OK swings of its stream; it starts recovering
    # once the flapping stops (on this result or a later one).
    if status is _OPEN and not flapping:
        due = now + policy.recovery_hold
        changes["status"] = _RECOVERING
        changes["recovering_since"], changes["recovery_due"] = now, due
        detail: Detail = {
            "state": state.value,
            "recovery_due": due.isoformat(),
            "output": result.output[:OUTPUT_LIMIT],
        }
        events.append(Event(EventKind.RECOVERING, now, detail))
    absorbed_reason = _absorbed_reason(host_problem, result)
    if absorbed_reason is not None and not incident.suppressed:
        changes["suppressed"], changes["suppressed_reason"] = True, absorbed_reason
        events.append(_suppressed_event(absorbed_reason, now))
    if state is not incident.check_state:
        _end_ack(incident, state, now, changes, events)
    return Transition(incident._replace(**changes), tuple(events))


def _resolved_ok(
    incident: Incident,
    result: CheckResult,
    policy: LifecyclePolicy,
    now: datetime,
    state_type: StateType,
) -> Transition:
    """OK on a resolved incident: no change, beyond ending a counted SOFT streak.

    The time is kept (`last_seen`: a late result is measured against it), and a stream's OK is
    still recorded for flap detection, so a reopening much later is measured on a buffer that
    has aged, as Nagios's is.
    """
    state = result.state
    changes: Changes = {"last_seen": result.timestamp}
    _stream(incident, result, changes)
    events: list[Event] = []
    if result.reporting is _STREAM:
        _record_flap(incident, state, policy, now, changes, events)
    if state is not incident.check_state or state_type is not incident.state_type:
        changes["check_state"], changes["state_type"], changes["attempt"] = state, state_type, 1
        changes["history"] = _history(
            incident.history, StateChange(result.timestamp, state, state_type), policy
        )
    return Transition(incident._replace(**changes), tuple(events))


_NO_ACK: Changes = {
    "acknowledged": False,
    "ack_author": None,
    "ack_comment": None,
    "ack_sticky": False,
    "ack_source": None,
}


def _end_ack(
    incident: Incident, state: CheckState, now: datetime, changes: Changes, events: list[Event]
) -> None:
    """Nagios's rule for acks that came from Nagios: a normal ack ends on any change of state,
    a sticky one when the check is OK again. Other acks last until the incident resolves."""
    if not incident.acknowledged or incident.ack_source != "nagios":
        return
    if incident.ack_sticky and not state.is_ok:
        return
    changes.update(_NO_ACK)
    detail: Detail = {"reason": "state changed", "state": state.value}
    events.append(Event(EventKind.UNACKNOWLEDGED, now, detail))


def _record_flap(
    incident: Incident,
    state: CheckState,
    policy: LifecyclePolicy,
    now: datetime,
    changes: Changes,
    events: list[Event],
) -> bool:
    """Record `state` for flap detection into `changes` and `events`; returns the new flag."""
    history = incident.flap_history
    pct = incident.percent_state_change
    # When every recorded state equals `state` (0% and the newest is `state`), appending it
    # changes nothing the measure can see, since a short buffer counts as padded with its
    # oldest state: skip the copy, which keeps a steady problem's updates cheap.
    if pct != 0.0 or not history or history[-1] is not state:
        history = record(history, state)
        pct = percent_state_change(history)
        changes["flap_history"], changes["percent_state_change"] = history, pct
    was_flapping = incident.flapping
    flapping = next_flapping(was_flapping, pct, policy.flap_low, policy.flap_high)
    if flapping is not was_flapping:
        changes["flapping"] = flapping
        kind = EventKind.FLAPPING_STARTED if flapping else EventKind.FLAPPING_STOPPED
        detail: Detail = {"percent": round(pct, 2), "state": state.value}
        detail["threshold"] = policy.flap_high if flapping else policy.flap_low
        events.append(Event(kind, now, detail))
    return flapping


def _next_attempt(incident: Incident, result: CheckResult) -> int:
    """The source's attempt if it sent one, else Nagios's counter: +1 within a non-OK streak."""
    if result.attempt is not None:
        return result.attempt
    return 1 if incident.check_state.is_ok else incident.attempt + 1


def _confirmed(result: CheckResult, attempt: int, policy: LifecyclePolicy) -> bool:
    """Whether a non-OK result is HARD: the source's word, else attempts against the maximum."""
    if result.state_type is not None:
        return result.state_type is _HARD
    if result.max_attempts is not None:
        return attempt >= result.max_attempts
    return attempt >= policy.open_after


def _forced_attempt(attempt: int, result: CheckResult) -> int:
    # Nagios forces a service to HARD with attempt = max_attempts while its host is down.
    maximum = result.max_attempts
    return attempt if maximum is None or attempt >= maximum else maximum


def _history(
    history: tuple[StateChange, ...], change: StateChange, policy: LifecyclePolicy
) -> tuple[StateChange, ...]:
    limit = policy.history_limit
    if limit <= 0:
        return ()
    if not history:
        # A new incident's history: the results of one request share their time of arrival,
        # so a storm's new incidents mostly share one (the last) immutable tuple.
        last = _FIRST_HISTORY[0]
        if last and last[0] == change:
            return last
        _FIRST_HISTORY[0] = first = (change,)
        return first
    if len(history) < limit:
        return (*history, change)
    return (*history[len(history) - limit + 1 :], change)


# The last new incident's history (see `_history`): a memo of an immutable value.
_FIRST_HISTORY: list[tuple[StateChange, ...]] = [()]


def _absorbed_reason(host_problem: Incident | None, result: CheckResult) -> str | None:
    """Why a service result is absorbed by its host's problem; None when it is not."""
    if host_problem is None or result.service is None:
        return None
    state = host_problem.check_state.value
    return f"host {host_problem.host} is {state} (incident {host_problem.id})"


def _suppressed_event(reason: str, now: datetime) -> Event:
    return Event(EventKind.SUPPRESSED, now, {"reason": reason})


def _problem_event(kind: EventKind, before: Incident, after: Incident, now: datetime) -> Event:
    if kind is EventKind.OPENED:
        return Event(kind, now, _opened_detail(after))
    if kind is EventKind.DEDUPLICATED:
        return Event(kind, now)  # folded into a counted event by the engine, like `_repeat`
    if kind is EventKind.STATE_CHANGED:
        return Event(kind, now, _state_detail(before.check_state, after))
    detail: Detail = _state_detail(before.check_state, after)
    if kind is EventKind.REOPENED:
        # It was resolved, so it comes from OK (a SOFT attempt meanwhile left check_state at
        # the problem, which would read "from CRITICAL to CRITICAL").
        detail["from"] = (CheckState.OK if after.service else CheckState.UP).value
        detail["reopen_count"] = after.reopen_count
    return Event(kind, now, detail)


def _state_detail(previous: CheckState | None, incident: Incident) -> Detail:
    return {
        "from": None if previous is None else _TEXT[previous],
        "to": _TEXT[incident.check_state],
        "state_type": _TEXT[incident.state_type],
        "attempt": incident.attempt,
        "output": incident.last_output[:OUTPUT_LIMIT],
    }


def _opened_detail(incident: Incident) -> Detail:
    reason = incident.reason
    return {
        "state": _TEXT[incident.check_state],
        "state_type": _TEXT[incident.state_type],
        "attempt": incident.attempt,
        "priority": _TEXT[incident.priority],
        "impact": _TEXT[reason.impact],
        "urgency": _TEXT[reason.urgency],
        "rule": reason.rule,
        "output": incident.last_output[:OUTPUT_LIMIT],
    }


def _priority_detail(before: Incident, after: Incident) -> Detail:
    reason = after.reason
    return {
        "from": before.priority.value,
        "to": after.priority.value,
        "impact": reason.impact.value,
        "urgency": reason.urgency.value,
        "rule": reason.rule,
        "state": reason.state.value,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
