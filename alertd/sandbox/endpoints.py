"""The ticket endpoints: create, view, update, delete, notes, conversations, list and search;
each reads its request (JSON body, query string), calls the state and shapes the answer,
including paging and `Link` headers."""

from __future__ import annotations

import asyncio
import copy
import json
import math
from collections.abc import Collection
from typing import Any, Final

from aiohttp import hdrs, web

from alertd.sandbox.account import (
    AGENT_ID,
    LIST_DAYS,
    MAX_PER_PAGE,
    SEARCH_MAX_PAGE,
    SEARCH_MAX_QUERY,
    SEARCH_PAGE_SIZE,
)
from alertd.sandbox.errors import _DropConnection, _error, _FieldError
from alertd.sandbox.search import _compile_query, _Predicate, _QueryError
from alertd.sandbox.state import SANDBOX
from alertd.sandbox.validation import _Params


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except ValueError as exc:
        raise _error(400, "invalid_json", f"Request body has invalid json format: {exc}") from exc
    if not isinstance(value, dict):
        raise _error(400, "invalid_json", "Request body must be a JSON object")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _ticket_id(request: web.Request) -> int:
    return int(request.match_info["ticket_id"])


def _next_link(request: web.Request, page: int) -> dict[str, str]:
    url = request.url.update_query(page=str(page + 1))
    return {hdrs.LINK: f'<{url}>; rel="next"'}


