"""Escalation, acknowledgement and situation updates, end to end with the sandbox helpdesk.

Timers run on the manual clock: each test moves time and lets the engine and dispatcher act.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from alertd.cli.main import main
from alertd.clock import ManualClock
from alertd.http.keys import DISPATCHER
from alertd.sandbox import Sandbox
from tests.support import CRIT, Client, calls, deliver, notes_text, post

ESCALATION = """
[[escalation.high]]
name = "tier 2"
after = "30m"
group_id = 12
responder_id = 7
tags = ["tier-2"]
[[escalation.high]]
name = "director"
after = "2h"
priority = "urgent"
notify_emails = ["director@example.com"]
[updates]
high = "none"
"""


async def later(client: Client, clock: ManualClock, minutes: float) -> None:
    clock.advance(timedelta(minutes=minutes))
    await deliver(client)


async def test_levels_fire_once_on_time_ack_stops_the_clock_and_restarts_lose_nothing(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], clock: ManualClock,
    tmp_path: object,
) -> None:  # fmt: skip
    """Tier 2 at 30 minutes, not before; an ack stops the clock (time acked does not count);
    after a restart the next level still comes once, at its time, with its actions."""
    helpdesk, _ = sandbox
    client = await start(ESCALATION)
    await post(client, CRIT)
    await deliver(client)
    (ticket_id,) = helpdesk.tickets
    await later(client, clock, 29)
    assert helpdesk.tickets[ticket_id]["group_id"] is None
    await later(client, clock, 1)
    ticket = helpdesk.tickets[ticket_id]
    assert (ticket["group_id"], ticket["responder_id"]) == (12, 7)
    assert "tier-2" in ticket["tags"] and "alertd" in ticket["tags"]
    assert (
        "Escalated to tier 2: open and unacknowledged for 30m"
        in notes_text(helpdesk, ticket_id)[-1]
    )

    await later(client, clock, 60)  # the clock has run 1h30m
    ack = await client.post("/api/v1/incidents/1/ack", json={"author": "alice", "comment": "on it"})
    assert ack.status == 200 and (await ack.json())["acknowledged"] is True
    await later(client, clock, 300)  # acknowledged: no director however long it takes
    assert helpdesk.tickets[ticket_id]["priority"] == 3
    await client.close()

    client = await start(ESCALATION)  # a restart between levels
    unack = await client.delete("/api/v1/incidents/1/ack")
    assert (await unack.json())["next_escalation_at"] is not None
    await later(client, clock, 29)
    assert helpdesk.tickets[ticket_id]["priority"] == 3
    await later(client, clock, 1)  # 1h30m + 30m = 2h of clock
    assert helpdesk.tickets[ticket_id]["priority"] == 4
    (director,) = [r for r in helpdesk.requests if r.path.endswith("/notes")][-1:]
    assert director.body is not None
    assert director.body["notify_emails"] == ["director@example.com"]
    await later(client, clock, 600)
    events = (await (await client.get("/api/v1/incidents/1")).json())["events"]
    assert [e["detail"]["name"] for e in events if e["kind"] == "escalated"] == [
        "tier 2",
        "director",
    ]


async def test_manual_escalation_carries_the_reason(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str]
) -> None:
    """`POST /incidents/{id}/escalate` runs the next level now and says who asked and why."""
    helpdesk, _ = sandbox
    client = await start(ESCALATION)
    await post(client, CRIT)
    await deliver(client)
    refused = await client.post("/api/v1/incidents/1/escalate", json={"author": "bob"})
    assert refused.status == 400 and "reason" in (await refused.json())["error"]
    response = await client.post(
        "/api/v1/incidents/1/escalate", json={"author": "bob", "reason": "the CEO called"}
    )
    assert response.status == 200
    assert (await response.json())["escalation_level"] == 1
    await deliver(client)
    (ticket_id,) = helpdesk.tickets
    assert helpdesk.tickets[ticket_id]["group_id"] == 12
    assert "asked by bob: the CEO called" in notes_text(helpdesk, ticket_id)[-1]
    assert (await client.post("/api/v1/incidents/99/escalate", json={"reason": "x"})).status == 404


async def test_situation_updates_come_at_the_cadence_and_stop_at_recovery(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """An open High incident gets an update every hour, saying where things stand; none
    once it recovers."""
    helpdesk, _ = sandbox
    client = await start('[escalation]\nhigh = []\n[updates]\nhigh = "1h"\n')
    await post(client, CRIT)
    await deliver(client)
    (ticket_id,) = helpdesk.tickets
    await later(client, clock, 59)
    assert notes_text(helpdesk, ticket_id) == []
    await post(client, [CRIT] * 4)
    await later(client, clock, 1)
    (update,) = [t for t in notes_text(helpdesk, ticket_id) if "Situation update" in t]
    assert "Situation update: CRITICAL for 1h" in update
    assert "4 occurrences since the last update (5 in all)" in update
    assert "Next update in 1h" in update
    assert all(n["private"] for n in helpdesk.notes[ticket_id])
    await later(client, clock, 60)
    assert sum("Situation update" in t for t in notes_text(helpdesk, ticket_id)) == 2
    await post(client, {**CRIT, "state": "OK"})
    await later(client, clock, 180)
    texts = notes_text(helpdesk, ticket_id)
    assert sum("Situation update" in t for t in texts) == 2  # none after the recovery


async def test_an_agent_taking_the_ticket_acknowledges_the_incident(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """A responder assigned by an agent (not by alertd's escalation) acknowledges the
    incident, found by polling changed tickets; the escalation clock stops."""
    helpdesk, _ = sandbox
    client = await start(ESCALATION)
    await post(client, CRIT)
    await later(client, clock, 30)  # tier 2 assigns agent 7: that is not an ack
    dispatcher = client.app[DISPATCHER]
    assert await dispatcher.poll_taken_tickets() == 0
    (ticket_id,) = helpdesk.tickets
    helpdesk.agent_update(ticket_id, responder_id=42)
    clock.advance(timedelta(minutes=1))
    assert await dispatcher.poll_taken_tickets() == 1
    detail = await (await client.get("/api/v1/incidents/1")).json()
    assert detail["acknowledged"] is True and detail["ack_author"] == "agent 42"
    assert detail["next_escalation_at"] is None
    assert await dispatcher.poll_taken_tickets() == 0  # once
    assert any(c.startswith("GET /tickets") for c in calls(helpdesk))


async def test_the_command_line_acks_escalates_and_redrives(
    start: Callable[..., Awaitable[Client]],
    sandbox: tuple[Sandbox, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`alertd incidents ack|escalate` and `alertd outbox list|retry` work against a running
    daemon, as an operator would use them."""
    helpdesk, _ = sandbox
    client = await start(ESCALATION)
    url = str(client.make_url("")).rstrip("/")

    async def run(*argv: str) -> int:
        env = {"USER": "dave"}
        return await asyncio.to_thread(main, [*argv[:2], "--url", url, *argv[2:]], env)

    await post(client, CRIT)
    helpdesk.fail_next(1, 400)  # the create is refused once: a dead letter
    await deliver(client)
    capsys.readouterr()
    assert await run("outbox", "list", "--state", "dead") == 0
    listing = capsys.readouterr().out
    assert listing.startswith("pending 0, done 0, dead 1\n") and "create" in listing
    assert await run("outbox", "retry", "--all") == 0
    assert capsys.readouterr().out == "requeued 1 operation(s): 1\n"
    await deliver(client)
    assert len(helpdesk.tickets) == 1

    assert await run("incidents", "ack", "1", "--comment", "replacing the disk") == 0
    assert "acknowledged" in capsys.readouterr().out
    detail = await (await client.get("/api/v1/incidents/1")).json()
    assert (detail["ack_author"], detail["ack_comment"]) == ("dave", "replacing the disk")
    assert await run("incidents", "escalate", "1", "--reason", "customer called") == 0
    assert "escalation level 1" in capsys.readouterr().out
    assert await run("incidents", "escalate", "99", "--reason", "x") == 1
    assert "404" in capsys.readouterr().err


async def test_an_escalated_incident_whose_priority_falls_still_gets_its_updates(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """Found in review: an incident escalated past the levels of its new, lower priority
    once broke every commit when its situation update fell due. Now the update names the
    level by number and everything else goes on."""
    helpdesk, _ = sandbox
    client = await start(
        "[escalation]\nmedium = []\n"
        + "".join(f'[[escalation.high]]\nname = "t{n}"\nafter = "{n}m"\n' for n in (1, 2, 3))
        + '[updates]\nhigh = "10m"\nmedium = "10m"\n'
    )
    await post(client, CRIT)
    for _ in range(3):
        await later(client, clock, 1)
    await post(client, {**CRIT, "state": "WARNING"})  # High -> Medium: no levels at all
    await later(client, clock, 10)
    await post(client, {**CRIT, "host": "web-02"})  # the writer still commits
    (ticket_id, *_) = helpdesk.tickets
    update = [t for t in notes_text(helpdesk, ticket_id) if "Situation update" in t][-1]
    assert "Escalation: level 3" in update


async def test_escalation_tags_never_push_a_ticket_past_the_helpdesks_30(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str]
) -> None:
    """Agents filled the ticket with tags: the level still moves the ticket (its group) and its
    note says which tag did not fit, rather than the helpdesk refusing the whole update."""
    helpdesk, _ = sandbox
    client = await start(ESCALATION)
    await post(client, CRIT)
    await deliver(client)
    (ticket_id,) = helpdesk.tickets
    agents = [f"agent-{n}" for n in range(30 - len(helpdesk.tickets[ticket_id]["tags"]))]
    helpdesk.tickets[ticket_id]["tags"] = [*helpdesk.tickets[ticket_id]["tags"], *agents]
    response = await client.post(
        "/api/v1/incidents/1/escalate", json={"author": "bob", "reason": "storage is full"}
    )
    assert response.status == 200
    await deliver(client)
    ticket = helpdesk.tickets[ticket_id]
    assert ticket["group_id"] == 12 and len(ticket["tags"]) == 30
    assert set(agents) <= set(ticket["tags"])  # nothing an agent added was taken away
    assert "tier-2" in notes_text(helpdesk, ticket_id)[-1]
    dead = await (await client.get("/api/v1/outbox?state=dead")).json()
    assert dead["operations"] == []
