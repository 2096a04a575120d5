"""The Freshdesk sandbox over real HTTP: validation, ticket lifecycle, search, limits, faults."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDictProxy

from alertd.sandbox import (
    PRIORITY_MATRIX,
    SANDBOX,
    Sandbox,
    SandboxOptions,
    create_app,
    serve,
)


def basic(login: str, password: str = "X") -> str:
    """An Authorization header value; aiohttp 3.14 deprecates BasicAuth (warnings are errors)."""
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


AUTH = basic("sandbox-key")
T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC).timestamp()
DAY = 86_400.0
VALID: dict[str, Any] = {
    "email": "noc@example.com",
    "subject": "[CRITICAL] web01/HTTP",
    "description": "<p>HTTP CRITICAL - 503</p>",
    "status": 2,
    "priority": 4,
    "source": 2,
}
# docs/protocols.md 1.3: the fixture's field set plus the newer fields; the fake returns them all.
TICKET_FIELDS = {
    *("id", "subject", "description", "description_text", "status", "priority", "source"),
    *("type", "requester_id", "responder_id", "group_id", "company_id", "product_id"),
    *("email_config_id", "cc_emails", "fwd_emails", "reply_cc_emails", "to_emails"),
    *("fr_escalated", "is_escalated", "spam", "due_by", "fr_due_by", "created_at", "updated_at"),
    *("tags", "custom_fields", "attachments", "ticket_cc_emails", "association_type"),
    *("support_email", "source_additional_info"),
}
RATE_HEADERS = ("X-RateLimit-Total", "X-RateLimit-Remaining", "X-RateLimit-Used-CurrentRequest")

Client = TestClient[web.Request, web.Application]


class Wall:
    """A clock the test moves by hand, in POSIX seconds."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Answer:
    status: int
    body: Any
    headers: CIMultiDictProxy[str]


MakeSandbox = Callable[..., Awaitable[tuple[Client, Sandbox]]]


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def make_sandbox(aiohttp_client: Callable[..., Awaitable[Client]], wall: Wall) -> MakeSandbox:
    """A sandbox app on loopback, built from option keywords, with its clock driven by `wall`."""

    async def make(**options: Any) -> tuple[Client, Sandbox]:
        client = await aiohttp_client(create_app(SandboxOptions(**options)))
        sandbox = client.app[SANDBOX]
        sandbox.set_clock(wall)
        return client, sandbox

    return make


async def call(
    client: Client, method: str, path: str, *, auth: str | None = AUTH, **kwargs: Any
) -> Answer:
    """One API request, authorised with `auth` unless that is None."""
    headers = dict(kwargs.pop("headers", {}))
    if auth is not None:
        headers["Authorization"] = auth
    async with client.request(method, "/api/v2" + path, headers=headers, **kwargs) as response:
        raw = await response.read()
        if response.content_type == "application/json":
            return Answer(response.status, json.loads(raw), response.headers)
        return Answer(response.status, raw.decode() or None, response.headers)


def error_set(answer: Answer) -> set[tuple[str, str]]:
    assert answer.status == 400, answer.body
    assert answer.body["description"] == "Validation failed"
    return {(error["field"], error["code"]) for error in answer.body["errors"]}


def search(client: Client, query: str, page: int = 1) -> Awaitable[Answer]:
    return call(client, "GET", "/search/tickets", params={"query": f'"{query}"', "page": page})


def without(body: dict[str, Any], *names: str) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key not in names}


