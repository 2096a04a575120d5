"""HTTP routes of the incident read API and of what people do to an incident (ack, escalate).

Handlers stay thin: decode -> engine -> answer. Errors are raised, never turned into responses
here (`alertd.http.middleware` does that).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from alertd import codec
from alertd.config import HelpdeskConfig
from alertd.errors import Conflict, InputError, NotFoundError, NotLeader
from alertd.http.decode import MAX_ID, path_id, query_enum, query_int, read_json, text_field
from alertd.http.keys import CLOCK, ENGINE, LIVE, STORE
from alertd.http.outbox import op_json
from alertd.model import Incident, Notice, NoticeKind, Priority, Status, key_text
from alertd.store import IncidentQuery, TicketLink

MAX_PAGE = 1000
EVENTS_PAGE = 1000  # events in one incident answer at most (and by default)


async def list_incidents(request: web.Request) -> web.Response:
    q = request.query
    query = IncidentQuery(
        status=query_enum(Status, q.get("status"), "status"),
        priority=query_enum(Priority, q.get("priority"), "priority"),
        host=q.get("host") or None,
        limit=query_int(q.get("limit"), "limit", default=100, low=1, high=MAX_PAGE),
        before_id=query_int(q.get("before"), "before", default=None, low=1, high=MAX_ID),
    )
    store = request.app[STORE]
    incidents = await store.list_incidents(query)
    more = len(incidents) == query.limit
    links = await store.tickets_of([i.id for i in incidents])
    helpdesk = request.app[LIVE].config.helpdesk
    bodies = []
    for incident in incidents:
        body = codec.incident_json(incident, key_text=key_text(incident.key))
        body["ticket"] = _ticket(links.get(incident.id), helpdesk)
        bodies.append(body)
    return web.json_response(
        {"incidents": bodies, "next_before": incidents[-1].id if more and incidents else None}
    )


def _ticket(link: TicketLink | None, helpdesk: HelpdeskConfig | None) -> dict[str, Any] | None:
    """The incident's ticket as an agent finds it: id and the helpdesk's own page for it."""
    if link is None or helpdesk is None:
        return None
    return {"id": link.ticket_id, "url": f"{helpdesk.url}/a/tickets/{link.ticket_id}"}


async def show_incident(request: web.Request) -> web.Response:
    raw_id = request.match_info["id"]
    store = request.app[STORE]
    number = path_id(raw_id)
    incident = await store.get_incident(number) if number is not None else None
    if incident is None:
        raise NotFoundError(f"incident {request.match_info['id']}")
    body = codec.incident_json(incident, key_text=key_text(incident.key))
    # The newest events, a page at a time: a long-failing check has far more than a page,
    # and what matters first is how it stands now (its recovery, say). `events_before` (an
    # event id, from `events_next_before`) pages back to older ones.
    q = request.query
    limit = query_int(
        q.get("events_limit"), "events_limit", default=EVENTS_PAGE, low=1, high=EVENTS_PAGE
    )
    before = query_int(q.get("events_before"), "events_before", default=None, low=1, high=MAX_ID)
    page = await store.events_page(incident.id, limit + 1, before)
    more = len(page) > limit
    del page[limit:]
    # Within a page in time order, oldest first, as the trail always read.
    body["events"] = [{**codec.event_json(e), "id": i} for i, e in reversed(page)]
    body["events_next_before"] = page[-1][0] if more and page else None
    body["ticket"] = _ticket(await store.ticket_of(incident.id), request.app[LIVE].config.helpdesk)
    body["ticket_operations"] = [op_json(op) for op in await store.ops_of(incident.id)]
    return web.json_response(body)


async def acknowledge(request: web.Request) -> web.Response:
    """POST: someone is on it (stops the escalation clock); DELETE: nobody is, after all."""
    incident = await live_incident(request)
    ack = request.method == "POST"
    body = await read_json(request) if request.can_read_body else {}
    author, comment = text_field(body, "author"), text_field(body, "comment")
    sticky = body.get("sticky", False) if isinstance(body, dict) else False
    if not isinstance(sticky, bool):
        raise InputError("sticky: expected true or false")
    kind = NoticeKind.ACKNOWLEDGED if ack else NoticeKind.UNACKNOWLEDGED
    now = request.app[CLOCK].now()
    notice = Notice(
        kind, incident.host, incident.service, now, author, comment, sticky, "api",
        incident_id=incident.id,
    )
    return await _after_notice(request, notice)


async def escalate(request: web.Request) -> web.Response:
    """Relationship or customer escalation by hand: the next level now, with the reason."""
    incident = await live_incident(request)
    body = await read_json(request)
    reason = text_field(body, "reason")
    if not reason:
        raise InputError("reason: required (why this incident is escalated by hand)")
    now = request.app[CLOCK].now()
    notice = Notice(NoticeKind.ESCALATE, incident.host, incident.service, now,
                    text_field(body, "author"), reason, False, "api",
                    incident_id=incident.id)  # fmt: skip
    return await _after_notice(request, notice)


async def live_incident(request: web.Request) -> Incident:
    if request.app[ENGINE].forward is not None:  # a standby holds no live incidents
        raise NotLeader(
            'this daemon is a standby: act on incidents through the leader (its GET /readyz '
            'says "lease": "held")'
        )
    raw = request.match_info["id"]
    live, number = None, path_id(raw)
    if number is not None:
        stored = await request.app[STORE].get_incident(number)
        if stored is not None:
            live = request.app[ENGINE].cached(stored.key)
            if live is None or live.id != stored.id or live.status is Status.RESOLVED:
                raise Conflict(f"incident {raw} is {stored.status.value}: nothing to act on")
    if live is None:
        raise NotFoundError(f"incident {raw}")
    return live


async def _after_notice(request: web.Request, notice: Notice) -> web.Response:
    """Submit a notice that names its incident; answer with that incident as committed.

    The incident was live when the request was read, but the writer may have discarded or
    resolved it (and a new incident may have taken its key) before the notice's turn came. The
    writer applies the notice only to the incident it names (`Notice.incident_id`), so here an
    incident of another id under the key means the notice was not applied.
    """
    await request.app[ENGINE].submit([notice])
    incident = request.app[ENGINE].cached(notice.key)
    if incident is None:
        raise NotFoundError(f"incident {notice.incident_id}")
    if incident.id != notice.incident_id:
        raise Conflict(
            f"incident {notice.incident_id} was discarded meanwhile; its key now belongs to "
            f"incident {incident.id}: nothing was done"
        )
    return web.json_response(codec.incident_json(incident, key_text=key_text(incident.key)))
