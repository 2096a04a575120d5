"""The ticket endpoints: create, view, update, delete, restore, merge, notes, conversations, list,
search (Freshdesk) or filter (Freshservice), archived tickets and ticket fields; each reads its
request (JSON body, query string), calls the state and shapes the answer as the account's product
does (Freshservice wraps each answer in an object: `{"ticket": ...}`), including paging and
`Link` headers."""

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
    MAX_LIST_PAGE,
    MAX_PER_PAGE,
    SEARCH_MAX_PAGE,
    SEARCH_MAX_QUERY,
    SEARCH_PAGE_SIZE,
)
from alertd.sandbox.errors import _DropConnection, _error, _FieldError, _not_found
from alertd.sandbox.search import _compile_query, _Predicate, _QueryError
from alertd.sandbox.state import SANDBOX, Sandbox
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


def _shaped(sandbox: Sandbox, key: str, value: Any, **extra: Any) -> Any:
    """Freshservice wraps every answer in an object named after what it holds; Freshdesk not."""
    return {key: value, **extra} if sandbox.options.service else value


def _only_on(sandbox: Sandbox, flavour: str) -> None:
    """An endpoint the other product does not have answers 404, as an unknown path does."""
    if sandbox.options.flavour != flavour:
        raise _not_found()


def _next_link(request: web.Request, page: int) -> dict[str, str]:
    url = request.url.update_query(page=str(page + 1))
    return {hdrs.LINK: f'<{url}>; rel="next"'}