BAD_BODIES = [
    ("create", {**VALID, "colour": "red"}, {("colour", "invalid_field")}),
    (
        "create",
        {**VALID, "status": "2", "priority": True, "tags": "alertd", "custom_fields": [1]}
        | {"group_id": 7.0},
        {
            ("status", "datatype_mismatch"),
            ("priority", "datatype_mismatch"),
            ("tags", "datatype_mismatch"),
            ("custom_fields", "datatype_mismatch"),
            ("group_id", "datatype_mismatch"),
        },
    ),
    (
        "create",
        {**VALID, "status": 6, "priority": 0, "source": 4, "type": "Bug", "group_id": 99}
        | {"email": "noc"},
        {
            ("status", "invalid_value"),
            ("priority", "invalid_value"),
            ("source", "invalid_value"),
            ("type", "invalid_value"),
            ("group_id", "invalid_value"),
            ("email", "invalid_value"),
        },
    ),
    ("create", without(VALID, "email"), {("requester_id", "missing_field")}),
    ("create", without(VALID, "email") | {"phone": "+4930123"}, {("name", "missing_field")}),
    (
        "create",
        {**VALID, "custom_fields": {"cf_alertd_key": "k", "impact_area": "db"}}
        | {"tags": ["alertd", 3], "due_by": "tomorrow", "impact": 2, "facebook_id": "fb-1"},
        {
            ("custom_fields.impact_area", "invalid_field"),
            ("tags", "datatype_mismatch"),
            ("due_by", "invalid_value"),
            ("impact", "invalid_field"),
            ("facebook_id", "invalid_value"),
        },
    ),
    (
        "create",
        {"email": "noc@example.com", "description": "  ", "parent_id": 99},
        {
            ("subject", "missing_field"),
            ("description", "missing_field"),
            ("status", "missing_field"),
            ("priority", "missing_field"),
            ("source", "missing_field"),
            ("parent_id", "invalid_value"),
        },
    ),
    (
        "update",
        {"status": 9, "created_at": "2026-01-01T10:00:00Z", "parent_id": 1}
        | {"responder_id": None, "cc_emails": ["ops@example.com", "nope"]},
        {
            ("status", "invalid_value"),
            ("created_at", "invalid_field"),
            ("parent_id", "invalid_field"),
            ("cc_emails", "invalid_value"),
        },
    ),
    (
        "note",
        {"private": "yes", "notify_emails": "ops@example.com", "kind": "x"},
        {
            ("body", "missing_field"),
            ("private", "datatype_mismatch"),
            ("notify_emails", "datatype_mismatch"),
            ("kind", "invalid_field"),
        },
    ),
    (
        "note",
        {"body": "", "user_id": 0},
        {("body", "missing_field"), ("user_id", "datatype_mismatch")},
    ),
]


@pytest.mark.parametrize(("kind", "body", "expected"), BAD_BODIES)
async def test_bad_bodies_list_every_error_and_change_nothing(
    make_sandbox: MakeSandbox, kind: str, body: dict[str, Any], expected: set[tuple[str, str]]
) -> None:
    """A bad create, update or note answers 400 naming each bad field with its code; state stays."""
    client, sandbox = await make_sandbox(groups=(7,), custom_fields=("cf_alertd_key",))
    assert (await call(client, "POST", "/tickets", json=VALID)).status == 201
    before = copy.deepcopy((sandbox.tickets, sandbox.notes, sandbox.contacts))

    method, path = {
        "create": ("POST", "/tickets"),
        "update": ("PUT", "/tickets/1"),
        "note": ("POST", "/tickets/1/notes"),
    }[kind]
    answer = await call(client, method, path, json=body)

    assert error_set(answer) == expected
    assert all(error["message"] for error in answer.body["errors"])
    assert (sandbox.tickets, sandbox.notes, sandbox.contacts) == before


TRANSPORT = [
    ("POST", "/tickets", {"auth": None, "json": VALID}, 401),
    ("POST", "/tickets", {"auth": basic("wrong-key"), "json": VALID}, 401),
    (
        "POST",
        "/tickets",
        {"data": json.dumps(VALID), "headers": {"Content-Type": "text/plain"}},
        415,
    ),
    ("POST", "/tickets", {"json": VALID, "headers": {"Accept": "application/xml"}}, 406),
    ("PUT", "/tickets", {"json": VALID}, 405),
    ("GET", "/tickets/999", {}, 404),
    ("GET", "/contacts", {}, 404),
    (
        "POST",
        "/tickets",
        {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
        400,
    ),
    ("POST", "/tickets", {"json": [VALID]}, 400),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), TRANSPORT)
