"""End to end: check results over HTTP -> incidents -> outbox -> the sandbox helpdesk.

The helpdesk is `alertd.sandbox`, a real aiohttp server on loopback that validates like
Freshdesk; alertd is the real app. The clock is manual: tests move it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from alertd import reload
from alertd.clock import ManualClock
from alertd.http.keys import DISPATCHER
from alertd.sandbox import SANDBOX, Sandbox, SandboxOptions, create_app
from tests.support import CRIT, KEY, Client, calls, deliver, incidents, notes_text, post


async def test_a_thousand_repeats_make_one_ticket_and_one_summary(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """1,000 duplicate results are one ticket; later repeats are summed up in one note per
    note_interval, never a note per result."""
    helpdesk, _ = sandbox
    # Minute-by-minute results then ten quiet minutes would make the incident stale (a note of
    # its own, tested in test_watch); here only the summary is looked at.
    client = await start('[lifecycle]\nstale_after = "1h"')
    await post(client, [CRIT] * 1000)
    await deliver(client)
    ((ticket_id, ticket),) = helpdesk.tickets.items()
    assert ticket["subject"] == "[CRITICAL] web-01 / HTTP: connection refused"
    assert (ticket["priority"], ticket["status"], ticket["type"]) == (3, 2, "Incident")
    assert ticket["tags"] == ["alertd", "alertd-main-1"]
    assert "Occurrences</th><td>1000" in ticket["description"]

    for _ in range(5):
        await post(client, [CRIT] * 100)
        clock.advance(timedelta(minutes=1))
        await deliver(client)
    assert notes_text(helpdesk, ticket_id) == []  # the summary is not due yet
    clock.advance(timedelta(minutes=10))
    await deliver(client)
    (summary,) = notes_text(helpdesk, ticket_id)
    assert "500 more occurrences" in summary and "(1500 in all)" in summary
    assert calls(helpdesk) == ["POST /tickets", f"POST /tickets/{ticket_id}/notes"]


async def test_the_ticket_follows_priority_recovery_resolution_and_reopening(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """A raised priority reaches the ticket; recovery notes; the hold resolves it; a recurrence
    reopens the same ticket; every operation in order."""
    helpdesk, _ = sandbox
    client = await start()
    await post(client, {**CRIT, "state": "WARNING"})
    await deliver(client)
    (ticket_id,) = helpdesk.tickets
    assert helpdesk.tickets[ticket_id]["priority"] == 2

    await post(client, CRIT)
    await deliver(client)
    assert helpdesk.tickets[ticket_id]["priority"] == 3
    await post(client, {**CRIT, "state": "OK", "output": "HTTP OK"})
    await deliver(client)
    clock.advance(timedelta(minutes=5))
    await deliver(client)
    assert helpdesk.tickets[ticket_id]["status"] == 4
    clock.advance(timedelta(hours=1))
    await post(client, CRIT)
    await deliver(client)

    assert list(helpdesk.tickets) == [ticket_id]
    assert helpdesk.tickets[ticket_id]["status"] == 2
    t = f"/tickets/{ticket_id}"
    assert calls(helpdesk) == [
        "POST /tickets",
        # priority Medium -> High, with the reason (after a look at the agent's priority)
        f"GET {t}", f"PUT {t}", f"POST {t}/notes",
        f"POST {t}/notes",  # recovering
        f"PUT {t}", f"POST {t}/notes",  # resolved
        f"GET {t}", f"PUT {t}", f"POST {t}/notes",  # reopened
    ]  # fmt: skip
    notes = notes_text(helpdesk, ticket_id)
    assert "Priority changed from Medium to High" in notes[0]
    assert "stays OK for 5m" in notes[1]
    assert "resolved by alertd" in notes[2]
    assert "reopened" in notes[3]
    assert all(n["private"] for n in helpdesk.notes[ticket_id])


async def test_a_priority_an_agent_raised_is_not_lowered(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str]
) -> None:
    """When an agent set the priority by hand, alertd's lower priority only adds a note."""
    helpdesk, _ = sandbox
    client = await start()
    await post(client, CRIT)
    await deliver(client)
    (ticket_id,) = helpdesk.tickets
    helpdesk.agent_update(ticket_id, priority=4)
    await post(client, {**CRIT, "state": "WARNING"})
    await deliver(client)
    assert helpdesk.tickets[ticket_id]["priority"] == 4
    assert "priority an agent set by hand was kept" in notes_text(helpdesk, ticket_id)[-1]


