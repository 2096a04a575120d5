"""Notices (acks, downtimes, flapping, comments) on incidents, and Nagios's ack-clearing rules."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alertd.lifecycle import tick
from alertd.model import CheckState, EventKind, Incident, Notice, NoticeKind, Status
from alertd.notices import annotate
from tests.support.lifecycle import HOLD, POLICY, T0, kinds, step

CRIT, WARN, OK = CheckState.CRITICAL, CheckState.WARNING, CheckState.OK
N = NoticeKind


def notice(kind: NoticeKind, *, sticky: bool = False, source: str = "nagios") -> Notice:
    return Notice(kind, "web01", "http", T0, "alice", "on it", sticky, source)


def open_incident() -> Incident:
    incident = step(None, CRIT).incident
    assert incident is not None and incident.status is Status.OPEN
    return incident


def acked(sticky: bool = False, source: str = "nagios") -> Incident:
    transition = annotate(open_incident(), notice(N.ACKNOWLEDGED, sticky=sticky, source=source),
                          POLICY, T0)  # fmt: skip
    assert transition.incident is not None
    return transition.incident


def test_ack_records_who_and_why_and_leaves_an_event() -> None:
    """An acknowledgement marks the incident with author and comment and is audited."""
    transition = annotate(open_incident(), notice(N.ACKNOWLEDGED), POLICY, T0)
    incident = transition.incident
    assert incident is not None and incident.acknowledged
    assert (incident.ack_author, incident.ack_comment) == ("alice", "on it")
    assert kinds(transition) == [EventKind.ACKNOWLEDGED]
    assert transition.events[0].detail["author"] == "alice"


@pytest.mark.parametrize(
    ("sticky", "next_state", "still_acked"),
    [
        (False, WARN, False),  # normal ack: any state change ends it
        (True, WARN, True),  # sticky ack: survives problem-state changes...
        (True, OK, False),  # ...and ends at OK
        (False, CRIT, True),  # the same state again is no change
    ],
)
def test_nagios_acks_clear_as_nagios_clears_them(
    sticky: bool, next_state: CheckState, still_acked: bool
) -> None:
    """Acks from Nagios follow its rules: normal ones end on a state change, sticky at OK."""
    transition = step(acked(sticky), next_state, T0 + timedelta(minutes=1))
    assert transition.incident is not None
    assert transition.incident.acknowledged is still_acked
    assert (EventKind.UNACKNOWLEDGED in kinds(transition)) is not still_acked


def test_other_acks_last_until_resolution() -> None:
    """An API ack survives state changes and recovery, and ends when the incident resolves."""
    incident = step(acked(source="api"), WARN, T0).incident
    assert incident is not None and incident.acknowledged
    recovering = step(incident, OK, T0).incident
    assert recovering is not None and recovering.acknowledged
    resolved = tick(recovering, POLICY, T0 + HOLD).incident
    assert resolved is not None and resolved.status is Status.RESOLVED
    assert not resolved.acknowledged


def test_flapping_notices_set_the_flag_and_stopping_at_ok_starts_recovery() -> None:
    """Nagios's FLAPPINGSTART sets the flag; FLAPPINGSTOP on an incident held open at OK starts
    its recovery. A recovery reported as a change (Nagios sends RECOVERY only once it no longer
    flaps) is not held by the flag: it recovers, and resolves after the hold."""
    flapping = annotate(open_incident(), notice(N.FLAPPING_STARTED), POLICY, T0).incident
    assert flapping is not None and flapping.flapping
    held = flapping._replace(check_state=OK)  # as a flapping stream leaves it at an OK
    stopped = annotate(held, notice(N.FLAPPING_STOPPED), POLICY, T0)
    assert stopped.incident is not None and stopped.incident.status is Status.RECOVERING
    assert kinds(stopped) == [EventKind.FLAPPING_STOPPED, EventKind.RECOVERING]
    told = step(flapping, OK, T0).incident
    assert told is not None and told.status is Status.RECOVERING and told.flapping
    resolved = tick(told, POLICY, T0 + HOLD).incident
    assert resolved is not None and resolved.status is Status.RESOLVED


def test_notices_without_an_incident_and_comments() -> None:
    """A notice for a key with no incident changes nothing; a CUSTOM one is kept as a note."""
    assert annotate(None, notice(N.ACKNOWLEDGED), POLICY, T0).incident is None
    note = annotate(open_incident(), notice(N.CUSTOM), POLICY, T0)
    assert kinds(note) == [EventKind.NOTE]
    assert note.events[0].detail["comment"] == "on it"
