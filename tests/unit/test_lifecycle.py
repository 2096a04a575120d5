"""Tests of alertd.lifecycle: the incident lifecycle as pure functions, driven by hand-set times."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from alertd.lifecycle import due_at, is_active, suppress, tick, unsuppress
from alertd.model import (
    CheckState,
    Event,
    Incident,
    Priority,
    StateType,
    Status,
    Transition,
)
from alertd.policy import LifecyclePolicy
from tests.support.lifecycle import (
    CRIT,
    HARD,
    HOLD,
    MINUTE,
    NEW_ID,
    OK,
    POLICY,
    SOFT,
    STREAM,
    T0,
    WARN,
    WINDOW,
    K,
    kinds,
    opened,
    step,
)


def recovering(at: datetime = T0) -> Incident:
    """An incident opened at T0 (or at `at` if earlier) that went OK at `at`."""
    incident = step(opened(at=min(at, T0)), OK, at).incident
    assert incident is not None and incident.status is Status.RECOVERING
    return incident


def resolved(at: datetime = T0) -> Incident:
    """An incident whose recovery hold ended, resolved by a tick at `at`."""
    incident = tick(recovering(at - HOLD), POLICY, at).incident
    assert incident is not None and incident.status is Status.RESOLVED
    return incident


def test_ok_for_a_key_without_incident_creates_nothing() -> None:
    """An OK result on a key without an incident yields no incident and is not a discard."""
    assert step(None, OK) == Transition(None)


@pytest.mark.parametrize(
    ("open_after", "fields", "state_type", "attempt"),
    [
        pytest.param(1, {}, HARD, 1, id="open_after-1"),
        pytest.param(3, {}, SOFT, 1, id="open_after-3"),
        pytest.param(1, {"max_attempts": 3}, SOFT, 1, id="emulated-1/3"),
        pytest.param(1, {"max_attempts": 1}, HARD, 1, id="emulated-1/1"),
        pytest.param(1, {"attempt": 2, "max_attempts": 3}, SOFT, 2, id="source-2/3"),
        pytest.param(1, {"attempt": 3, "max_attempts": 3}, HARD, 3, id="source-3/3"),
        pytest.param(3, {"state_type": HARD}, HARD, 1, id="explicit-hard"),
        pytest.param(
            1, {"state_type": SOFT, "attempt": 3, "max_attempts": 3}, SOFT, 3, id="explicit-soft"
        ),
    ],
)
def test_first_problem_opens_or_waits(
    open_after: int, fields: dict[str, Any], state_type: StateType, attempt: int
) -> None:
    """A first non-OK result opens a HARD problem at once and leaves a SOFT one pending."""
    policy = LifecyclePolicy(open_after=open_after)
    transition = step(None, CRIT, T0, policy, **fields)
    incident = transition.incident
    assert incident is not None
    hard = state_type is HARD
    assert (incident.id, incident.state_type, incident.attempt) == (NEW_ID, state_type, attempt)
    assert incident.status is (Status.OPEN if hard else Status.PENDING)
    assert kinds(transition) == [K.OPENED if hard else K.STATE_CHANGED]
    assert incident.opened_at == (T0 if hard else None)
    assert incident.first_seen == incident.last_seen == T0 and incident.occurrences == 1
    assert len(incident.history) == 1


def test_open_after_three_needs_three_consecutive_problems() -> None:
    """With open_after=3 the third consecutive non-OK opens; earlier ones stay pending."""
    policy = LifecyclePolicy(open_after=3)
    first = step(None, WARN, T0, policy)
    second = step(first.incident, CRIT, T0 + MINUTE, policy)
    third = step(second.incident, CRIT, T0 + 2 * MINUTE, policy)
    assert [kinds(t) for t in (first, second, third)] == [
        [K.STATE_CHANGED],
        [K.STATE_CHANGED],  # WARNING -> CRITICAL while pending; no ticket, so no priority event
        [K.OPENED],
    ]
    incident = third.incident
    assert incident is not None and incident.id == NEW_ID
    assert (incident.status, incident.attempt, incident.occurrences) == (Status.OPEN, 3, 3)
    assert (incident.first_seen, incident.opened_at) == (T0, T0 + 2 * MINUTE)
    # The priority was re-evaluated while pending and travels with `opened`.
    assert incident.priority is Priority.HIGH
    assert third.events[0].detail["priority"] == "high"


@pytest.mark.parametrize(
    ("open_after", "fields"),
    [pytest.param(3, {}, id="open_after"), pytest.param(1, {"max_attempts": 3}, id="max_attempts")],
)
def test_ok_on_pending_incident_is_a_soft_recovery(open_after: int, fields: dict[str, Any]) -> None:
    """OK after an unconfirmed problem discards the pending incident without events."""
    policy = LifecyclePolicy(open_after=open_after)
    pending = step(
        step(None, CRIT, T0, policy, **fields).incident, CRIT, T0 + MINUTE, policy, **fields
    )
    assert pending.incident is not None and pending.incident.status is Status.PENDING
    assert kinds(pending) == [K.DEDUPLICATED]
    assert step(pending.incident, OK, T0 + 2 * MINUTE, policy) == Transition(None, discarded=True)


def test_nagios_soft_hard_example_with_max_attempts_3() -> None:
    """OK -> CRIT(S1) -> CRIT(S2) -> CRIT(H3 open) -> WARN(H) -> OK(recovering), as Nagios."""
    sequence = [OK, CRIT, CRIT, CRIT, WARN, OK]
    expected = [
        (None, None, None, []),
        (Status.PENDING, SOFT, 1, [K.STATE_CHANGED]),
        (Status.PENDING, SOFT, 2, [K.DEDUPLICATED]),
        (Status.OPEN, HARD, 3, [K.OPENED]),
        (Status.OPEN, HARD, 4, [K.STATE_CHANGED, K.PRIORITY_CHANGED]),
        (Status.RECOVERING, HARD, 1, [K.RECOVERING]),
    ]
    incident: Incident | None = None
    for i, (state, want) in enumerate(zip(sequence, expected, strict=True)):
        transition = step(incident, state, T0 + i * MINUTE, max_attempts=3)
        incident = transition.incident
        got = (
            (None, None, None)
            if incident is None
            else (incident.status, incident.state_type, incident.attempt)
        )
        assert (*got, kinds(transition)) == want, f"step {i}: {state}"
    assert incident is not None
    # OK keeps the last priority: WARNING at default (medium) impact is medium.
    assert incident.priority is Priority.MEDIUM and incident.reason.state is WARN
    assert incident.last_hard_state is OK
    assert [(c.state, c.state_type) for c in incident.history] == [
        (CRIT, SOFT),
        (CRIT, HARD),
        (WARN, HARD),
        (OK, HARD),
    ]


def test_nagios_soft_recovery_leaves_no_incident() -> None:
    """OK -> CRIT(S1) -> OK discards the problem; the next CRIT starts again at attempt 1."""
    pending = step(None, CRIT, T0, max_attempts=3).incident
    assert step(pending, OK, T0 + MINUTE, max_attempts=3).discarded
    again = step(None, CRIT, T0 + 2 * MINUTE, max_attempts=3).incident
    assert again is not None and (again.status, again.attempt) == (Status.PENDING, 1)


def test_recovery_hold_then_resolution() -> None:
    """OK starts the hold; OKs during it change nothing but last_seen; the tick at due resolves."""
    t1 = T0 + 10 * MINUTE
    transition = step(opened(), OK, t1, output="OK - back")
    incident = transition.incident
    assert incident is not None and kinds(transition) == [K.RECOVERING]
    assert (incident.status, incident.recovering_since, incident.recovery_due) == (
        Status.RECOVERING,
        t1,
        t1 + HOLD,
    )
    assert due_at(incident) == t1 + HOLD

    again = step(incident, OK, t1 + MINUTE, output="OK - still")
    assert again.events == () and again.incident is not None
    assert again.incident.last_seen == t1 + MINUTE and again.incident.last_output == "OK - still"
    assert again.incident.occurrences == incident.occurrences == 1
    incident = again.incident

    early = tick(incident, POLICY, t1 + HOLD - timedelta(seconds=1))
    assert early == Transition(incident) and early.incident is incident

    done = tick(incident, POLICY, t1 + HOLD)
    assert kinds(done) == [K.RESOLVED] and done.incident is not None
    final = done.incident
    assert (final.status, final.resolved_at, final.recovery_due) == (
        Status.RESOLVED,
        t1 + HOLD,
        None,
    )
    assert final.reopen_until == t1 + HOLD + WINDOW
    assert due_at(final) == final.reopen_until


def test_overdue_hold_resolves_on_first_tick() -> None:
    """A hold that fell due days ago (daemon down) resolves on the first tick, at that tick."""
    incident = recovering(T0)
    later = T0 + timedelta(days=3)
    transition = tick(incident, POLICY, later)
    assert kinds(transition) == [K.RESOLVED] and transition.incident is not None
    assert transition.incident.resolved_at == later
    assert transition.incident.reopen_until == later + WINDOW


@pytest.mark.parametrize("fields", [{}, {"max_attempts": 3}], ids=["default", "max_attempts-3"])
def test_problem_during_hold_recurs_on_the_same_incident(fields: dict[str, Any]) -> None:
    """Any non-OK result while recovering reopens the same incident, with `recurred`."""
    incident = recovering(T0 + MINUTE)
    transition = step(incident, WARN, T0 + 2 * MINUTE, **fields)
    after = transition.incident
    assert after is not None and after.id == incident.id
    assert kinds(transition)[0] is K.RECURRED
    assert (after.status, after.state_type, after.recovery_due, after.recovering_since) == (
        Status.OPEN,
        HARD,
        None,
        None,
    )
    assert after.occurrences == 2
    assert due_at(after) is None


def test_resolved_incident_reopens_within_window_only() -> None:
    """A HARD problem inside the reopen window reopens the same incident; after it, a new one."""
    incident = resolved(T0)
    inside = step(incident, CRIT, T0 + WINDOW - MINUTE)
    assert kinds(inside) == [K.REOPENED] and inside.incident is not None
    reopened = inside.incident
    assert (reopened.id, reopened.status, reopened.reopen_count) == (incident.id, Status.OPEN, 1)
    assert (reopened.resolved_at, reopened.reopen_until) == (None, None)
    assert inside.events[0].detail["reopen_count"] == 1

    outside = step(incident, CRIT, T0 + WINDOW, new_id=7)
    assert kinds(outside) == [K.OPENED] and outside.incident is not None
    assert (outside.incident.id, outside.incident.reopen_count, outside.incident.occurrences) == (
        7,
        0,
        1,
    )


def test_soft_problem_on_resolved_incident_counts_attempts() -> None:
    """SOFT results inside the window keep the incident resolved but count toward HARD."""
    incident: Incident | None = resolved(T0)
    got = []
    for i in range(1, 4):
        transition = step(incident, CRIT, T0 + i * MINUTE, max_attempts=3)
        incident = transition.incident
        assert incident is not None
        got.append((incident.status, incident.attempt, kinds(transition)))
    assert got == [
        (Status.RESOLVED, 1, []),
        (Status.RESOLVED, 2, []),
        (Status.OPEN, 3, [K.REOPENED]),
    ]


def test_ok_on_resolved_incident_changes_nothing() -> None:
    """OK on a resolved incident keeps its time (late results are measured against it) and, from
    a stream, ages its flap buffer; nothing else changes and no event is made."""
    incident = step(opened(reporting=STREAM), OK, T0, reporting=STREAM).incident
    assert incident is not None
    incident = tick(incident, POLICY, T0 + HOLD).incident
    assert incident is not None and incident.status is Status.RESOLVED
    assert incident.flap_history == (OK, CRIT, OK)
    transition = step(incident, OK, T0 + HOLD + MINUTE, reporting=STREAM)
    aged = transition.incident
    assert aged is not None and transition.events == ()
    assert aged.flap_history == (OK, CRIT, OK, OK)
    assert aged.percent_state_change < incident.percent_state_change
    assert (aged.status, aged.history) == (Status.RESOLVED, incident.history)
    assert aged.last_seen == T0 + HOLD + MINUTE
    told = step(incident, OK, T0 + HOLD + MINUTE).incident  # a change report: not counted
    assert told == incident._replace(last_seen=T0 + HOLD + MINUTE)


def test_ok_after_soft_streak_on_resolved_incident_ends_the_streak() -> None:
    """A soft recovery on a resolved incident resets the attempt counter, silently."""
    incident = step(resolved(T0), CRIT, T0 + MINUTE, max_attempts=3).incident
    transition = step(incident, OK, T0 + 2 * MINUTE, max_attempts=3)
    after = transition.incident
    assert after is not None and transition.events == ()
    assert (after.status, after.check_state, after.attempt) == (Status.RESOLVED, OK, 1)
    nxt = step(after, CRIT, T0 + 3 * MINUTE, max_attempts=3).incident
    assert nxt is not None and (nxt.status, nxt.attempt) == (Status.RESOLVED, 1)


def test_is_active_until_the_reopen_window_ends() -> None:
    """Unresolved incidents are active; a resolved one only until its reopen window ends."""
    pending = step(None, CRIT, T0, max_attempts=3).incident
    assert pending is not None
    for incident in (pending, opened(), recovering()):
        assert is_active(incident, T0 + timedelta(days=30))
    done = resolved(T0)
    assert is_active(done, T0 + WINDOW - timedelta(seconds=1))
    assert not is_active(done, T0 + WINDOW)


def test_flapping_incident_stays_open_until_flapping_stops() -> None:
    """Swings of a stream keep a flapping incident open; when it stops at OK it recovers."""
    swings = [CRIT, OK, CRIT, OK, CRIT, OK, CRIT, OK, CRIT]
    transitions: list[Transition] = []
    incident: Incident | None = None
    at = T0
    for state in swings:
        transitions.append(step(incident, state, at, reporting=STREAM))
        incident = transitions[-1].incident
        at += MINUTE
    # The key was OK before (Nagios's buffer starts all OK): O C O C O has changes at
    # transitions 17..20, weighing 1.1711 + 1.1974 + 1.2237 + 1.25 = 4.8421, x 100/20 = 24.21%
    # >= 20: flapping starts on the fourth result, an OK, which therefore does not recover.
    assert [kinds(t) for t in transitions[:4]] == [
        [K.OPENED],
        [K.RECOVERING],
        [K.RECURRED],
        [K.FLAPPING_STARTED],
    ]
    assert transitions[3].events[0].detail == {"percent": 24.21, "state": "OK", "threshold": 20.0}
    for transition in transitions[4:]:
        assert transition.incident is not None and transition.incident.status is Status.OPEN
        assert kinds(transition) in ([], [K.STATE_CHANGED])
    assert incident is not None and incident.flapping and incident.check_state is CRIT

    # Steady OKs age the swings out of the buffer until the percentage drops to 5% or less.
    quiet: list[Transition] = []
    while incident.status is Status.OPEN:
        assert len(quiet) < 21, "the swings must have left the 21-entry window by now"
        quiet.append(step(incident, OK, at, reporting=STREAM))
        incident = quiet[-1].incident
        assert incident is not None
        at += MINUTE
    assert len(quiet) > 1 and all(t.events == () for t in quiet[:-1])
    assert kinds(quiet[-1]) == [K.FLAPPING_STOPPED, K.RECOVERING]
    assert quiet[-1].events[0].detail["percent"] <= POLICY.flap_low
    assert incident.status is Status.RECOVERING and not incident.flapping
    assert kinds(tick(incident, POLICY, at + HOLD)) == [K.RESOLVED]


def test_tick_does_not_resolve_an_incident_whose_stream_flaps() -> None:
    """A recovering incident whose stream says it flaps has no due timer and a tick leaves it
    alone: the stream goes on and settles it."""
    incident = step(opened(reporting=STREAM), OK, T0, reporting=STREAM).incident
    assert incident is not None and incident.status is Status.RECOVERING
    incident = incident._replace(flapping=True)
    assert due_at(incident) is None
    assert tick(incident, POLICY, T0 + HOLD * 10).incident is incident


def test_service_result_is_absorbed_by_host_problem() -> None:
    """With its host DOWN, a service problem is forced HARD and suppressed, announced once."""
    host = step(None, CheckState.DOWN, service=None, new_id=17).incident
    assert host is not None
    first = step(None, CRIT, T0, host_problem=host, attempt=1, max_attempts=3)
    incident = first.incident
    assert incident is not None and kinds(first) == [K.OPENED, K.SUPPRESSED]
    assert (incident.status, incident.state_type, incident.attempt) == (Status.OPEN, HARD, 3)
    assert incident.suppressed and incident.suppressed_reason == "host web01 is DOWN (incident 17)"
    assert first.events[1].detail == {"reason": "host web01 is DOWN (incident 17)"}

    second = step(incident, CRIT, T0 + MINUTE, host_problem=host, max_attempts=3)
    assert kinds(second) == [K.DEDUPLICATED]

    pending = step(None, WARN, T0, max_attempts=3).incident
    absorbed = step(pending, WARN, T0 + MINUTE, host_problem=host, max_attempts=3)
    assert kinds(absorbed) == [K.OPENED, K.SUPPRESSED]

    host_again = step(host, CheckState.DOWN, T0 + MINUTE, service=None, host_problem=host)
    assert host_again.incident is not None and not host_again.incident.suppressed


def test_suppress_and_unsuppress() -> None:
    """Suppressing and lifting emit events; repeating either is a no-op."""
    incident = opened()
    on = suppress(incident, "maintenance 42", T0)
    assert on.incident is not None and kinds(on) == [K.SUPPRESSED]
    assert on.events[0].detail == {"reason": "maintenance 42", "replaces": None}
    assert suppress(on.incident, "maintenance 42", T0).incident is on.incident
    other = suppress(on.incident, "silence 7", T0)
    assert other.events[0].detail == {"reason": "silence 7", "replaces": "maintenance 42"}
    off = unsuppress(on.incident, T0)
    assert off.incident is not None and kinds(off) == [K.UNSUPPRESSED]
    assert (off.incident.suppressed, off.incident.suppressed_reason) == (False, None)
    assert off.events[0].detail == {"reason": "maintenance 42"}
    assert unsuppress(off.incident, T0).incident is off.incident


def test_history_is_bounded() -> None:
    """Only the newest history_limit state changes are kept; repeats add none."""
    policy = LifecyclePolicy(history_limit=3)
    incident = step(None, CRIT, T0, policy).incident
    states = [WARN, WARN, CRIT, WARN, CRIT, CRIT, WARN]
    for i, state in enumerate(states, start=1):
        incident = step(incident, state, T0 + i * MINUTE, policy).incident
    assert incident is not None
    assert [(c.state, c.at) for c in incident.history] == [
        (WARN, T0 + 4 * MINUTE),
        (CRIT, T0 + 5 * MINUTE),
        (WARN, T0 + 7 * MINUTE),
    ]


def test_identical_results_deduplicate_into_one_incident() -> None:
    """1,000 identical CRITICAL results make one incident with 1,000 occurrences."""
    incident: Incident | None = None
    events: list[Event] = []
    for i in range(1000):
        transition = step(incident, CRIT, T0 + i * MINUTE)
        incident = transition.incident
        events.extend(transition.events)
    assert incident is not None and incident.id == NEW_ID
    assert incident.occurrences == 1000 and incident.status is Status.OPEN
    assert [e.kind for e in events].count(K.DEDUPLICATED) == 999
    assert [e.kind for e in events if e.kind is not K.DEDUPLICATED] == [K.OPENED]
    assert incident.last_seen == T0 + 999 * MINUTE and len(incident.history) == 1


def test_event_details_are_small_json() -> None:
    """Every event carries `now` and a flat JSON-serialisable detail with output cut to 200."""
    long = "x" * 500
    # Thresholds high enough that these few swings do not count as flapping.
    policy = LifecyclePolicy(flap_low=50.0, flap_high=60.0)
    at = T0
    incident: Incident | None = None
    events: list[tuple[datetime, Event]] = []
    for state in [WARN, WARN, CRIT, OK, OK, CRIT, OK]:
        transition = step(incident, state, at, policy, output=long)
        incident = transition.incident
        events.extend((at, e) for e in transition.events)
        at += MINUTE
    assert incident is not None
    at += HOLD
    resolution = tick(incident, policy, at)
    assert resolution.incident is not None
    events.extend((at, e) for e in resolution.events)
    events.extend((at, e) for e in step(resolution.incident, CRIT, at, policy, output=long).events)
    assert {e.kind for _, e in events} >= {
        K.STATE_CHANGED,
        K.DEDUPLICATED,
        K.OPENED,
        K.PRIORITY_CHANGED,
        K.RECOVERING,
        K.RECURRED,
        K.RESOLVED,
        K.REOPENED,
    }
    for now, event in events:
        assert event.at == now
        json.dumps(event.detail)
        for value in event.detail.values():
            assert value is None or type(value) in (str, int, float, bool)
        assert len(event.detail.get("output", "")) <= 200


class NagiosFlapBuffer:
    """Nagios Core 4's service flap detection as `base/flapping.c` does it, independently of
    alertd's: a ring of 21 states that starts all OK, each HARD state or soft recovery written
    at the index, the weighted percent state change read from the oldest entry on."""

    def __init__(self) -> None:
        self.history = [0] * 21  # STATE_OK
        self.index = 0
        self.flapping = False
        self.pct = 0.0

    def check(self, state: int, low: float = 5.0, high: float = 20.0) -> float:
        self.history[self.index] = state
        self.index = (self.index + 1) % 21
        weighted = 0.0
        last = self.history[self.index]
        for x in range(1, 21):
            current = self.history[(self.index + x) % 21]
            if current != last:
                weighted += 0.75 + (x - 1) * (1.25 - 0.75) / 19
            last = current
        pct = weighted * 100.0 / 20
        if pct <= low:
            self.flapping = False
        elif pct >= high:
            self.flapping = True
        self.pct = pct
        return pct


@pytest.mark.parametrize(
    "sequence",
    [
        "CO" * 12,
        "CCCOOOCOCOOOOOOOOOOOOOOOOOOOOOO",
        "OOOOCOOOOCOOOOCOOOOCOOOOOOOOOOOOOOOOOOOO",
        "CWCWCOOOOOOOOOOOOOOOOOOOOOOOOOOO",
        "ccCOccCOcOccCOccCOOOOOOOOOOOOOOOOOOOOOO",
    ],
)
def test_a_stream_flaps_exactly_when_nagios_core_does(sequence: str) -> None:
    """The same sequence of results (OCSP forwards every check; lower case: SOFT) gives alertd
    the percent state change and flapping flag Nagios computes, at every result: the OK before
    the first problem counts, as Nagios's buffer starts all OK, and SOFT problems do not."""
    codes = {"O": 0, "W": 1, "C": 2}
    states = {"O": OK, "W": WARN, "C": CRIT}
    nagios = NagiosFlapBuffer()
    incident: Incident | None = None
    at = T0
    for n, letter in enumerate(sequence):
        soft = letter.islower()
        pct = nagios.pct if soft else nagios.check(codes[letter])
        state_type = SOFT if soft else HARD
        state = states[letter.upper()]
        transition = step(incident, state, at, reporting=STREAM, state_type=state_type)
        if transition.incident is None:  # nothing to measure: all OK, or a soft recovery
            assert letter == "O" and (incident is None or transition.discarded)
            incident = None
            continue
        incident = transition.incident
        assert round(incident.percent_state_change, 6) == round(pct, 6), n
        assert incident.flapping is nagios.flapping, n
        at += MINUTE