async def test_429_stops_every_call_until_retry_after(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """After a 429 nothing is sent before Retry-After has passed; then delivery goes on."""
    helpdesk, _ = sandbox
    client = await start()
    helpdesk.fail_next(1, 429, retry_after=1)
    await post(client, CRIT)
    await deliver(client)
    assert [r.status for r in helpdesk.requests] == [429]
    started = time.monotonic()
    clock.advance(timedelta(seconds=1))
    await deliver(client)
    assert time.monotonic() - started >= 0.9  # the limiter waited out Retry-After
    assert [r.status for r in helpdesk.requests] == [429, 201]
    ops = await (await client.get("/api/v1/outbox")).json()
    assert ops["operations"][0]["attempts"] == 1  # the 429 did not count as a failed attempt


async def test_helpdesk_down_then_back_delivers_everything_in_order(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """5xx answers for a while: operations wait with backoff, then all arrive, in order, once.
    (502, from a gateway: the helpdesk behind it may have acted, so alertd looks first.)"""
    helpdesk, _ = sandbox
    client = await start()
    helpdesk.fail_next(6, 502)
    await post(client, {**CRIT, "state": "WARNING"})
    await post(client, CRIT)
    await post(client, {**CRIT, "state": "OK"})
    for _ in range(12):
        await deliver(client)
        clock.advance(timedelta(hours=1))
    (ticket_id,) = helpdesk.tickets
    ok = [c for c, r in zip(calls(helpdesk), helpdesk.requests, strict=True) if r.status < 300]
    t = f"/tickets/{ticket_id}"
    assert [c for c in ok if not c.startswith("GET")] == [
        "POST /tickets",
        f"PUT {t}", f"POST {t}/notes",  # WARNING -> CRITICAL: priority, with the reason
        f"POST {t}/notes",  # recovering
        f"PUT {t}", f"POST {t}/notes",  # resolved (the hours passed)
    ]  # fmt: skip
    # Each failed create was followed by a look for the ticket before the next try.
    assert calls(helpdesk).count("GET /tickets") >= calls(helpdesk).count("POST /tickets") - 1
    counts = (await (await client.get("/api/v1/outbox")).json())["counts"]
    assert counts == {"pending": 0, "done": 4, "dead": 0}


async def test_a_create_whose_answer_was_lost_is_found_not_repeated(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """The helpdesk stores the ticket but the answer never arrives: the retry finds the ticket
    by its tag (listing recent tickets) instead of creating a second one."""
    helpdesk, _ = sandbox
    client = await start()
    helpdesk.drop_after_create(1)
    await post(client, CRIT)
    await deliver(client)
    assert len(helpdesk.tickets) == 1 and helpdesk.requests[0].status is None
    clock.advance(timedelta(hours=1))
    await post(client, {**CRIT, "state": "WARNING"})
    await deliver(client)
    (ticket_id,) = helpdesk.tickets
    assert calls(helpdesk).count("POST /tickets") == 1
    assert "GET /tickets" in calls(helpdesk)
    assert helpdesk.tickets[ticket_id]["priority"] == 2  # later operations reached it


async def test_a_refused_request_is_a_dead_letter_until_redriven(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str]
) -> None:
    """A 400 parks the create with the helpdesk's answer; once fixed, a re-drive sends it."""
    helpdesk, _ = sandbox
    client = await start('type = "Alert"\n')
    await post(client, CRIT)
    await deliver(client)
    dead = await (await client.get("/api/v1/outbox", params={"state": "dead"})).json()
    (op,) = dead["operations"]
    assert op["op"] == "create" and "invalid_value" in op["last_error"]
    assert "type" in op["last_error"]
    assert helpdesk.tickets == {}

    helpdesk.options.ticket_types = (*helpdesk.options.ticket_types, "Alert")
    response = await client.post(f"/api/v1/outbox/{op['id']}/retry")
    assert await response.json() == {"requeued": [op["id"]], "skipped": []}
    await deliver(client)
    assert len(helpdesk.tickets) == 1
    assert (await (await client.get("/api/v1/outbox")).json())["counts"]["dead"] == 0


async def test_a_refused_api_key_makes_alertd_not_ready(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], tmp_path: Path
) -> None:
    """401 from the helpdesk: /readyz says why, and the operation waits instead of dying."""
    (tmp_path / "wrong.key").write_text("not-the-key")
    client = await start(key_file="wrong.key")
    assert (await client.get("/readyz")).status == 200
    await post(client, CRIT)
    await deliver(client)
    response = await client.get("/readyz")
    assert response.status == 503
    (problem,) = (await response.json())["problems"]
    assert "refuses alertd's API key" in problem and "not-the-key" not in problem
    counts = (await (await client.get("/api/v1/outbox")).json())["counts"]
    assert counts["pending"] == 1 and counts["dead"] == 0


async def test_a_waiting_operation_can_be_sent_now_once_the_cause_is_fixed(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], tmp_path: Path
) -> None:
    """After the API key is fixed, `POST /api/v1/outbox/{id}/retry` sends an operation that
    is pending, waiting out its backoff, at once (not only dead letters)."""
    helpdesk, _ = sandbox
    (tmp_path / "other.key").write_text("other-key")
    client = await start(key_file="other.key")
    await post(client, CRIT)
    await deliver(client)
    (op,) = (await (await client.get("/api/v1/outbox")).json())["operations"]
    assert op["state"] == "pending" and helpdesk.tickets == {}
    helpdesk.options.api_key = "other-key"  # the admin fixed the account side
    response = await client.post(f"/api/v1/outbox/{op['id']}/retry")
    assert await response.json() == {"requeued": [op["id"]], "skipped": []}
    await deliver(client)  # the clock has not moved: only the re-drive made it due
    assert len(helpdesk.tickets) == 1


