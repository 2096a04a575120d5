"""What helpdesk agents do to alertd's tickets, end to end: alertd, the sandbox helpdesk, the
ticket poll (and, below, the automation webhook), on the manual clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from alertd.clock import ManualClock
from alertd.http.keys import DISPATCHER
from alertd.sandbox import Sandbox
from tests.support import CRIT, Client, calls, deliver, notes_text, post

OK = {**CRIT, "state": "OK", "output": "HTTP OK"}


async def later(client: Client, clock: ManualClock, minutes: float) -> None:
    clock.advance(timedelta(minutes=minutes))
    await deliver(client)


async def incident(client: Client) -> dict[str, object]:
    response = await client.get("/api/v1/incidents/1")
    assert response.status == 200
    return dict(await response.json())


async def test_an_agent_resolving_a_failing_ticket_stops_alertd_and_a_recurrence_gets_a_new_one(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """The poll sees the agent's Resolved; alertd records it, then writes nothing more to that
    ticket (no summary, no situation update, no escalation, no resolve) and, when the problem
    comes back after an OK, opens a new ticket naming the old one."""
    helpdesk, _ = sandbox
    client = await start('[lifecycle]\nstale_after = "1d"')
    await post(client, CRIT)
    await deliver(client)
    (old,) = helpdesk.tickets
    helpdesk.agent_update(old, status=4)
    assert await client.app[DISPATCHER].poll_taken_tickets() == 1
    assert (await incident(client))["ticket_closed_by_agent"] == old
    before = len(helpdesk.requests)

    for _ in range(6):  # hours of a failing check: repeats, updates, escalation would all be due
        await post(client, CRIT)
        await later(client, clock, 60)
    await post(client, OK)
    await later(client, clock, 10)  # recovered and resolved by alertd
    assert calls(helpdesk)[before:] == []  # nothing at all reached the closed ticket
    shown = await incident(client)
    assert (shown["status"], shown["escalation_level"]) == ("resolved", 0)
    assert helpdesk.tickets[old]["status"] == 4

    await post(client, CRIT)  # back within the reopen window
    await deliver(client)
    new = max(helpdesk.tickets)
    assert new != old and helpdesk.tickets[old]["status"] == 4
    assert f"agent resolved ticket #{old}" in helpdesk.tickets[new]["description"]
    assert helpdesk.tickets[new]["tags"][-1] == "alertd-main-1"
    assert (await incident(client))["ticket_closed_by_agent"] is None
    # The new ticket is alertd's again: the old one, still Resolved and tagged, is history.
    assert await client.app[DISPATCHER].poll_taken_tickets() == 0
    await post(client, OK)
    await later(client, clock, 10)
    assert helpdesk.tickets[new]["status"] == 4 and notes_text(helpdesk, old) == []


async def test_with_reopen_policy_the_agents_ticket_is_reopened(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """`on_agent_close = "reopen"`: a recurrence after OK reopens the ticket the agent closed,
    also when it comes back before the recovery hold ended."""
    helpdesk, _ = sandbox
    client = await start('on_agent_close = "reopen"')
    await post(client, CRIT)
    await deliver(client)
    (ticket_id,) = helpdesk.tickets
    helpdesk.agent_update(ticket_id, status=5)
    assert await client.app[DISPATCHER].poll_taken_tickets() == 1
    await post(client, OK)
    await later(client, clock, 1)  # recovering, not yet resolved
    await post(client, CRIT)
    await deliver(client)
    assert list(helpdesk.tickets) == [ticket_id]
    assert helpdesk.tickets[ticket_id]["status"] == 2
    (*_, last) = notes_text(helpdesk, ticket_id)
    assert "after an agent had resolved this ticket: reopened" in last


async def test_a_merged_ticket_is_never_reopened(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """Agents merge the incident's ticket into another (the merge closes it): alertd takes it
    as the agents' close, and a recurrence opens a new ticket naming both, even with
    `on_agent_close = "reopen"`: a merged ticket is never reopened."""
    helpdesk, _ = sandbox
    client = await start('on_agent_close = "reopen"')
    await post(client, CRIT)
    await post(client, {**CRIT, "host": "web-02"})
    await deliver(client)
    merged, primary = sorted(helpdesk.tickets)
    helpdesk.merge(primary, [merged])
    assert await client.app[DISPATCHER].poll_taken_tickets() == 1
    assert (await incident(client))["ticket_closed_by_agent"] == merged
    await post(client, OK)
    await later(client, clock, 1)
    await post(client, CRIT)
    await deliver(client)
    new = max(helpdesk.tickets)
    assert new not in (merged, primary) and helpdesk.tickets[merged]["status"] == 5
    assert f"merged ticket #{merged} into #{primary}" in helpdesk.tickets[new]["description"]


async def test_alertd_resolving_its_own_ticket_is_not_an_agents_close(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """A ticket alertd resolved and then reopened (the reopening still queued) is not taken for
    one an agent closed."""
    helpdesk, _ = sandbox
    client = await start()
    await post(client, CRIT)
    await deliver(client)
    await post(client, OK)
    await later(client, clock, 10)
    await post(client, CRIT)  # reopens; the PUT status=2 is queued, not yet sent
    assert [t["status"] for t in helpdesk.tickets.values()] == [4]
    await client.app[DISPATCHER].poll_taken_tickets()
    assert (await incident(client))["ticket_closed_by_agent"] is None


async def test_a_priority_an_agent_set_is_never_overwritten(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """An agent sets Urgent by hand; a WARNING -> CRITICAL change (which raises alertd's own
    priority to High) keeps it, and so does the reopening."""
    helpdesk, _ = sandbox
    client = await start()
    await post(client, {**CRIT, "state": "WARNING"})
    await deliver(client)
    (ticket_id,) = helpdesk.tickets
    helpdesk.agent_update(ticket_id, priority=4)
    await post(client, CRIT)
    await deliver(client)
    assert helpdesk.tickets[ticket_id]["priority"] == 4
    assert "priority an agent set by hand was kept" in notes_text(helpdesk, ticket_id)[-1]
    await post(client, OK)
    await later(client, clock, 10)
    await post(client, CRIT)
    await deliver(client)
    assert helpdesk.tickets[ticket_id]["status"] == 2
    assert helpdesk.tickets[ticket_id]["priority"] == 4


async def test_the_description_states_the_update_cadence(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str]
) -> None:
    """The agent reads in the ticket how often situation updates come (High: every 1h)."""
    helpdesk, _ = sandbox
    client = await start()
    await post(client, CRIT)
    await deliver(client)
    (ticket,) = helpdesk.tickets.values()
    assert "Situation updates every 1h while the problem lasts" in ticket["description"]


SECRET = "webhook-secret-0123456789"
TOKEN = "api-token-0123456789"


async def test_the_helpdesk_webhook_feeds_the_same_decisions_as_the_poll(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], tmp_path: Path
) -> None:
    """The automation's call, authenticated by its shared secret (no API token needed), acts at
    once: a ticket taken acknowledges its incident, one resolved by hand is recorded; a wrong
    or missing secret changes nothing."""
    helpdesk, _ = sandbox
    (tmp_path / "webhook.secret").write_text(SECRET + "\n")
    client = await start(
        f'webhook_secret_file = "{tmp_path / "webhook.secret"}"\n'
        f'[auth]\ntokens = ["{TOKEN}"]'
    )
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for service in ("HTTP", "Disk"):
        response = await client.post(
            "/api/v1/results", json={**CRIT, "service": service}, headers=bearer
        )
        assert response.status == 202
    await client.app[DISPATCHER].drain()
    http, disk = sorted(helpdesk.tickets)
    helpdesk.agent_update(http, status=4)
    helpdesk.agent_update(disk, responder_id=1)
    event = {"ticket_id": http, "status": "Resolved", "priority": "High"}

    for headers in ({}, {"X-Alertd-Webhook-Secret": "wrong"}, bearer):
        refused = await client.post("/api/v1/helpdesk/events", json=event, headers=headers)
        assert refused.status == 401
        assert SECRET not in await refused.text()
    ok = {"X-Alertd-Webhook-Secret": SECRET}
    answer = await client.post("/api/v1/helpdesk/events", json=event, headers=ok)
    assert (answer.status, await answer.json()) == (200, {"ticket_id": http, "notices": 1})
    again = await client.post("/api/v1/helpdesk/events", json=event, headers=ok)
    assert (await again.json())["notices"] == 0  # the helpdesk's retry changes nothing
    taken = {"ticket_id": f"INC-{disk}", "responder": "Alice"}
    answer = await client.post("/api/v1/helpdesk/events", json=taken, headers=ok)
    assert (await answer.json())["notices"] == 1

    shown = await (await client.get("/api/v1/incidents", headers=bearer)).json()
    by_service = {i["service"]: i for i in shown["incidents"]}
    assert by_service["HTTP"]["ticket_closed_by_agent"] == http
    assert by_service["Disk"]["acknowledged"] is True
    comment = f"ticket #{disk} assigned to agent 1 in the helpdesk"
    assert by_service["Disk"]["ack_comment"] == comment
    # The poll, as reconciliation later, finds nothing left to do.
    assert await client.app[DISPATCHER].poll_taken_tickets() == 0


async def test_the_webhook_is_off_without_a_secret(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str]
) -> None:
    """With no secret configured nobody can act through the webhook."""
    client = await start()
    answer = await client.post("/api/v1/helpdesk/events", json={"ticket_id": 1})
    assert answer.status == 404
