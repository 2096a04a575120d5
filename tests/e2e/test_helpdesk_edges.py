"""End to end against the sandbox: the real APIs' edge cases (docs/protocols.md 1.4, 1.8, 1.10),
in both products unless a test says otherwise: spam and trashed tickets, archived tickets,
fields required for closure, custom statuses, odd 2xx answers, workspaces and the Priority
Matrix."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from alertd.clock import ManualClock
from alertd.http.keys import DISPATCHER
from alertd.sandbox import Sandbox
from tests.support import CRIT, Client, calls, deliver, incidents, post

Start = Callable[..., Awaitable[Client]]


async def dead_letters(client: Client) -> list[dict[str, Any]]:
    answer = await (await client.get("/api/v1/outbox", params={"state": "dead"})).json()
    return list(answer["operations"])


async def resolve(client: Client, clock: ManualClock) -> None:
    """The check recovers and stays OK past the hold: alertd resolves the ticket."""
    await post(client, {**CRIT, "state": "OK", "output": "HTTP OK"})
    await deliver(client)
    clock.advance(timedelta(minutes=5))
    await deliver(client)


async def test_a_spam_ticket_is_treated_as_missing_and_replaced(
    start: Start, sandbox: tuple[Sandbox, str]
) -> None:
    """An agent marks the ticket as spam; the next update answers 405, and alertd opens a new
    ticket naming the old one instead of a dead letter (on_missing_ticket = "recreate")."""
    helpdesk, _ = sandbox
    client = await start()
    await post(client, {**CRIT, "state": "WARNING"})
    await deliver(client)
    (old,) = helpdesk.tickets
    helpdesk.mark_spam(old)
    await post(client, CRIT)
    await deliver(client)
    assert await dead_letters(client) == []
    new = max(helpdesk.tickets)
    assert new != old and f"earlier ticket #{old}" in helpdesk.tickets[new]["description"]
    assert helpdesk.tickets[new]["priority"] == 3


async def test_restore_brings_a_trashed_ticket_back_and_goes_on_with_it(
    start: Start, sandbox: tuple[Sandbox, str]
) -> None:
    """With on_missing_ticket = "restore", a ticket an agent deleted (405 on update) is
    restored with PUT /tickets/{id}/restore and the update lands on it: no second ticket."""
    helpdesk, _ = sandbox
    client = await start('on_missing_ticket = "restore"\n')
    await post(client, {**CRIT, "state": "WARNING"})
    await deliver(client)
    (ticket_id,) = helpdesk.tickets
    helpdesk.delete(ticket_id)
    await post(client, CRIT)
    await deliver(client)
    assert list(helpdesk.tickets) == [ticket_id] and not helpdesk.deleted
    assert helpdesk.tickets[ticket_id]["priority"] == 3
    assert f"PUT /tickets/{ticket_id}/restore" in calls(helpdesk)
    assert calls(helpdesk).count("POST /tickets") == 1


@pytest.mark.parametrize("flavour", ["freshdesk"])  # Freshservice has no archive path
async def test_a_recurrence_after_the_ticket_was_archived_opens_a_new_one_naming_it(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """The closed ticket is archived (404 on its path, kept at /tickets/archived/{id}); when the
    problem comes back alertd opens a new ticket naming it, even with on_missing_ticket =
    "dead_letter", since an archived ticket can never take the update."""
    helpdesk, _ = sandbox
    client = await start('resolve_status = 5\non_missing_ticket = "dead_letter"\n')
    await post(client, CRIT)
    await deliver(client)
    (old,) = helpdesk.tickets
    await resolve(client, clock)
    helpdesk.archive(old)
    clock.advance(timedelta(hours=1))
    await post(client, CRIT)
    await deliver(client)
    assert await dead_letters(client) == []
    (new,) = helpdesk.tickets
    assert f"earlier ticket #{old}" in helpdesk.tickets[new]["description"]
    assert f"GET /tickets/archived/{old}" in calls(helpdesk)
    (incident,) = await incidents(client)
    assert (await (await client.get(f"/api/v1/incidents/{incident['id']}")).json())["ticket"][
        "id"
    ] == new


async def test_a_field_required_for_closure_is_named_in_the_dead_letter(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock, flavour: str
) -> None:
    """The account requires a root cause to resolve: alertd's resolve is a dead letter that
    names the field (and the log says so); on Freshservice `bypass_mandatory = true` resolves
    anyway."""
    helpdesk, _ = sandbox
    helpdesk.options.custom_fields = ("cf_root_cause",)
    helpdesk.options.required_for_closure = ("custom_fields.cf_root_cause",)
    client = await start()
    await post(client, CRIT)
    await deliver(client)
    (ticket_id,) = helpdesk.tickets
    with capture_logs() as logs:
        await resolve(client, clock)
    (dead,) = await dead_letters(client)
    assert (
        "refused with 400: custom_fields.cf_root_cause: It should not be blank"
        in (dead["last_error"])
    )
    assert any(e["event"] == "outbox_dead_letter" and "cf_root_cause" in e["error"] for e in logs)
    assert helpdesk.tickets[ticket_id]["status"] == 2
    if flavour == "freshservice":
        await client.close()  # one daemon per store: the next app takes it over
        bypassing = await start("bypass_mandatory = true\n")
        await bypassing.post(f"/api/v1/outbox/{dead['id']}/retry")
        await deliver(bypassing)
        assert helpdesk.tickets[ticket_id]["status"] == 4
        assert helpdesk.requests[-2].body == {"status": 4, "bypass_mandatory": True}


async def test_a_custom_status_configured_as_taken_acknowledges_the_incident(
    start: Start, sandbox: tuple[Sandbox, str]
) -> None:
    """The account's own status 7 ("Investigating") means an agent has it: with
    taken_statuses = [3, 7] the poll acknowledges the incident, as Pending does."""
    helpdesk, _ = sandbox
    helpdesk.options.custom_statuses = (6, 7)
    client = await start("taken_statuses = [3, 7]\ndone_statuses = [6]\n")
    await post(client, CRIT)
    await deliver(client)
    (ticket_id,) = helpdesk.tickets
    helpdesk.agent_update(ticket_id, status=7)
    assert await client.app[DISPATCHER].poll_taken_tickets() == 1
    (incident,) = await incidents(client)
    assert incident["acknowledged"]


@pytest.mark.parametrize("garble", ["html", "no_id", "charset"])
async def test_a_2xx_with_an_unexpected_body_fails_only_that_operation(
    start: Start, sandbox: tuple[Sandbox, str], garble: str
) -> None:
    """A create answered 2xx with a sign-in page, a body without an id, or bytes not in the
    declared charset is a dead letter that says so; the other incident's create in the same
    round goes through."""
    helpdesk, _ = sandbox
    client = await start()
    helpdesk.answer_oddly_next(garble)
    await post(client, [CRIT, {**CRIT, "host": "web-02"}])
    await deliver(client)
    (dead,) = await dead_letters(client)
    expected = {
        "html": "answered 200 but not with JSON (text/html",
        "no_id": "answered 2xx without a",
        "charset": "with a body that is not valid utf-8",
    }[garble]
    assert dead["op"] == "create" and expected in dead["last_error"]
    assert len(helpdesk.tickets) == 1


@pytest.mark.parametrize("flavour", ["freshservice"])
async def test_freshservice_tickets_live_in_the_configured_workspace(
    start: Start, sandbox: tuple[Sandbox, str]
) -> None:
    """With workspace_id = 5, tickets are created there, and the poll and the look-up by tag
    read that workspace (the API would show only the primary one otherwise)."""
    helpdesk, _ = sandbox
    helpdesk.options.workspaces = (2, 5)
    client = await start("workspace_id = 5\n")
    await post(client, CRIT)
    await deliver(client)
    (ticket,) = helpdesk.tickets.values()
    assert ticket["workspace_id"] == 5
    helpdesk.agent_update(ticket["id"], responder_id=42)
    assert await client.app[DISPATCHER].poll_taken_tickets() == 1
    polls = [r for r in helpdesk.requests if r.path == "/api/v2/tickets" and r.method == "GET"]
    assert polls and all(r.query["workspace_id"] == "5" for r in polls)
    assert not any("/search/" in r.path for r in helpdesk.requests)


@pytest.mark.parametrize("flavour", ["freshservice"])
async def test_the_priority_matrix_wins_and_is_not_taken_for_an_agents_change(
    start: Start, sandbox: tuple[Sandbox, str]
) -> None:
    """With the Priority Matrix on, the ticket gets the matrix's priority and alertd logs that
    its own was overruled; later priority changes (no impact or urgency) still reach it."""
    helpdesk, _ = sandbox
    # This account's admin ranks everything Low but high impact with high urgency.
    helpdesk.options.priority_matrix = {(3, 3): 4}
    client = await start()
    with capture_logs() as logs:
        await post(client, CRIT)
        await deliver(client)
    (ticket,) = helpdesk.tickets.values()
    overruled = [e for e in logs if e["event"] == "helpdesk_priority_overruled"]
    assert overruled and overruled[0]["sent"] == 3 and overruled[0]["kept"] == ticket["priority"]
    assert ticket["priority"] == 1
    # Recovery and a WARNING ask for Medium: a raise over the matrix's Low, not a lowering
    # of an agent's choice, so it is sent.
    await post(client, {**CRIT, "state": "WARNING"})
    await deliver(client)
    assert helpdesk.tickets[ticket["id"]]["priority"] == 2