async def test_an_unreachable_helpdesk_makes_alertd_not_ready(
    make_client: Callable[..., Awaitable[Client]], tmp_path: Path
) -> None:
    """The README promises "reachable and authorised": a helpdesk that does not answer at all
    fails /readyz (saying so) until a call gets through; the operation waits meanwhile."""
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    (tmp_path / "helpdesk.key").write_text(KEY)
    client = await make_client(
        f'[helpdesk]\nurl = "http://127.0.0.1:{port}"\nrequester_email = "noc@example.com"\n'
        f'api_key_file = "{tmp_path / "helpdesk.key"}"\npoll_interval = "0s"\n'
        'service_grace = "0s"\n'
    )
    assert (await client.get("/readyz")).status == 200
    await post(client, CRIT)
    await deliver(client)
    response = await client.get("/readyz")
    assert response.status == 503
    (problem,) = (await response.json())["problems"]
    assert problem.startswith("helpdesk: helpdesk cannot be reached")
    counts = (await (await client.get("/api/v1/outbox")).json())["counts"]
    assert counts["pending"] == 1 and counts["dead"] == 0


async def test_a_deleted_ticket_is_replaced_by_one_that_names_it(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str]
) -> None:
    """A PUT on a ticket an agent deleted (404) opens a new ticket naming the old one, and the
    update goes on the new ticket."""
    helpdesk, _ = sandbox
    client = await start()
    await post(client, {**CRIT, "state": "WARNING"})
    await deliver(client)
    (old,) = helpdesk.tickets
    helpdesk.delete(old)
    await post(client, CRIT)
    await deliver(client)
    (new,) = helpdesk.tickets
    assert new != old
    assert f"earlier ticket #{old} no longer exists" in helpdesk.tickets[new]["description"]
    assert helpdesk.tickets[new]["priority"] == 3
    detail = await (await client.get("/api/v1/incidents/1")).json()
    assert detail["ticket"]["id"] == new


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_sigkill_during_a_create_loses_nothing_and_duplicates_nothing(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]], tmp_path: Path
) -> None:
    """alertd killed with SIGKILL while the helpdesk is creating its ticket: after a restart
    the ticket is found and adopted, and the operations after it are delivered."""
    app = create_app(SandboxOptions(api_key=KEY))
    helpdesk = app[SANDBOX]
    server = await aiohttp_server(app)
    port = free_port()
    (tmp_path / "key").write_text(KEY)
    config = tmp_path / "alertd.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n[store]\npath = "{tmp_path / "a.db"}"\n'
        "[auth]\ndisabled = true\n"
        f'[helpdesk]\nurl = "{str(server.make_url("")).rstrip("/")}"\n'
        f'requester_email = "noc@example.com"\napi_key_file = "{tmp_path / "key"}"\n'
        'service_grace = "0s"\n'
        # The restart looks for the ticket once the cut-off request can no longer land.
        'timeout = "2s"\noutcome_wait = "1s"\n'
    )
    base = f"http://127.0.0.1:{port}"

    def daemon() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "alertd.cli", "run", "--config", str(config)],
            stderr=subprocess.DEVNULL,
        )

    async def http(method: str, path: str, body: Any = None) -> Any:
        def call() -> Any:
            data = None if body is None else json.dumps(body).encode()
            request = urllib.request.Request(
                base + path, data, {"Content-Type": "application/json"}, method=method
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())

        return await asyncio.to_thread(call)

    async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
        deadline = time.monotonic() + 20
        while not await check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    async def up() -> bool:
        try:  # loaded too: while the store loads, /healthz says `"starting": true`
            return "starting" not in await http("GET", "/healthz")
        except OSError:
            return False

    helpdesk.stall_after_create(3.0)
    proc = daemon()
    try:
        await until(up, "alertd to start")
        await http("POST", "/api/v1/results", CRIT)

        async def created() -> bool:
            return len(helpdesk.tickets) == 1

        await until(created, "the sandbox to store the ticket")
        proc.send_signal(signal.SIGKILL)  # mid-request: alertd never hears the answer
        proc.wait(timeout=10)
        with sqlite3.connect(tmp_path / "a.db") as db:
            assert db.execute("SELECT state, started FROM outbox").fetchall() == [("pending", 1)]

        proc = daemon()
        await until(up, "alertd to restart")
        await http("POST", "/api/v1/results", {**CRIT, "state": "OK"})

        async def delivered() -> bool:
            counts = (await http("GET", "/api/v1/outbox"))["counts"]
            return bool(counts == {"pending": 0, "done": 2, "dead": 0})

        await until(delivered, "the outbox to drain")
    finally:
        proc.kill()
        proc.wait(timeout=10)
    (ticket_id,) = helpdesk.tickets
    assert calls(helpdesk).count("POST /tickets") == 1
    assert len(helpdesk.notes[ticket_id]) == 1  # the recovery note reached the one ticket


