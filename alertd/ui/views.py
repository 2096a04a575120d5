"""The console's pages (GET): board, incident, silences, heartbeats, outbox, history, noisiest,
and signing in and out.

Reads only: the board from the engine's cache of live incidents (a page costs one store query
for its tickets and one for its ack times, whatever the number of incidents), the rest from
the store's read connection, like the JSON API.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from alertd.errors import InputError, NotFoundError
from alertd.http.decode import MAX_ID, path_id, query_int
from alertd.http.keys import ENGINE, LIVE, STORE, Live
from alertd.model import EventKind, Incident, Status, key_text
from alertd.store import OutboxState
from alertd.ui import board
from alertd.ui.console import (
    CONSOLE,
    FRAGMENT_HEADER,
    Viewer,
    now_of,
    page,
    render,
    same_origin,
    set_cookie,
    viewer,
)
from alertd.ui.health import strip
from alertd.ui.session import COOKIE, token_allows

EVENTS_PAGE = 50
HISTORY_PAGE = 100
NOISIEST = 20
MAX_RANGE = timedelta(days=366)


def ticket_url(live: Live, ticket_id: int) -> str | None:
    """The ticket in the helpdesk's agent view, as the JSON API links it."""
    helpdesk = live.config.helpdesk
    if helpdesk is None or not helpdesk.url.startswith(("https://", "http://")):
        return None
    return f"{helpdesk.url}/a/tickets/{ticket_id}"


def _tier(live: Live) -> Callable[[Incident], str]:
    """The escalation tier an incident has reached, by its level's name when it has one."""

    def tier(incident: Incident) -> str:
        if incident.escalation_level == 0:
            return "tier 1"
        levels = live.config.escalation.levels.get(incident.priority, ())
        if incident.escalation_level <= len(levels):
            return levels[incident.escalation_level - 1].name
        return f"level {incident.escalation_level}"

    return tier


async def _view(request: web.Request, who: Viewer, template: str, **context: Any) -> web.Response:
    """A page; a refresh (console.js sends `X-Console-Fragment`) gets its live part alone:
    the health strip and `<page>_live.html`."""
    context.update(now=now_of(request), health=await strip(request),
                   tier=_tier(request.app[LIVE]))  # fmt: skip
    if request.headers.get(FRAGMENT_HEADER) and template != "silence_new.html":
        context["live_template"] = template.replace(".html", "_live.html")
        template = "fragment.html"
    return render(request, who, template, context)


@page
async def show_board(request: web.Request) -> web.StreamResponse:
    """Open, recovering and pending incidents: filtered and grouped by the address, paged."""
    who = viewer(request)
    # A filter form's checkboxes repeat a parameter (status=open&status=pending): join them.
    query = board.parse_query({k: ",".join(request.query.getall(k)) for k in request.query})
    live = request.app[LIVE]
    engine = request.app[ENGINE]
    await engine.unfold_all()  # the first view after a start decodes them, the loop running
    # No await between taking the cache and selecting from it: the writer cannot change it.
    result = board.select(engine.incidents(), query, live.config.ui.page_size)
    ids = [r.incident.id for r in result.rows]
    store = request.app[STORE]
    tickets = await store.tickets_for(ids) if ids else {}
    acked = [r.incident.id for r in result.rows if r.incident.acknowledged]
    ack_times = await store.event_times(acked, EventKind.ACKNOWLEDGED.value) if acked else {}
    links = {i: ticket_url(live, t) for i, t in tickets.items()}
    return await _view(request, who, "board.html", query=query, result=result, tickets=tickets,
                       links=links, ack_times=ack_times, key_text=key_text, age=board.age,
                       host_groups=board.host_groups, statuses=board.LIVE_STATUSES)  # fmt: skip


async def _incident(request: web.Request) -> Incident:
    raw = request.match_info["id"]
    number = path_id(raw)
    found = await request.app[STORE].get_incident(number) if number is not None else None
    if found is None:
        raise NotFoundError(f"incident {raw}")
    return found


@page
async def show_incident(request: web.Request) -> web.StreamResponse:
    """One incident: why its priority, its output, ticket and operations, its audit trail."""
    who = viewer(request)
    incident = await _incident(request)
    before = query_int(request.query.get("before"), "before", default=None, low=1, high=MAX_ID)
    store = request.app[STORE]
    events = await store.events_page(incident.id, EVENTS_PAGE + 1, before)
    older = events[EVENTS_PAGE - 1][0] if len(events) > EVENTS_PAGE else None
    tickets = await store.tickets_for([incident.id])
    ticket = tickets.get(incident.id)
    live = request.app[LIVE]
    acked = await store.event_times([incident.id], EventKind.ACKNOWLEDGED.value)
    return await _view(
        request, who, "incident.html", incident=incident, key=key_text(incident.key),
        events=events[:EVENTS_PAGE], older=older, ticket=ticket,
        ticket_link=None if ticket is None else ticket_url(live, ticket),
        ops=await store.ops_of(incident.id), ack_at=acked.get(incident.id),
        active=incident.status is not Status.RESOLVED, host_groups=board.host_groups,
    )  # fmt: skip


@page
async def show_silences(request: web.Request) -> web.StreamResponse:
    """Active, upcoming and recurring silences (Nagios downtimes among them); `all=1` adds
    the expired ones."""
    who = viewer(request)
    now = now_of(request)
    every = request.query.get("all", "") in ("1", "true", "yes")
    found = await request.app[STORE].list_silences(None if every else now)
    if not every:
        found = [s for s in found if not s.is_expired(now)]
    return await _view(request, who, "silences.html", silences=found, every=every)