async def test_transport_rules_refuse_before_the_endpoint(
    make_sandbox: MakeSandbox, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    """Auth, Accept, route, verb, Content-Type and JSON problems get their status; none stores."""
    client, sandbox = await make_sandbox()

    answer = await call(client, method, path, **kwargs)

    assert answer.status == status
    assert all(name in answer.headers for name in RATE_HEADERS)
    assert not sandbox.tickets and not sandbox.contacts
    assert [(r.method, r.path, r.status) for r in sandbox.requests] == [
        (method, "/api/v2" + path, status)
    ]
    if status == 401:
        assert answer.body == {
            "code": "invalid_credentials",
            "message": "You have to be logged in to perform this action.",
        }
    elif status == 404:
        assert answer.body is None  # clients must cope with an empty error body
    elif status == 400:
        assert answer.body["code"] == "invalid_json"
    else:
        assert set(answer.body) == {"code", "message"}


async def test_missing_accept_header_is_fine(make_sandbox: MakeSandbox) -> None:
    """Leaving out Accept altogether is allowed; only a non-JSON Accept gets 406."""
    client, _ = await make_sandbox()
    answer = await call(client, "POST", "/tickets", json=VALID, skip_auto_headers=["Accept"])
    assert answer.status == 201


BAD_QUERIES = [
    ("/tickets", {"per_page": "101"}, {("per_page", "invalid_value")}),
    (
        "/tickets",
        {"order_by": "priority", "order_type": "up", "colour": "red"},
        {
            ("order_by", "invalid_value"),
            ("order_type", "invalid_value"),
            ("colour", "invalid_field"),
        },
    ),
    (
        "/tickets",
        {"updated_since": "yesterday", "page": "0"},
        {("updated_since", "invalid_value"), ("page", "datatype_mismatch")},
    ),
    ("/tickets", {"include": "description,everything"}, {("include", "invalid_value")}),
    ("/tickets/1/conversations", {"per_page": "x"}, {("per_page", "datatype_mismatch")}),
    ("/search/tickets", {}, {("query", "missing_field")}),
    ("/search/tickets", {"query": "status:2"}, {("query", "invalid_value")}),
    ("/search/tickets", {"query": "'status:2'"}, {("query", "invalid_value")}),
    (
        "/search/tickets",
        {"query": '"' + "status:2 OR " * 43 + 'status:3"'},
        {("query", "invalid_value")},
    ),
    ("/search/tickets", {"query": "\"subject:'disk'\""}, {("query", "invalid_value")}),
    ("/search/tickets", {"query": "\"status:'2'\""}, {("query", "invalid_value")}),
    ("/search/tickets", {"query": '"(status:2 OR status:3"'}, {("query", "invalid_value")}),
    (
        "/search/tickets",
        {"query": '"status:2 AND"', "page": "11"},
        {("query", "invalid_value"), ("page", "invalid_value")},
    ),
]


@pytest.mark.parametrize(("path", "params", "expected"), BAD_QUERIES)
async def test_bad_query_strings_list_every_error(
    make_sandbox: MakeSandbox, path: str, params: dict[str, str], expected: set[tuple[str, str]]
) -> None:
    """List, conversation and search parameters are checked like bodies, all errors at once."""
    client, _ = await make_sandbox()
    assert (await call(client, "POST", "/tickets", json=VALID)).status == 201

    assert error_set(await call(client, "GET", path, params=params)) == expected


async def test_ticket_lifecycle_create_update_note_view_list(
    make_sandbox: MakeSandbox, wall: Wall
) -> None:
    """Create, update, note, view and list behave like the API, with the clock's timestamps."""
    client, sandbox = await make_sandbox(custom_fields=("cf_alertd_key",))
    body = {
        **VALID,
        "tags": ["alertd", "inc-7f3a"],
        "custom_fields": {"cf_alertd_key": "web01|HTTP"},
    }

    created = await call(client, "POST", "/tickets", json=body)
    assert created.status == 201
    ticket = created.body
    assert set(ticket) >= TICKET_FIELDS
    assert ticket["created_at"] == ticket["updated_at"] == "2026-01-01T10:00:00Z"
    assert ticket["description_text"] == "HTTP CRITICAL - 503"
    assert ticket["custom_fields"] == {"cf_alertd_key": "web01|HTTP"}
    assert (ticket["type"], ticket["responder_id"], ticket["spam"]) == (None, None, False)
    assert sandbox.tickets[ticket["id"]] == ticket
    # The same address in other case is the same contact; it is not created twice.
    other = await call(client, "POST", "/tickets", json={**VALID, "email": "NOC@example.com"})
    assert other.body["requester_id"] == ticket["requester_id"]
    assert len(sandbox.contacts) == 1

    wall.advance(60)
    updated = await call(
        client, "PUT", f"/tickets/{ticket['id']}", json={"priority": 3, "tags": ["alertd"]}
    )
    assert updated.status == 200
    assert (updated.body["priority"], updated.body["tags"]) == (3, ["alertd"])  # tags replace
    assert updated.body["custom_fields"] == {"cf_alertd_key": "web01|HTTP"}
    assert (updated.body["created_at"], updated.body["updated_at"]) == (
        "2026-01-01T10:00:00Z",
        "2026-01-01T10:01:00Z",
    )

    wall.advance(60)
    note = await call(
        client, "POST", f"/tickets/{ticket['id']}/notes", json={"body": "<p>Recovered</p>"}
    )
    assert note.status == 201
    assert (note.body["private"], note.body["incoming"], note.body["body_text"]) == (
        True,
        False,
        "Recovered",
    )
    assert note.body["ticket_id"] == ticket["id"]

    viewed = await call(
        client,
        "GET",
        f"/tickets/{ticket['id']}",
        params={"include": "stats,requester,conversations"},
    )
    assert viewed.status == 200
    assert viewed.body["updated_at"] == "2026-01-01T10:02:00Z"  # a note is activity on the ticket
    assert viewed.body["requester"]["email"] == "noc@example.com"
    assert [n["id"] for n in viewed.body["conversations"]] == [note.body["id"]]
    assert viewed.body["stats"]["resolved_at"] is None
    assert viewed.headers["X-RateLimit-Used-CurrentRequest"] == "4"  # 1 + one per include
    conversations = await call(client, "GET", f"/tickets/{ticket['id']}/conversations")
    assert conversations.body == [note.body]

    listed = await call(client, "GET", "/tickets", params={"updated_since": "2026-01-01T10:01:00Z"})
    assert [t["id"] for t in listed.body] == [ticket["id"]]
    assert "description" not in listed.body[0]  # only with include=description
    described = await call(
        client, "GET", "/tickets", params={"include": "description", "order_type": "asc"}
    )
    assert [t["id"] for t in described.body] == [ticket["id"], other.body["id"]]
    assert described.body[0]["description"] == VALID["description"]


async def test_listing_pages_by_link_and_forgets_tickets_older_than_30_days(
    make_sandbox: MakeSandbox, wall: Wall
) -> None:
    """Pages link to the next through a Link header; without updated_since only 30 days show."""
    client, sandbox = await make_sandbox()
    for _ in range(3):
        assert (await call(client, "POST", "/tickets", json=VALID)).status == 201
        wall.advance(10)

    first = await call(client, "GET", "/tickets", params={"per_page": "2", "order_type": "asc"})
    assert [t["id"] for t in first.body] == [1, 2]
    match = re.fullmatch(r'<(http://[^>]+)>; rel="next"', first.headers["Link"])
    assert match is not None
    async with client.session.get(match[1], headers={"Authorization": AUTH}) as response:
        assert [t["id"] for t in await response.json()] == [3]
        assert "Link" not in response.headers

    wall.advance(31 * DAY)
    sandbox.agent_update(1, status=3)
    assert (await call(client, "POST", "/tickets", json=VALID)).status == 201
    recent = await call(client, "GET", "/tickets")
    assert [t["id"] for t in recent.body] == [4]
    since = await call(
        client, "GET", "/tickets", params={"updated_since": "2026-01-01", "order_by": "updated_at"}
    )
    assert [t["id"] for t in since.body] == [4, 1, 3, 2]


async def test_search_grammar_paging_and_index_lag(make_sandbox: MakeSandbox, wall: Wall) -> None:
    """Search takes quoted queries with AND/OR/parentheses, pages by 30, and lags behind changes."""
    client, sandbox = await make_sandbox(custom_fields=("cf_alertd_key",), search_lag_seconds=120)
    tickets = [
        {
            **VALID,
            "tags": ["alertd"],
            "type": "Incident",
            "custom_fields": {"cf_alertd_key": "web01|HTTP"},
        },
        {**VALID, "tags": ["alertd", "db"], "priority": 2, "status": 3},
        {**VALID, "priority": 1},
    ]
    for body in tickets:
        assert (await call(client, "POST", "/tickets", json=body)).status == 201
    sandbox.agent_update(3, responder_id=5)

    assert (await search(client, "tag:'alertd'")).body == {"total": 0, "results": []}  # not indexed
    wall.advance(120)
    expectations = {
        "tag:'alertd'": [2, 1],
        "tag:'alertd' AND (status:2 OR status:3)": [2, 1],
        "tag:'alertd' AND status:2 OR priority:1": [3, 1],
        "tag:null": [3],
        "priority:>3": [1],  # :> means at least
        "priority:<1 OR cf_alertd_key:'WEB01|http'": [3, 1],
        "type:'incident' AND created_at:>'2026-01-01' AND created_at:<'2026-01-01'": [1],
        "agent_id:5": [3],
        "agent_id:null AND colour:null": None,  # not a searchable field
    }
    for query, ids in expectations.items():
        answer = await search(client, query)
        if ids is None:
            assert answer.status == 400, query
            continue
        assert answer.status == 200, (query, answer.body)
        assert [t["id"] for t in answer.body["results"]] == ids, query
        assert answer.body["total"] == len(ids)

    # A change is invisible until indexed: search serves the old state meanwhile.
    await call(client, "PUT", "/tickets/1", json={"status": 4})
    assert [t["id"] for t in (await search(client, "status:2 AND priority:4")).body["results"]] == [
        1
    ]
    assert (await search(client, "status:4")).body["total"] == 0
    wall.advance(120)
    assert [t["id"] for t in (await search(client, "status:4")).body["results"]] == [1]
    assert "description" not in (await search(client, "status:4")).body["results"][0]

    for _ in range(30):
        assert (
            await call(client, "POST", "/tickets", json={**VALID, "tags": ["bulk"]})
        ).status == 201
    wall.advance(120)
    first, second = await search(client, "tag:'bulk'"), await search(client, "tag:'bulk'", page=2)
    assert (first.body["total"], len(first.body["results"]), len(second.body["results"])) == (
        30,
        30,
        0,
    )
    assert (await search(client, "tag:'bulk' OR tag:'alertd'", page=2)).body["total"] == 32


async def test_rate_limit_counts_every_request_and_recovers_after_the_window(
    make_sandbox: MakeSandbox, wall: Wall
) -> None:
    """Failed requests spend credits; a spent minute answers 429 + Retry-After until it resets."""
    client, sandbox = await make_sandbox(rate_limit_per_minute=4)

    def budget(answer: Answer) -> tuple[int, str, str, str]:
        h = answer.headers
        return (
            answer.status,
            h["X-RateLimit-Total"],
            h["X-RateLimit-Remaining"],
            h["X-RateLimit-Used-CurrentRequest"],
        )

    assert budget(await call(client, "GET", "/tickets")) == (200, "4", "3", "1")
    assert budget(await call(client, "GET", "/tickets", auth=None)) == (401, "4", "2", "1")
    assert budget(await call(client, "GET", "/tickets", params={"include": "description"})) == (
        200,
        "4",
        "0",
        "2",
    )
    wall.advance(15)
    limited = await call(client, "GET", "/tickets")
    assert budget(limited) == (429, "4", "0", "0")
    assert limited.headers["Retry-After"] == "45"
    assert set(limited.body) == {"code", "message"}
    wall.advance(44)
    assert (await call(client, "GET", "/tickets")).headers["Retry-After"] == "1"
    wall.advance(1)
    assert budget(await call(client, "GET", "/tickets")) == (200, "4", "3", "1")

    assert [r.status for r in sandbox.requests] == [200, 401, 200, 429, 429, 200]
    assert [r.time - T0 for r in sandbox.requests] == [0, 0, 0, 15, 59, 60]


async def test_faults_fail_drop_delete_and_archive(make_sandbox: MakeSandbox) -> None:
    """Injected errors come before auth, a dropped create is stored, a ticket in the trash is
    readable but refuses changes with 405 until restored, an archived one is a 404 except under
    /tickets/archived/{id}."""
    client, sandbox = await make_sandbox()
    sandbox.fail_next(2)
    sandbox.fail_next(1, 429, retry_after=7)
    unavailable = await call(client, "POST", "/tickets", json=VALID, auth=None)
    assert (unavailable.status, unavailable.body[:6]) == (503, "<html>")  # a gateway's page
    assert (await call(client, "POST", "/tickets", json=VALID)).status == 503
    throttled = await call(client, "GET", "/tickets")
    assert (throttled.status, throttled.headers["Retry-After"]) == (429, "7")
    assert all(name in throttled.headers for name in RATE_HEADERS)
    assert not sandbox.tickets

    sandbox.drop_after_create()
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await call(client, "POST", "/tickets", json=VALID)
    assert list(sandbox.tickets) == [1]  # stored, though the client never heard so
    assert (sandbox.requests[-1].status, sandbox.requests[-1].body) == (None, VALID)
    assert (await call(client, "POST", "/tickets", json=VALID)).body["id"] == 2

    sandbox.delete(1)
    trashed = await call(client, "GET", "/tickets/1")
    assert (trashed.status, trashed.body["deleted"]) == (200, True)  # still readable
    for method, path, kwargs in [
        ("PUT", "/tickets/1", {"json": {"status": 4}}),
        ("POST", "/tickets/1/notes", {"json": {"body": "x"}}),
        ("DELETE", "/tickets/1", {}),
    ]:
        assert (await call(client, method, path, **kwargs)).status == 405, (method, path)
    assert (await call(client, "DELETE", "/tickets/2")).status == 204
    assert not sandbox.tickets and set(sandbox.deleted) == {1, 2}
    deleted = await call(client, "GET", "/tickets", params={"filter": "deleted"})
    assert sorted(t["id"] for t in deleted.body) == [1, 2]
    assert (await call(client, "GET", "/tickets")).body == []
    assert (await search(client, "status:2")).body["total"] == 0
    assert (await call(client, "PUT", "/tickets/2/restore")).status == 204
    assert (await call(client, "PUT", "/tickets/2", json={"status": 5})).status == 200

    sandbox.agent_update(2, status=5)
    sandbox.archive(2)
    assert (await call(client, "GET", "/tickets/2")).status == 404
    assert (await call(client, "PUT", "/tickets/2", json={"status": 2})).status == 404
    archived = await call(client, "GET", "/tickets/archived/2")
    assert (archived.status, archived.body["id"], archived.body["status"]) == (200, 2, 5)
    assert (await call(client, "GET", "/tickets")).body == []


async def test_spam_merges_and_closure_rules_refuse_what_the_api_refuses(
    make_sandbox: MakeSandbox,
) -> None:
    """Spam answers 405 on update; a merge closes the secondary with a note naming the primary;
    a field required for closure refuses a resolve until it is set."""
    client, sandbox = await make_sandbox(
        custom_fields=("cf_root_cause",), required_for_closure=("custom_fields.cf_root_cause",)
    )
    for _ in range(3):
        await call(client, "POST", "/tickets", json=VALID)
    sandbox.mark_spam(1)
    assert (await call(client, "PUT", "/tickets/1", json={"priority": 1})).status == 405
    assert (await call(client, "GET", "/tickets", params={"filter": "spam"})).body[0]["id"] == 1

    refused = await call(client, "PUT", "/tickets/2", json={"status": 4})
    assert error_set(refused) == {("custom_fields.cf_root_cause", "missing_field")}
    fields = (await call(client, "GET", "/ticket_fields")).body
    assert [f["required_for_closure"] for f in fields if f["name"] == "cf_root_cause"] == [True]
    merged = await call(client, "PUT", "/tickets/merge", json={"primary_id": 2, "ticket_ids": [3]})
    assert merged.status == 204
    assert sandbox.tickets[3]["status"] == 5 and sandbox.merged == {3: 2}
    assert "merged into ticket 2" in sandbox.notes[3][-1]["body"]
    done = {"status": 4, "custom_fields": {"cf_root_cause": "disk"}}
    assert (await call(client, "PUT", "/tickets/2", json=done)).status == 200


async def test_tags_are_limited_in_length_and_number(make_sandbox: MakeSandbox) -> None:
    """A tag longer than 32 characters, or more than 30 tags, is refused as the API does."""
    client, _ = await make_sandbox()
    fits = {**VALID, "tags": ["a" * 32] + [f"t{n}" for n in range(29)]}
    assert (await call(client, "POST", "/tickets", json=fits)).status == 201
    long = await call(client, "POST", "/tickets", json={**VALID, "tags": ["a" * 33]})
    many = await call(client, "POST", "/tickets", json={**VALID, "tags": ["t"] * 31})
    assert error_set(long) == error_set(many) == {("tags", "invalid_value")}
    assert (await call(client, "PUT", "/tickets/1", json={"tags": ["b" * 33]})).status == 400


async def test_sub_limits_refuse_one_class_and_let_others_through(
    make_sandbox: MakeSandbox, wall: Wall
) -> None:
    """With a list sub-limit of 2 a third list is a 429 with Retry-After, while creates and views
    still pass within the account total; the class budget comes back after its minute."""
    client, _ = await make_sandbox(sub_limits={"list": 2, "create": 5})
    assert (await call(client, "GET", "/tickets")).status == 200
    wall.advance(20)
    assert (await search(client, "status:2")).status == 200
    throttled = await call(client, "GET", "/tickets")
    assert (throttled.status, throttled.headers["Retry-After"]) == (429, "40")
    assert (await call(client, "POST", "/tickets", json=VALID)).status == 201
    assert (await call(client, "GET", "/tickets/1")).status == 200
    wall.advance(40)
    assert (await call(client, "GET", "/tickets")).status == 200
    with pytest.raises(ValueError, match="sub_limits"):
        SandboxOptions(sub_limits={"delete": 1})


async def test_agent_update_bumps_updated_at_and_follows_field_rules(
    make_sandbox: MakeSandbox, wall: Wall
) -> None:
    """An agent's change shows in the API with a new updated_at; invalid changes raise."""
    client, sandbox = await make_sandbox()
    await call(client, "POST", "/tickets", json=VALID)
    wall.advance(90)

    sandbox.agent_update(1, priority=1, status=4, responder_id=42)

    ticket = (await call(client, "GET", "/tickets/1", params={"include": "stats"})).body
    assert (ticket["priority"], ticket["status"], ticket["responder_id"]) == (1, 4, 42)
    assert ticket["updated_at"] == ticket["stats"]["resolved_at"] == "2026-01-01T10:01:30Z"
    with pytest.raises(ValueError, match="priority"):
        sandbox.agent_update(1, priority=9)
    with pytest.raises(ValueError, match="colour"):
        sandbox.agent_update(1, colour="red")


async def test_account_options_change_what_is_accepted(make_sandbox: MakeSandbox) -> None:
    """Custom statuses (listed among the ticket fields) and relaxed required fields apply."""
    client, _ = await make_sandbox(required_fields=(), custom_statuses=(6,))
    minimal = await call(client, "POST", "/tickets", json={"email": "noc@example.com"})
    assert (minimal.body["status"], minimal.body["priority"], minimal.body["source"]) == (2, 1, 2)
    assert (await call(client, "PUT", "/tickets/1", json={"status": 6})).body["status"] == 6
    (status,) = [f for f in (await call(client, "GET", "/ticket_fields")).body
                 if f["name"] == "status"]  # fmt: skip
    assert list(status["choices"]) == ["2", "3", "4", "5", "6"]

    with pytest.raises(ValueError, match="flavour"):
        SandboxOptions(flavour="zendesk")


async def test_freshservice_mode_answers_with_freshservice_paths_and_shapes(
    make_sandbox: MakeSandbox,
) -> None:
    """Freshservice wraps answers, filters at /tickets/filter (no /search/tickets), lists ticket
    fields at /ticket_form_fields, numbers sources its own way, takes impact/urgency 1-3, keeps
    each ticket in a workspace (lists see the primary one unless asked, 0 for all), and its
    Priority Matrix overrules the priority sent with impact and urgency."""
    client, _ = await make_sandbox(
        flavour="freshservice", workspaces=(2, 5), priority_matrix=PRIORITY_MATRIX
    )
    body = {**VALID, "impact": 3, "urgency": 2, "source": 4}  # 4 = Chat on Freshservice
    created = await call(client, "POST", "/tickets", json=body)
    ticket = created.body["ticket"]
    assert (created.status, ticket["impact"], ticket["urgency"], ticket["workspace_id"]) == (
        201, 3, 2, 2,
    )  # fmt: skip
    assert ticket["priority"] == 3  # the matrix: high impact, medium urgency; 4 was sent
    assert "product_id" not in ticket and "company_id" not in ticket
    other = await call(client, "POST", "/tickets", json={**VALID, "workspace_id": 5})
    assert other.body["ticket"]["workspace_id"] == 5
    bad = await call(client, "PUT", "/tickets/1", json={"impact": 4, "urgency": "high"})
    assert error_set(bad) == {("impact", "invalid_value"), ("urgency", "datatype_mismatch")}
    desk_only = await call(client, "POST", "/tickets", json={**VALID, "product_id": 1})
    assert error_set(desk_only) == {("product_id", "invalid_field")}

    assert (await search(client, "status:2")).status == 404

    def ids(answer: Answer) -> list[int]:
        return [t["id"] for t in answer.body["tickets"]]

    def filtered(query: str, **params: Any) -> Awaitable[Answer]:
        return call(client, "GET", "/tickets/filter", params={"query": f'"{query}"', **params})

    assert ids(await filtered("impact:3 AND urgency:<1")) == []
    assert ids(await filtered("impact:3 AND urgency:<2")) == [1]
    assert ids(await filtered("status:2")) == [1]  # the primary workspace only
    assert ids(await filtered("status:2", workspace_id=5)) == [2]
    assert ids(await filtered("status:2", workspace_id=0)) == [2, 1]
    assert ids(await call(client, "GET", "/tickets")) == [1]
    assert ids(await call(client, "GET", "/tickets", params={"workspace_id": "0"})) == [2, 1]
    no_order = await call(client, "GET", "/tickets", params={"order_by": "created_at"})
    assert error_set(no_order) == {("order_by", "invalid_field")}

    note = await call(client, "POST", "/tickets/1/notes", json={"body": "<p>x</p>"})
    assert (note.status, note.body["conversation"]["ticket_id"]) == (201, 1)
    conversations = (await call(client, "GET", "/tickets/1/conversations")).body
    assert conversations["meta"] == {"count": 1}
    assert (await call(client, "GET", "/tickets/1")).body["ticket"]["id"] == 1
    assert (await call(client, "GET", "/ticket_fields")).status == 404
    form = (await call(client, "GET", "/ticket_form_fields")).body["ticket_fields"]
    assert form[0]["choices"][0] == {"id": 2, "value": "Open"}


async def test_serve_prints_its_address_and_answers_until_cancelled(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`serve` listens where it says, answers the API, and stops cleanly when cancelled."""
    task = asyncio.create_task(serve("127.0.0.1", 0, SandboxOptions(api_key="k")))
    for _ in range(200):
        if match := re.search(r"http://127\.0\.0\.1:\d+/api/v2/", capsys.readouterr().out):
            break
        await asyncio.sleep(0.01)
    assert match is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(match[0] + "tickets", headers={"Authorization": basic("k")}) as response,
    ):
        assert (response.status, await response.json()) == (200, [])

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_late_helpdesk_acts_on_writes_after_the_client_gave_up(
    make_sandbox: MakeSandbox,
) -> None:
    """`act_late`: a create, an update and a note each take effect only after the lateness,
    then are answered; a client that stopped waiting does not stop them. `applied` keeps the
    order they took effect in."""
    client, sandbox = await make_sandbox(act_late=2.0)
    created = await call(client, "POST", "/tickets", json=VALID)
    assert created.status == 201
    ticket_id = created.body["id"]
    assert sandbox.tickets[ticket_id]["status"] == 2

    async def give_up(method: str, path: str, body: dict[str, Any]) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(call(client, method, path, json=body), 0.05)

    await give_up("PUT", f"/tickets/{ticket_id}", {"status": 4})
    await give_up("POST", f"/tickets/{ticket_id}/notes", {"body": "<p>Resolved</p>"})
    # Neither has taken effect yet: a client looking now sees the ticket as it was.
    assert sandbox.tickets[ticket_id]["status"] == 2
    assert sandbox.notes[ticket_id] == []
    for _ in range(200):
        if sandbox.notes[ticket_id]:
            break
        await asyncio.sleep(0.05)
    assert sandbox.tickets[ticket_id]["status"] == 4
    assert [n["body"] for n in sandbox.notes[ticket_id]] == ["<p>Resolved</p>"]
    assert [(a.kind, a.ticket_id) for a in sandbox.applied] == [
        ("create", ticket_id),
        ("update", ticket_id),
        ("note", ticket_id),
    ]
    assert sandbox.applied[1].body == {"status": 4}


async def test_a_late_write_that_is_refused_is_still_refused(make_sandbox: MakeSandbox) -> None:
    """Lateness changes when a write acts, not what the API says of a bad one."""
    client, sandbox = await make_sandbox(act_late=0.1)
    created = await call(client, "POST", "/tickets", json=VALID)
    refused = await call(client, "PUT", f"/tickets/{created.body['id']}", json={"status": 99})
    assert refused.status == 400
    assert [a.kind for a in sandbox.applied] == ["create"]


def test_act_late_must_be_a_sane_number_of_seconds_and_a_write() -> None:
    with pytest.raises(ValueError, match="act_late"):
        SandboxOptions(act_late=-1)
    with pytest.raises(ValueError, match="act_late"):
        Sandbox().act_late(1.0, kind="delete")