@pytest.mark.parametrize("flavour", ["freshservice"])
async def test_freshservice_gets_impact_and_urgency_natively(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str]
) -> None:
    """With kind = "freshservice" the ticket carries the incident's impact and urgency (1-3)."""
    helpdesk, _ = sandbox
    client = await start()
    await post(client, {**CRIT, "state": "WARNING"})
    await deliver(client)
    (ticket,) = helpdesk.tickets.values()
    assert (ticket["impact"], ticket["urgency"], ticket["priority"]) == (2, 2, 2)


async def test_a_reload_changes_how_new_tickets_look_and_escalate(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], tmp_path: Path
) -> None:
    """SIGHUP's reload swaps the helpdesk templates and fields for tickets made from then on."""
    helpdesk, _ = sandbox
    client = await start()
    await post(client, CRIT)
    await deliver(client)
    config = tmp_path / "alertd.toml"  # the file the fixture wrote; edit it as an operator would
    config.write_text(config.read_text() + 'subject_template = "ALERT {host}: {output}"\n')
    report = await reload.reload(client.app, config, env={})
    assert report.applied and "helpdesk.subject_template" in report.changed
    await post(client, {**CRIT, "host": "web-02"})
    await deliver(client)
    subjects = [t["subject"] for t in helpdesk.tickets.values()]
    assert subjects == [
        "[CRITICAL] web-01 / HTTP: connection refused",
        "ALERT web-02: connection refused",
    ]


async def test_a_lost_answer_to_a_re_create_is_found_not_repeated(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """Found in review: re-creating a deleted ticket had no look-before-create. Now a re-create
    whose answer is lost is found by its tag on the next try: one replacement ticket."""
    helpdesk, _ = sandbox
    client = await start()
    await post(client, {**CRIT, "state": "WARNING"})
    await deliver(client)
    (old,) = helpdesk.tickets
    helpdesk.delete(old)
    helpdesk.drop_after_create(1)
    await post(client, CRIT)
    await deliver(client)
    clock.advance(timedelta(hours=1))
    await deliver(client)
    (new,) = helpdesk.tickets
    assert calls(helpdesk).count("POST /tickets") == 2  # the first create and one re-create
    assert helpdesk.tickets[new]["priority"] == 3


async def test_a_stale_dead_letter_is_not_sent_after_newer_news(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str]
) -> None:
    """Found in review: re-driving an old dead update after later ones went out would undo
    them (an old "resolve" on a reopened ticket). Such a re-drive is refused, with the why."""
    helpdesk, _ = sandbox
    client = await start()
    await post(client, CRIT)
    await deliver(client)
    helpdesk.fail_next(1, 400)
    await post(client, {**CRIT, "state": "WARNING"})  # this update is refused: dead
    await deliver(client)
    await post(client, {**CRIT, "state": "OK"})  # a later note goes out
    await deliver(client)
    answer = await (await client.post("/api/v1/outbox/retry")).json()
    (skipped,) = answer["skipped"]
    assert answer["requeued"] == [] and "superseded" in skipped["reason"]


async def test_the_ticket_poll_survives_odd_tags_and_still_acknowledges(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """Tickets tagged `alertd-main-²` or with a 20-digit id (someone else's, or typed by hand)
    are skipped, not fatal: the poll still acknowledges the incident whose ticket was taken."""
    helpdesk, _ = sandbox
    client = await start()
    await post(client, CRIT)
    await deliver(client)
    (ticket_id,) = helpdesk.tickets
    for tag in ("alertd-main-²", "alertd-main-12345678901234567890"):
        odd = helpdesk._create(
            {"email": "x@example.com", "subject": "odd", "description": "odd", "status": 2,
             "priority": 1, "source": 2, "tags": [tag]}
        )  # fmt: skip
        helpdesk.agent_update(odd["id"], responder_id=7)
    helpdesk.agent_update(ticket_id, responder_id=7)
    assert await client.app[DISPATCHER].poll_taken_tickets() == 1
    (incident,) = await incidents(client)
    assert incident["acknowledged"]