@page
async def new_silence(request: web.Request) -> web.StreamResponse:
    """The form for a silence, pre-filled from an incident (`?incident=<id>`) when given."""
    who = viewer(request)
    form = {"host": "", "service": "", "labels": "", "duration": "2h", "comment": "",
            "author": "", "incident": ""}  # fmt: skip
    raw = request.query.get("incident", "")
    if raw:
        number = path_id(raw)
        incident = await request.app[STORE].get_incident(number) if number else None
        if incident is None:
            raise NotFoundError(f"incident {raw}")
        form.update(host=incident.host, service=incident.service or "", incident=str(incident.id),
                    labels="\n".join(f"{k}={v}" for k, v in sorted(incident.labels.items())))
    return await _view(request, who, "silence_new.html", form=form, problems=[])


@page
async def show_heartbeats(request: web.Request) -> web.StreamResponse:
    who = viewer(request)
    found = await request.app[STORE].list_heartbeats()
    return await _view(request, who, "heartbeats.html", heartbeats=found)


@page
async def show_outbox(request: web.Request) -> web.StreamResponse:
    """Ticket operations by state (dead letters by default), newest first, paged."""
    who = viewer(request)
    raw = request.query.get("state", "dead")
    try:
        state = OutboxState(raw) if raw != "all" else None
    except ValueError:
        raise InputError("state: expected pending, done, dead or all") from None
    before = query_int(request.query.get("before"), "before", default=None, low=1, high=MAX_ID)
    ops = await request.app[STORE].ops(state, HISTORY_PAGE, before)
    older = ops[-1].id if len(ops) == HISTORY_PAGE else None
    return await _view(request, who, "outbox.html", ops=ops, state=raw, older=older)


def _range(request: web.Request) -> tuple[datetime, datetime]:
    now = now_of(request)
    until = _time(request.query.get("until"), "until") or now
    since = _time(request.query.get("since"), "since") or until - timedelta(days=1)
    if since >= until:
        raise InputError("since: must be before until")
    if until - since > MAX_RANGE:
        raise InputError("the range may span at most 366 days")
    return since, until


def _time(raw: str | None, name: str) -> datetime | None:
    """A time from a form: `2026-01-05T09:00` (a datetime-local field, read as UTC) or RFC 3339."""
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InputError(f"{name}: expected a time like 2026-01-05T09:00 (UTC)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@page
async def show_history(request: web.Request) -> web.StreamResponse:
    """Incidents resolved in a range, with time to ticket, to ack and to resolve."""
    who = viewer(request)
    since, until = _range(request)
    before = query_int(request.query.get("before"), "before", default=None, low=1, high=MAX_ID)
    store = request.app[STORE]
    found = await store.resolved_between(since, until, HISTORY_PAGE, before)
    ids = [i.id for i in found]
    ticketed = await store.ticket_times(ids) if ids else {}
    acked = await store.event_times(ids, EventKind.ACKNOWLEDGED.value, first=True) if ids else {}
    older = found[-1].id if len(found) == HISTORY_PAGE else None
    return await _view(request, who, "history.html", incidents=found, since=since, until=until,
                       ticketed=ticketed, acked=acked, older=older, key_text=key_text,
                       since_text=_field(since), until_text=_field(until))  # fmt: skip


@page
async def show_noisiest(request: web.Request) -> web.StreamResponse:
    """The incidents that reopened, flapped or fired most in a range."""
    who = viewer(request)
    since, until = _range(request)
    store = request.app[STORE]
    reopens = await store.noisiest_by_events(EventKind.REOPENED.value, since, until, NOISIEST)
    flaps = await store.noisiest_by_events(
        EventKind.FLAPPING_STARTED.value, since, until, NOISIEST
    )
    busiest = await store.noisiest_by_occurrences(since, until, NOISIEST)
    return await _view(request, who, "noisiest.html", reopens=reopens, flaps=flaps,
                       busiest=busiest, key_text=key_text, since_text=_field(since),
                       until_text=_field(until))  # fmt: skip


def _field(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


# -- signing in and out --------------------------------------------------------------------------


def _local(target: str | None) -> str:
    """Where to go after signing in: a console path only, never another site."""
    if target and target.startswith("/ui/") and not target.startswith("/ui//"):
        return target
    return "/ui/"


@page
async def login_form(request: web.Request) -> web.StreamResponse:
    if not request.app[LIVE].tokens:
        raise web.HTTPSeeOther("/ui/")
    return render(request, None, "login.html", {"next": _local(request.query.get("next")),
                                                "error": ""})  # fmt: skip


@page
async def login(request: web.Request) -> web.StreamResponse:
    """Exchange a token for a session cookie; the token itself never goes back to the page."""
    same_origin(request)
    live = request.app[LIVE]
    form = await request.post()
    token = form.get("token")
    target = form.get("next")
    target = _local(target if isinstance(target, str) else None)
    if not isinstance(token, str) or not token_allows(live, token.strip(), "read"):
        context = {"next": target, "error": "That token is not accepted."}
        return render(request, None, "login.html", context, status=401)
    session = request.app[CONSOLE].sessions.open(token.strip(), now_of(request))
    response = web.HTTPSeeOther(target)
    set_cookie(request, response, session)
    raise response


@page
async def logout(request: web.Request) -> web.StreamResponse:
    same_origin(request)
    session_id = request.cookies.get(COOKIE)
    if session_id:
        request.app[CONSOLE].sessions.close(session_id)
    response = web.HTTPSeeOther("/ui/login" if request.app[LIVE].tokens else "/ui/")
    response.del_cookie(COOKIE, path="/ui/")
    raise response


async def to_board(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/ui/")
