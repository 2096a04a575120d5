"""What helpdesk agents did to a ticket, and what it means for its incident. Pure.

alertd learns about agents' actions two ways: the dispatcher's ticket poll (slow
reconciliation) and the helpdesk's automation webhook (`POST /api/v1/helpdesk/events`, at
once). Both hand the ticket as the helpdesk shows it now to `decide`, so they can never
disagree:

- an agent took the ticket (assigned a responder other than the one an escalation level
  assigned, or set it to Pending): the incident is acknowledged;
- an agent resolved or closed the ticket while alertd still tracks the problem (open or
  recovering): the incident records it (`Incident.agent_closed`), alertd stops writing to that
  ticket and stops escalating, and a recurrence follows `helpdesk.on_agent_close`
  (alertd.tickets).

Only the incident's current ticket counts: an older ticket of the same incident (one an agent
closed and alertd replaced) carries the same tag but is history.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alertd.model import Event, EventKind, Incident, Notice, NoticeKind, Status, Transition

STATUS_PENDING = 3
_INCIDENT_ID = re.compile(r"[0-9]{1,18}")  # below 2**63: SQLite's INTEGER
DONE_STATUSES = frozenset({4, 5})  # Resolved, Closed (docs/protocols.md 1.2)


@dataclass(frozen=True, slots=True)
class Statuses:
    """Which ticket statuses mean what: Pending (3) and the account's custom statuses (6 and
    up) configured as taken (`helpdesk.taken_statuses`) or done (`helpdesk.done_statuses`)."""

    taken: frozenset[int] = frozenset({STATUS_PENDING})
    done: frozenset[int] = DONE_STATUSES


@dataclass(frozen=True, slots=True)
class TicketView:
    """The parts of a helpdesk ticket that say what agents did to it."""

    ticket_id: int
    incident_id: int
    status: int | None
    responder_id: int | None


@dataclass(frozen=True, slots=True)
class Facts:
    """What alertd itself did to the ticket (from its outbox), to tell its own acts apart."""

    ticket_id: int | None  # the incident's current ticket
    responder_set: int | None  # the agent alertd's last escalation assigned
    status_set: int | None  # the last status alertd's delivered operations set


def view(ticket: Mapping[str, Any], instance: str) -> TicketView | None:
    """The ticket as `decide` reads it, or None when no incident of this instance owns it."""
    prefix = f"alertd-{instance}-"
    ids = [str(t)[len(prefix) :] for t in ticket.get("tags") or [] if str(t).startswith(prefix)]
    # Our ids are ASCII digits that fit SQLite's integer: `alertd-main-²` (a digit to
    # str.isdigit, not to int) or a 20-digit number is someone else's tag, not an error.
    if not ids or not _INCIDENT_ID.fullmatch(ids[0]) or not isinstance(ticket.get("id"), int):
        return None
    status, responder = ticket.get("status"), ticket.get("responder_id")
    return TicketView(
        ticket_id=ticket["id"],
        incident_id=int(ids[0]),
        status=status if isinstance(status, int) else None,
        responder_id=responder if isinstance(responder, int) else None,
    )


def decide(
    ticket: TicketView,
    incident: Incident | None,
    facts: Facts,
    now: datetime,
    statuses: Statuses = Statuses(),
) -> Notice | None:
    """The notice an agent's action on `ticket` amounts to for `incident`, if any."""
    if (
        incident is None
        or incident.id != ticket.incident_id
        or facts.ticket_id != ticket.ticket_id
        or incident.status is Status.RESOLVED
        or incident.agent_closed is not None
    ):
        return None
    if ticket.status in statuses.done:
        if facts.status_set in statuses.done:
            return None  # alertd resolved it itself (a reopening may still be on its way)
        how = {4: "resolved", 5: "closed"}.get(ticket.status, f"set to status {ticket.status}")
        return _notice(incident, NoticeKind.TICKET_CLOSED, ticket, how, now)
    if incident.acknowledged:
        return None
    pending = ticket.status in statuses.taken
    if ticket.responder_id is None and not pending:
        return None
    if not pending and ticket.responder_id == facts.responder_set:
        return None  # alertd's own escalation assigned this agent: not yet taken
    how = f"assigned to agent {ticket.responder_id}"
    if pending:
        how = "set to Pending" if ticket.status == STATUS_PENDING else f"set to {ticket.status}"
    return _notice(incident, NoticeKind.ACKNOWLEDGED, ticket, how, now)


def _notice(
    incident: Incident, kind: NoticeKind, ticket: TicketView, how: str, now: datetime
) -> Notice:
    author = f"agent {ticket.responder_id}" if ticket.responder_id else "helpdesk"
    return Notice(
        kind,
        incident.host,
        incident.service,
        now,
        author=author,
        comment=f"ticket #{ticket.ticket_id} {how} in the helpdesk",
        source="helpdesk",
        ticket_id=ticket.ticket_id,
    )


def closed(incident: Incident, notice: Notice, now: datetime) -> Transition:
    """Record that an agent resolved or closed the incident's ticket (alertd.notices)."""
    if notice.ticket_id is None or incident.agent_closed is not None:
        return Transition(incident)
    if incident.status is Status.RESOLVED or incident.status is Status.PENDING:
        return Transition(incident)  # nothing of alertd's left on the ticket to stop
    detail = {
        "ticket_id": notice.ticket_id,
        "author": notice.author,
        "comment": notice.comment,
        "source": notice.source,
        "check_state": incident.check_state.value,
        "merged_into": notice.merged_into,
    }
    after = incident._replace(
        agent_closed=notice.ticket_id,
        agent_closed_merged=notice.merged_into,
        summary_due=None,
        update_due=None,
    )
    return Transition(after, (Event(EventKind.TICKET_CLOSED, now, detail),))
