"""The web console over HTTP (no browser): pages, filters in the address, sessions, CSRF,
read-only mode, escaping and the security headers. tests/e2e/test_console_browser.py drives
the same console in a real Chromium."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from alertd.http.keys import ENGINE
from alertd.sandbox import Sandbox
from tests.support import CRIT, Client, MakeClient, deliver, post

HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def page(client: Client, path: str, **params: str) -> str:
    response = await client.get(path, params=params)
    assert response.status == 200, await response.text()
    return await response.text()


async def test_the_board_lists_live_incidents_urgent_first_with_headers(
    make_client: MakeClient,
) -> None:
    """Urgent before low, the CSP forbids inline script, and every page is `no-store`."""
    client = await make_client()
    await post(client, [{**CRIT, "host": "a-low", "state": "UNKNOWN"},
                        {**CRIT, "host": "b-crit"}])  # fmt: skip
    response = await client.get("/ui/")
    text = await response.text()
    assert response.status == 200
    assert text.index("b-crit/HTTP") < text.index("a-low/HTTP")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"


async def test_every_console_answer_has_its_headers_and_no_other_does(
    make_client: MakeClient,
) -> None:
    """Pages, files, redirects, sign-in redirects and errors under /ui carry the console's
    security headers (files without `no-store`); the API and probes do not."""
    client = await make_client('[auth]\ntokens = ["s3cret-token-123456"]\n')
    answers = {
        "/ui": 301, "/ui/": 303, "/ui/login": 200, "/ui/static/console.css": 200,
        "/ui/no-such-page": 404,
    }  # fmt: skip
    for path, status in answers.items():
        response = await client.get(path, allow_redirects=False)
        assert response.status == status, path
        assert response.headers["X-Frame-Options"] == "DENY", path
        assert "script-src 'self'" in response.headers["Content-Security-Policy"], path
        static = path.startswith("/ui/static/")
        assert response.headers.get("Cache-Control") == (None if static else "no-store"), path
        assert "X-Request-Id" in response.headers or status < 400, path
    for path in ("/healthz", "/api/v1/incidents", "/metrics"):
        response = await client.get(path)
        assert "Content-Security-Policy" not in response.headers, path
        assert "Cache-Control" not in response.headers, path


async def test_filters_and_grouping_live_in_the_address(make_client: MakeClient) -> None:
    """Host glob, priority, label, host group and output text each narrow the board."""
    client = await make_client()
    await post(client, [
        {**CRIT, "host": "web-01", "labels": {"hostgroups": "prod,web"}},
        {**CRIT, "host": "db-01", "output": "disk full", "labels": {"hostgroups": "prod"}},
        {**CRIT, "host": "dev-01", "state": "WARNING"},
    ])  # fmt: skip
    assert "db-01" not in await page(client, "/ui/", host="web-*")
    assert "web-01" in await page(client, "/ui/", host="web-*")
    assert "dev-01" not in await page(client, "/ui/", priority="high")
    only = await page(client, "/ui/", q="DISK")
    assert "db-01" in only and "web-01" not in only
    assert "dev-01" not in await page(client, "/ui/", hostgroup="prod")
    assert "db-01" not in await page(client, "/ui/", label="hostgroups=*web*")
    grouped = await page(client, "/ui/", group="hostgroup")
    assert "host group: prod" in grouped and "host group: web" in grouped
    bad = await client.get("/ui/", params={"priority": "huge"})
    assert bad.status == 400 and "priority" in await bad.text()


async def test_the_board_pages(make_client: MakeClient) -> None:
    """With more incidents than a page holds, the board says how many pages and links on."""
    client = await make_client("[ui]\npage_size = 2\n")
    await post(client, [{**CRIT, "host": f"h{n}"} for n in range(5)])
    first = await page(client, "/ui/")
    assert "page 1 of 3" in first and 'rel="next" href="/ui/?page=2"' in first
    assert "page 3 of 3" in await page(client, "/ui/", page="3")


async def test_monitored_text_is_escaped_everywhere(make_client: MakeClient) -> None:
    """Output, labels and host names reach the page as text, never as markup."""
    client = await make_client()
    hostile = {**CRIT, "host": f"h{HOSTILE}", "output": HOSTILE,
               "long_output": "javascript:alert(3)", "labels": {"x": HOSTILE}}  # fmt: skip
    await post(client, hostile)
    (incident,) = client.app[ENGINE].incidents()
    for text in [await page(client, "/ui/"), await page(client, f"/ui/incidents/{incident.id}")]:
        assert "<script>alert" not in text and "<img src=x" not in text
        assert "&lt;script&gt;" in text
        assert 'href="javascript:' not in text


async def test_ack_needs_the_csrf_token_and_same_origin(make_client: MakeClient) -> None:
    """An ack without the page's CSRF token, or from another origin, is refused; with both it
    goes through the engine and lands in the audit trail with its author."""
    client = await make_client()
    await post(client, CRIT)
    (incident,) = client.app[ENGINE].incidents()
    path = f"/ui/incidents/{incident.id}"
    text = await page(client, path)
    origin = {"Origin": str(client.make_url("")).rstrip("/")}
    refused = await client.post(f"{path}/ack", data={"csrf": "wrong"}, headers=origin)
    assert refused.status == 403
    cross = await client.post(f"{path}/ack", data={"csrf": csrf_of(text)},
                              headers={"Origin": "http://evil.example"})  # fmt: skip
    assert cross.status == 403
    response = await client.post(f"{path}/ack", headers=origin, allow_redirects=False,
                                 data={"csrf": csrf_of(text), "author": "alice",
                                       "comment": "on it"})  # fmt: skip
    assert response.status == 303
    after = await page(client, path)
    assert "ACK" in after and "by alice" in after and "acknowledged" in after
    api = await (await client.get(f"/api/v1/incidents/{incident.id}")).json()
    assert api["events"][-1]["kind"] == "acknowledged"


async def test_read_only_console_shows_no_action_and_refuses_them(
    make_client: MakeClient,
) -> None:
    client = await make_client("[ui]\nread_only = true\n")
    await post(client, CRIT)
    (incident,) = client.app[ENGINE].incidents()
    text = await page(client, f"/ui/incidents/{incident.id}")
    assert "READ-ONLY" in text and "Acknowledge" not in text
    origin = {"Origin": str(client.make_url("")).rstrip("/")}
    response = await client.post(f"/ui/incidents/{incident.id}/ack", headers=origin,
                                 data={"csrf": "any"})  # fmt: skip
    assert response.status == 403 and "read-only" in await response.text()


async def test_with_tokens_the_console_asks_for_one(make_client: MakeClient) -> None:
    """No session: to the sign-in page; a wrong token is refused; the right one gives an
    HttpOnly, SameSite=Strict cookie (not the token) and the board."""
    client = await make_client('[auth]\ntokens = ["s3cret-token-123456"]\n')
    response = await client.get("/ui/?host=web-*", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/ui/login?next=")
    origin = {"Origin": str(client.make_url("")).rstrip("/")}
    wrong = await client.post("/ui/login", data={"token": "nope"}, headers=origin)
    assert wrong.status == 401
    right = await client.post("/ui/login", headers=origin, allow_redirects=False,
                              data={"token": "s3cret-token-123456", "next": "/ui/?host=web-*"})
    assert right.status == 303 and right.headers["Location"] == "/ui/?host=web-*"
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "s3cret" not in cookie
    assert (await client.get("/ui/")).status == 200
    evil = await client.post("/ui/login", headers=origin, allow_redirects=False,
                             data={"token": "s3cret-token-123456", "next": "//evil.example/"})
    assert evil.headers["Location"] == "/ui/"


async def test_silence_from_an_incident_suppresses_it(make_client: MakeClient) -> None:
    """The form is pre-filled from the incident; the silence goes through the API's
    validation and suppresses the incident at once."""
    client = await make_client()
    await post(client, {**CRIT, "labels": {"rack": "r1"}})
    (incident,) = client.app[ENGINE].incidents()
    form = await page(client, "/ui/silences/new", incident=str(incident.id))
    assert 'name="host" value="web-01"' in form and "rack=r1" in form
    origin = {"Origin": str(client.make_url("")).rstrip("/")}
    response = await client.post("/ui/silences", headers=origin, allow_redirects=False, data={
        "csrf": csrf_of(form), "host": "web-01", "service": "HTTP", "labels": "rack=r1",
        "duration": "1h", "author": "bob", "comment": "kernel update",
        "back": f"/ui/incidents/{incident.id}"})  # fmt: skip
    assert response.status == 303
    assert "SUPPRESSED" in await page(client, f"/ui/incidents/{incident.id}")
    silences = await page(client, "/ui/silences")
    assert "kernel update" in silences and "ACTIVE" in silences
    bad = await client.post("/ui/silences", headers=origin,
                            data={"csrf": csrf_of(form), "author": "bob", "comment": "x",
                                  "duration": "1h"})  # fmt: skip
    assert bad.status == 400 and "matcher" in (await bad.text()).lower()


async def test_a_dead_letter_is_redriven_from_the_console(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str]
) -> None:
    """A create the helpdesk refused shows as a dead letter; once the account is fixed, the
    console's re-drive sends it again and the ticket is created."""
    helpdesk, _ = sandbox
    client = await start('type = "Alert"\n')
    await post(client, CRIT)
    await deliver(client)
    text = await page(client, "/ui/outbox")
    assert "DEAD" in text and "1 dead letter" in text
    op_id = re.search(r'data-op="(\d+)"', text)
    assert op_id
    helpdesk.options.ticket_types = (*helpdesk.options.ticket_types, "Alert")
    origin = {"Origin": str(client.make_url("")).rstrip("/")}
    response = await client.post(f"/ui/outbox/{op_id.group(1)}/retry", headers=origin,
                                 data={"csrf": csrf_of(text)}, allow_redirects=False)
    assert response.status == 303
    assert "0 dead letters" in await page(client, "/ui/outbox")
    await deliver(client)
    assert len(helpdesk.tickets) == 1


async def test_history_heartbeats_and_noisiest_render(make_client: MakeClient) -> None:
    client = await make_client()
    await client.post("/api/v1/heartbeats/backup", json={"interval": "1h"})
    assert "backup" in await page(client, "/ui/heartbeats")
    assert "Nothing resolved" in await page(client, "/ui/history")
    assert "Most reopened" in await page(client, "/ui/noisiest")
    bad = await client.get("/ui/history", params={"since": "yesterday"})
    assert bad.status == 400


async def test_a_refresh_gets_the_live_part_only(make_client: MakeClient) -> None:
    client = await make_client()
    await post(client, CRIT)
    response = await client.get("/ui/", headers={"X-Console-Fragment": "1"})
    text = await response.text()
    assert "web-01/HTTP" in text and "<html" not in text and "READY" in text
