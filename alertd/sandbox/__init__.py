"""A local Freshdesk-compatible helpdesk (API v2) that rejects whatever the real one would reject;
with `flavour="freshservice"` it plays Freshservice instead (its paths and wrapped answers).

Owns the fake's state (`Sandbox`), its HTTP face (`create_app`) and the `alertd sandbox` runner
(`serve`). alertd's tests, its demo and `alertd sandbox` talk to it over real HTTP. Each request
passes the checks in this order, and every answer, errors included, carries the rate-limit headers:

    injected fault -> rate limit (429) -> Basic auth (401) -> Accept (406) -> route (404/405)
    -> Content-Type (415) -> JSON (400 invalid_json) -> fields (400, all errors at once)

Facts come from docs/protocols.md section 1. Behaviours tagged [U] there, and what differs from
account to account, are options here (`custom_statuses`, `required_fields`, `include_cost`,
`sub_limits`, `required_for_closure`, `workspaces`, `priority_matrix`, `act_late`), so tests can
state which
variant they assume. Where the facts leave a choice, the fake takes the stricter one: list and
search results leave out the description, a 404 has an empty body, and search serves the ticket
as it was when indexed.

Time: one injectable clock returning POSIX seconds drives timestamps, the search-index lag, the
30-day list window and the rate-limit window. A test advances it instead of sleeping.

The modules, each importing only those above it:

    account     SandboxOptions and the API's fixed ids, paths and limits
    errors      error bodies, `_Reject` (an answer raised to the middleware), `_DropConnection`
    formats     ISO timestamps, date-time parsing, the plain text of HTML bodies
    validation  field rules for ticket and note bodies and query strings
    search      the search query language, compiled to a predicate over ticket snapshots
    state       `Sandbox` (data, faults, clock, rate-limit window, search index) and `SANDBOX`
    front_door  the middleware: the checks above, rate-limit headers, the request record
    endpoints   the ticket endpoints
    directory   agents, groups and ticket fields, read-only, from the options
    app         `create_app` (routes) and `serve`

This package exports the names below; a name with a leading underscore is shared between its
modules but belongs to none of its users.
"""

from __future__ import annotations

from alertd.sandbox.account import (
    AGENT_ID,
    API,
    FLAVOURS,
    LIST_DAYS,
    MAX_PER_PAGE,
    PRIORITIES,
    PRIORITY_MATRIX,
    REQUESTER_FIELDS,
    SEARCH_MAX_PAGE,
    SEARCH_MAX_QUERY,
    SEARCH_PAGE_SIZE,
    SERVICE_LEVELS,
    SOURCES,
    STATUSES,
    WINDOW_SECONDS,
    SandboxOptions,
)
from alertd.sandbox.app import create_app, serve
from alertd.sandbox.state import SANDBOX, Applied, RequestRecord, Sandbox

__all__ = [
    "AGENT_ID",
    "API",
    "FLAVOURS",
    "LIST_DAYS",
    "MAX_PER_PAGE",
    "PRIORITIES",
    "PRIORITY_MATRIX",
    "REQUESTER_FIELDS",
    "SANDBOX",
    "SEARCH_MAX_PAGE",
    "SEARCH_MAX_QUERY",
    "SEARCH_PAGE_SIZE",
    "SERVICE_LEVELS",
    "SOURCES",
    "STATUSES",
    "WINDOW_SECONDS",
    "Applied",
    "RequestRecord",
    "Sandbox",
    "SandboxOptions",
    "create_app",
    "serve",
]