async def _create_ticket(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    _Params(request, ()).done()
    body = await _json_object(request)
    if sandbox._late:
        # Acting late, and acting whatever becomes of the client meanwhile: a client that
        # gives up or dies does not stop a server that has the request (aiohttp would cancel
        # this handler when the connection goes; the shielded task goes on).
        ticket = await asyncio.shield(sandbox._act_late(sandbox._late.popleft(), body))
    else:
        ticket = sandbox._create(body)
    if sandbox._stalls:
        await asyncio.sleep(sandbox._stalls.popleft())
    if sandbox._take_drop():
        raise _DropConnection
    return web.json_response(sandbox._render(ticket, ()), status=201)


async def _view_ticket(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    ticket = sandbox._existing(_ticket_id(request))
    params = _Params(request, ("include",))
    includes = params.includes(("stats", "requester", "company", "conversations"))
    params.done()
    return web.json_response(sandbox._render(ticket, includes))


async def _update_ticket(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    _Params(request, ()).done()
    ticket = sandbox._update(_ticket_id(request), await _json_object(request))
    return web.json_response(sandbox._render(ticket, ()))


async def _delete_ticket(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    ticket_id = _ticket_id(request)
    sandbox._existing(ticket_id)
    sandbox.delete(ticket_id)
    return web.Response(status=204)


async def _add_note(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    ticket_id = _ticket_id(request)
    sandbox._existing(ticket_id)  # an unknown ticket is a 404 even when the body is also bad
    _Params(request, ()).done()
    note = sandbox._add_note(ticket_id, await _json_object(request))
    return web.json_response(note, status=201)


async def _conversations(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    ticket_id = _ticket_id(request)
    sandbox._existing(ticket_id)
    params = _Params(request, ("page", "per_page"))
    page = params.number("page", 1)
    per_page = params.number("per_page", 30, high=MAX_PER_PAGE)
    params.done()
    notes = sandbox.notes[ticket_id]
    start = (page - 1) * per_page
    more = len(notes) > start + per_page
    headers = _next_link(request, page) if more else {}
    return web.json_response(notes[start : start + per_page], headers=headers)


_LIST_PARAMS: Final = (
    "filter",
    "requester_id",
    "email",
    "unique_external_id",
    "company_id",
    "updated_since",
    "order_by",
    "order_type",
    "page",
    "per_page",
    "include",
)


async def _list_tickets(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    params = _Params(request, _LIST_PARAMS)
    view = params.choice("filter", "", ("", "new_and_my_open", "watching", "spam", "deleted"))
    requester_id = params.optional_number("requester_id")
    company_id = params.optional_number("company_id")
    since = params.since("updated_since")
    order_by = params.choice(
        "order_by", "created_at", ("created_at", "due_by", "updated_at", "status")
    )
    descending = params.choice("order_type", "desc", ("asc", "desc")) == "desc"
    page = params.number("page", 1)
    per_page = params.number("per_page", 30, high=MAX_PER_PAGE)
    includes = params.includes(("description", "requester", "stats"))
    params.done()

    email, external = request.query.get("email"), request.query.get("unique_external_id")
    if email is not None:
        requester_id = sandbox._find_contact("email", email) or -1
    elif external is not None:
        requester_id = sandbox._find_contact("unique_external_id", external) or -1
    now = sandbox.now()
    pool = sandbox.deleted if view == "deleted" else sandbox.tickets

    def wanted(ticket: dict[str, Any]) -> bool:
        ticket_id = ticket["id"]
        if since is not None:
            # Compare whole seconds: the client only ever saw updated_at to the second.
            fresh = math.floor(sandbox._updated[ticket_id]) >= since.timestamp()
        else:
            fresh = sandbox._created[ticket_id] >= now - LIST_DAYS * 86400
        return (
            fresh
            and (requester_id is None or ticket["requester_id"] == requester_id)
            and (company_id is None or ticket["company_id"] == company_id)
            and (view != "spam" or ticket["spam"])
            and (
                view != "new_and_my_open"
                or (ticket["status"] == 2 and ticket["responder_id"] in (None, AGENT_ID))
            )
            and view != "watching"  # nobody watches anything here
        )

    def sort_key(ticket: dict[str, Any]) -> tuple[Any, int]:
        ticket_id: int = ticket["id"]
        if order_by == "created_at":
            return (sandbox._created[ticket_id], ticket_id)
        if order_by == "updated_at":
            return (sandbox._updated[ticket_id], ticket_id)
        return (ticket[order_by] or "", ticket_id)

    found = sorted(filter(wanted, pool.values()), key=sort_key, reverse=descending)
    start = (page - 1) * per_page
    shown = [
        _listed(sandbox._render(t, includes), includes) for t in found[start : start + per_page]
    ]
    headers = _next_link(request, page) if len(found) > start + per_page else {}
    return web.json_response(shown, headers=headers)


def _listed(ticket: dict[str, Any], includes: Collection[str]) -> dict[str, Any]:
    # Accounts created after 2018-11-30 list tickets without the description unless asked for.
    if "description" not in includes:
        del ticket["description"], ticket["description_text"]
    return ticket


async def _search_tickets(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    params = _Params(request, ("query", "page", "per_page"))  # per_page is accepted and ignored
    page = params.number("page", 1, high=SEARCH_MAX_PAGE)
    raw = request.query.get("query")
    predicate: _Predicate | None = None
    if raw is None:
        params.errors.append(_FieldError("query", "It should be a/an String", "missing_field"))
    elif len(raw) < 2 or not (raw.startswith('"') and raw.endswith('"')):
        params.errors.append(
            _FieldError("query", "The query should be wrapped in double quotes", "invalid_value")
        )
    elif len(raw) - 2 > SEARCH_MAX_QUERY:
        params.errors.append(
            _FieldError(
                "query", f"It should be at most {SEARCH_MAX_QUERY} characters", "invalid_value"
            )
        )
    else:
        try:
            predicate = _compile_query(raw[1:-1], sandbox.options)
        except _QueryError as exc:
            params.errors.append(_FieldError("query", str(exc), "invalid_value"))
    params.done()
    assert predicate is not None  # every path that leaves it None added an error above
    found = sorted(
        filter(predicate, sandbox._indexed()),
        key=lambda t: (t["created_at"], t["id"]),
        reverse=True,
    )
    start = (page - 1) * SEARCH_PAGE_SIZE
    results = [_listed(copy.deepcopy(t), ()) for t in found[start : start + SEARCH_PAGE_SIZE]]
    return web.json_response({"total": len(found), "results": results})
