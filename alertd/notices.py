"""Notices applied to incidents, purely: acknowledgements, downtimes, flapping, comments.

A notice is what a monitoring system says about a key besides its check results (Nagios's
ACKNOWLEDGEMENT, FLAPPINGSTART, CUSTOM notifications; an API ack). It changes flags and leaves
an event in the audit trail; it never opens or resolves an incident. A notice for a key without
a live incident changes nothing here. Downtime notices are not handled here: the engine turns
them into silences (alertd.silences), which outlive incidents and hold back new ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from alertd import agent_actions
from alertd.model import Event, EventKind, Incident, Notice, NoticeKind, Status, Transition
from alertd.policy import LifecyclePolicy

_NOTHING = Transition(None)


def annotate(
    incident: Incident | None, notice: Notice, policy: LifecyclePolicy, now: datetime
) -> Transition:
    """Apply one notice to the incident of its key (None if the key has none)."""
    if incident is None:
        return _NOTHING
    kind = notice.kind
    who: dict[str, Any] = {"author": notice.author, "comment": notice.comment,
                           "source": notice.source}  # fmt: skip
    if kind is NoticeKind.ACKNOWLEDGED:
        acked = incident._replace(
            acknowledged=True,
            ack_author=notice.author or None,
            ack_comment=notice.comment or None,
            ack_sticky=notice.sticky,
            ack_source=notice.source,
        )
        detail = {**who, "sticky": notice.sticky}
        return Transition(acked, (Event(EventKind.ACKNOWLEDGED, now, detail),))
    if kind is NoticeKind.UNACKNOWLEDGED:
        if not incident.acknowledged:
            return Transition(incident)
        cleared = incident._replace(
            acknowledged=False, ack_author=None, ack_comment=None, ack_sticky=False,
            ack_source=None,
        )  # fmt: skip
        return Transition(cleared, (Event(EventKind.UNACKNOWLEDGED, now, who),))
    if kind is NoticeKind.FLAPPING_STARTED:
        if incident.flapping:
            return Transition(incident)
        event = Event(EventKind.FLAPPING_STARTED, now, {**who, "detected_by": notice.source})
        return Transition(incident._replace(flapping=True), (event,))
    if kind in (NoticeKind.FLAPPING_STOPPED, NoticeKind.FLAPPING_DISABLED):
        if not incident.flapping:
            return Transition(incident)
        detail = {**who, "detected_by": notice.source, "ended": kind.value}
        events = [Event(EventKind.FLAPPING_STOPPED, now, detail)]
        changes: dict[str, Any] = {"flapping": False}
        # As with alertd's own detection: an incident kept open by flapping starts recovering
        # once the flapping stops while the check is OK.
        if incident.status is Status.OPEN and incident.check_state.is_ok:
            due = now + policy.recovery_hold
            changes.update(status=Status.RECOVERING, recovering_since=now, recovery_due=due)
            detail = {"state": incident.check_state.value, "recovery_due": due.isoformat()}
            events.append(Event(EventKind.RECOVERING, now, detail))
        return Transition(incident._replace(**changes), tuple(events))
    if kind is NoticeKind.TICKET_CLOSED:
        return agent_actions.closed(incident, notice, now)
    if kind is NoticeKind.ESCALATE:
        # The planner carries out the next level now; the event records who asked and why.
        detail = {**who, "manual": True}
        return Transition(incident, (Event(EventKind.ESCALATED, now, detail),))
    return Transition(incident, (Event(EventKind.NOTE, now, who),))
