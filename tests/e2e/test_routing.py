"""Ticket policy rules end to end: the right team's queue, no ticket where a rule says so, the
recovery a team wants, and a reload that routes new tickets (alertd.routing)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from alertd import reload
from alertd.clock import ManualClock
from alertd.sandbox import Sandbox
from tests.support import CRIT, Client, deliver, incidents, notes_text, post

RULES = """
[[helpdesk.rules]]
name = "disk space: the storage team's dashboard, no tickets"
service = "Disk*"
create = false

[[helpdesk.rules]]
name = "databases"
labels = { hostgroups = "*db*" }
priority = ["urgent", "high"]
group_id = 7
responder_id = 3
tags = ["dba"]
custom_fields = { cf_team = "dba" }
recovery = "note"

[[helpdesk.rules]]
name = "web: only high and up"
host = "web-*"
min_priority = "high"
recovery = "close"
"""


async def test_rules_route_skip_and_choose_the_recovery_and_a_reload_routes_new_tickets(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], clock: ManualClock,
    tmp_path: Path,
) -> None:  # fmt: skip
    """First match wins: a Disk check stays in alertd only; a database problem goes to the
    DBA group with its tags and fields and recovers with a note only; a web WARNING waits for
    High; a reload's new rule applies to the next ticket, not to tickets already open."""
    helpdesk, _ = sandbox
    helpdesk.options.custom_fields = ("cf_team",)
    client = await start(RULES)
    db = {**CRIT, "host": "db-01", "service": "Postgres", "labels": {"hostgroups": "db,linux"}}
    await post(client, [{**CRIT, "service": "Disk /var"}, db, {**CRIT, "state": "WARNING"}])
    await deliver(client)
    (db_ticket,) = helpdesk.tickets.values()  # neither the Disk check nor the WARNING
    assert (db_ticket["group_id"], db_ticket["responder_id"]) == (7, 3)
    assert db_ticket["tags"] == ["alertd", "dba", "alertd-main-2"]
    assert db_ticket["custom_fields"] == {"cf_team": "dba"}
    assert {i["service"] for i in await incidents(client, status="open")} == {
        "Disk /var", "Postgres", "HTTP",
    }  # fmt: skip

    await post(client, CRIT)  # web-01 HTTP reaches High: now it gets a ticket
    await deliver(client)
    assert len(helpdesk.tickets) == 2
    web_id = max(helpdesk.tickets)

    (tmp_path / "alertd.toml").write_text(
        (tmp_path / "alertd.toml").read_text().replace('"note"', '"resolve"')
        .replace('service = "Disk*"\ncreate = false', 'service = "Disk*"\ngroup_id = 9')
    )  # fmt: skip
    report = await reload.reload(client.app, tmp_path / "alertd.toml", env={})
    assert report.applied and not report.problems
    await post(client, {**CRIT, "service": "Disk /home"})
    await deliver(client)
    (disk,) = [t for t in helpdesk.tickets.values() if "Disk /home" in t["subject"]]
    assert disk["group_id"] == 9

    ok = {"state": "OK", "output": "fine"}
    await post(client, [{**db, **ok}, {**CRIT, **ok}])
    clock.advance(timedelta(minutes=10))
    await deliver(client)
    db_id = next(i for i, t in helpdesk.tickets.items() if t["tags"][-1] == "alertd-main-2")
    # "note", as when its ticket was made (the reload's "resolve" is for new tickets only).
    assert helpdesk.tickets[db_id]["status"] == 2
    assert "leaves closing this ticket to you" in notes_text(helpdesk, db_id)[-1]
    assert helpdesk.tickets[web_id]["status"] == 5  # "close"