def test_change_reports_are_not_counted_for_flap_detection() -> None:
    """Notifications, Alertmanager and native results report changes only: every entry would
    be a transition. They are not recorded, so outages reported as changes never flap, and each
    recovery leads to `resolved` after the hold."""
    incident: Incident | None = None
    at = T0
    for _ in range(6):
        problem = step(incident, CRIT, at)
        incident = problem.incident
        assert incident is not None and incident.status is Status.OPEN
        at += 10 * MINUTE
        recovered = step(incident, OK, at).incident
        assert recovered is not None and recovered.status is Status.RECOVERING
        incident = tick(recovered, POLICY, at + HOLD).incident
        assert incident is not None and incident.status is Status.RESOLVED
        assert not incident.flapping and incident.percent_state_change == 0.0
        at += 3 * 60 * MINUTE


def test_a_result_older_than_the_newest_is_late_and_changes_nothing() -> None:
    """A problem stamped before the newest result neither reopens nor moves `last_seen` back;
    an OK older than the newest problem does not recover it. Both are recorded (`late`)."""
    incident = recovering(T0 + 9 * MINUTE)
    late = step(incident, CRIT, T0 + MINUTE, output="from a spool")
    assert late.incident is incident and kinds(late) == [K.LATE]
    assert late.events[0].detail == {
        "state": "CRITICAL",
        "timestamp": (T0 + MINUTE).isoformat(),
        "newest": (T0 + 9 * MINUTE).isoformat(),
        "source": "api",
        "output": "from a spool",
    }
    problem = step(None, CRIT, T0 + 5 * MINUTE).incident
    assert problem is not None
    old_ok = step(problem, OK, T0 + 3 * MINUTE)
    assert old_ok.incident is problem and kinds(old_ok) == [K.LATE]
    same_time = step(problem, OK, T0 + 5 * MINUTE).incident  # not older: applied
    assert same_time is not None and same_time.status is Status.RECOVERING


def test_the_streams_copy_of_a_notified_check_is_counted_once() -> None:
    """Nagios sends a check both by OCSP (a stream) and, when it notifies, as a notification
    (a change report), in either order and with the same check time. Notification first: the
    OCSP copy still counts for flap detection and the interval, and nothing else; OCSP first:
    the notification changes nothing."""
    nagios = {"source": "nagios", "state_type": HARD}
    first = step(None, CRIT, T0, **nagios).incident  # the PROBLEM notification
    assert first is not None and first.flap_history == (OK,)
    echo = step(first, CRIT, T0, reporting=STREAM, **nagios)
    assert echo.incident is not None and echo.events == ()
    assert echo.incident.flap_history == (OK, CRIT)
    assert echo.incident.occurrences == 1 and echo.incident.stream_seen == T0
    again = step(echo.incident, CRIT, T0, reporting=STREAM, **nagios)
    assert again.incident is echo.incident  # the same check a third time: nothing
    notified = step(echo.incident, CRIT, T0, **nagios)
    assert notified.incident is echo.incident