async def _create_ticket(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    _Params(request, ()).done()
    body = await _json_object(request)
    ticket = await sandbox._act("create", lambda: sandbox._create(body))
    if sandbox._stalls:
        await asyncio.sleep(sandbox._stalls.popleft())
    if sandbox._take_drop():
        raise _DropConnection
    return web.json_response(_shaped(sandbox, "ticket", sandbox._render(ticket, ())), status=201)


async def _view_ticket(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    ticket = sandbox._existing(_ticket_id(request))
    params = _Params(request, ("include",))
    includes = params.includes(("stats", "requester", "company", "conversations"))
    params.done()
    return web.json_response(_shaped(sandbox, "ticket", sandbox._render(ticket, includes)))


async def _archived_ticket(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    _only_on(sandbox, "freshdesk")
    ticket = sandbox.archived.get(_ticket_id(request))
    if ticket is None:
        raise _not_found()
    _Params(request, ()).done()
    return web.json_response(sandbox._render(ticket, ()))


async def _update_ticket(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    _Params(request, ()).done()
    ticket_id, body = _ticket_id(request), await _json_object(request)
    ticket = await sandbox._act("update", lambda: sandbox._update(ticket_id, body))
    return web.json_response(_shaped(sandbox, "ticket", sandbox._render(ticket, ())))


async def _restore_ticket(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    _Params(request, ()).done()
    sandbox._restore(_ticket_id(request))
    return web.Response(status=204)


async def _merge_tickets(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    _only_on(sandbox, "freshdesk")
    _Params(request, ()).done()
    sandbox._merge(await _json_object(request))
    return web.Response(status=204)


async def _ticket_fields(request: web.Request) -> web.Response:
    """The ticket fields with the status choices, custom statuses included: Freshdesk at
    /ticket_fields (an array), Freshservice at /ticket_form_fields (wrapped)."""
    sandbox = request.app[SANDBOX]
    service = request.path.endswith("/ticket_form_fields")
    _only_on(sandbox, "freshservice" if service else "freshdesk")
    _Params(request, ()).done()
    names = {2: "Open", 3: "Pending", 4: "Resolved", 5: "Closed"}
    statuses = [*names, *sandbox.options.custom_statuses]
    label = {s: names.get(s, f"Custom status {s}") for s in statuses}
    status: dict[str, Any] = {"id": 1, "name": "status", "label": "Status", "position": 1}
    if service:
        status |= {"field_type": "default_status", "required": True}
        status["choices"] = [{"id": s, "value": label[s]} for s in statuses]
    else:
        status |= {"type": "default_status", "required_for_closure": False}
        status["choices"] = {str(s): [label[s], label[s]] for s in statuses}
    fields = [status]
    for position, name in enumerate(sandbox.options.custom_fields, start=2):
        closure = f"custom_fields.{name}" in sandbox.options.required_for_closure
        fields.append(
            {"id": position, "name": name, "label": name, "position": position}
            | ({"field_type": "custom_text", "required": False} if service else {})
            | ({} if service else {"type": "custom_text", "required_for_closure": closure})
        )
    return web.json_response(_shaped(sandbox, "ticket_fields", fields))


async def _delete_ticket(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    ticket_id = _ticket_id(request)
    sandbox._writable(ticket_id)  # a ticket already in the trash cannot be deleted again
    sandbox.delete(ticket_id)
    return web.Response(status=204)


async def _add_note(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    ticket_id = _ticket_id(request)
    sandbox._existing(ticket_id)  # an unknown ticket is a 404 even when the body is also bad
    _Params(request, ()).done()
    body = await _json_object(request)
    note = await sandbox._act("note", lambda: sandbox._add_note(ticket_id, body))
    return web.json_response(_shaped(sandbox, "conversation", note), status=201)


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
    shown = _shaped(
        sandbox, "conversations", notes[start : start + per_page], meta={"count": len(notes)}
    )
    return web.json_response(shown, headers=headers)


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
# Freshservice's list has no order_by and no company or external-id filters, but workspaces.
_SERVICE_LIST_PARAMS: Final = (
    "filter",
    "requester_id",
    "email",
    "updated_since",
    "order_type",
    "page",
    "per_page",
    "include",
    "workspace_id",
)


def _workspace(sandbox: Sandbox, params: _Params) -> int | None:
    """The workspace a Freshservice list or filter sees: the primary one unless `workspace_id`
    names another; 0 means all of them (None here)."""
    raw = params.raw("workspace_id")
    if raw == "0":
        return None
    chosen = params.optional_number("workspace_id")
    if chosen is not None and chosen not in sandbox.options.workspaces:
        params.errors.append(
            _FieldError("workspace_id", "There is no such workspace", "invalid_value")
        )
    return chosen if chosen is not None else sandbox.options.workspaces[0]


async def _list_tickets(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    service = sandbox.options.service
    params = _Params(request, _SERVICE_LIST_PARAMS if service else _LIST_PARAMS)
    view = params.choice("filter", "", ("", "new_and_my_open", "watching", "spam", "deleted"))
    requester_id = params.optional_number("requester_id")
    company_id = params.optional_number("company_id")
    since = params.since("updated_since")
    order_by = params.choice(
        "order_by", "created_at", ("created_at", "due_by", "updated_at", "status")
    )
    descending = params.choice("order_type", "desc", ("asc", "desc")) == "desc"
    page = params.number("page", 1, high=MAX_LIST_PAGE)
    per_page = params.number("per_page", 30, high=MAX_PER_PAGE)
    workspace = _workspace(sandbox, params) if service else None
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
            and (view == "spam") == ticket["spam"]
            and (workspace is None or ticket["workspace_id"] == workspace)
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
    return web.json_response(_shaped(sandbox, "tickets", shown), headers=headers)


def _listed(ticket: dict[str, Any], includes: Collection[str]) -> dict[str, Any]:
    # Accounts created after 2018-11-30 list tickets without the description unless asked for.
    if "description" not in includes:
        del ticket["description"], ticket["description_text"]
    return ticket


async def _search_tickets(request: web.Request) -> web.Response:
    """Freshdesk's search: `{"total", "results"}`; Freshservice has no such path."""
    sandbox = request.app[SANDBOX]
    _only_on(sandbox, "freshdesk")
    params = _Params(request, ("query", "page", "per_page"))  # per_page is accepted and ignored
    found, page = _query(request, params, None)
    start = (page - 1) * SEARCH_PAGE_SIZE
    results = [_listed(copy.deepcopy(t), ()) for t in found[start : start + SEARCH_PAGE_SIZE]]
    return web.json_response({"total": len(found), "results": results})


async def _filter_tickets(request: web.Request) -> web.Response:
    """Freshservice's filter: the same query language, `{"tickets", "total"}`, one workspace."""
    sandbox = request.app[SANDBOX]
    _only_on(sandbox, "freshservice")
    params = _Params(request, ("query", "page", "workspace_id"))
    workspace = _workspace(sandbox, params)
    found, page = _query(request, params, workspace)
    start = (page - 1) * SEARCH_PAGE_SIZE
    tickets = [_listed(copy.deepcopy(t), ()) for t in found[start : start + SEARCH_PAGE_SIZE]]
    return web.json_response({"tickets": tickets, "total": len(found)})


def _query(
    request: web.Request, params: _Params, workspace: int | None
) -> tuple[list[dict[str, Any]], int]:
    """The indexed tickets a `query=` matches, newest first, and the page asked for."""
    sandbox = request.app[SANDBOX]
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
        (
            t
            for t in sandbox._indexed()
            if predicate(t) and (workspace is None or t.get("workspace_id") == workspace)
        ),
        key=lambda t: (t["created_at"], t["id"]),
        reverse=True,
    )
    return found, page
