"""A restart loads live incidents folded (alertd.cache: decoded when the writer first reads
them). A folded incident must behave exactly as a decoded one: each scenario runs twice, once
as the start leaves the cache and once with every incident decoded right after the start, and
both must show the same: gauges at once, timers on time (recovery hold, reopen window, stale
deadline, escalation), repeats deduplicated, acks by id, the API and the console."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from alertd.clock import ManualClock
from alertd.http.keys import ENGINE
from alertd.sandbox import Sandbox
from tests.support import Client, deliver, post

CONFIG = """
[[escalation.high]]
name = "tier 2"
after = "30m"
group_id = 12
[updates]
high = "none"
[lifecycle]
recovery_hold = "5m"
reopen_window = "1h"
"""


def result(host: str, state: str = "CRITICAL", **extra: Any) -> dict[str, Any]:
    return {"host": host, "service": "HTTP", "state": state, "output": state.lower(), **extra}


async def by_host(client: Client) -> dict[str, dict[str, Any]]:
    listed = await (await client.get("/api/v1/incidents", params={"limit": "100"})).json()
    return {i["host"]: i for i in listed["incidents"]}


async def gauges(client: Client) -> list[str]:
    """The incident gauges' samples (the counters start again from zero at a restart)."""
    text = await (await client.get("/metrics")).text()
    return sorted(
        line for line in text.splitlines()
        if line.startswith("alertd_incidents") and "_total" not in line and "_created" not in line
    )  # fmt: skip


async def at(client: Client, clock: ManualClock, moment: timedelta, start: datetime) -> None:
    """Move the clock to `moment` after the scenario's start and let the daemon act."""
    clock.advance(start + moment - clock.now())
    await deliver(client)


@pytest.mark.parametrize("flavour", ["freshdesk"])
@pytest.mark.parametrize("decoded", [False, True], ids=["folded", "decoded"])
async def test_a_restarted_daemon_behaves_the_same_whether_incidents_are_folded_or_not(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], clock: ManualClock,
    decoded: bool,
) -> None:  # fmt: skip
    helpdesk, _ = sandbox
    t0 = clock.now()
    client = await start(CONFIG)
    # web-01 open (escalates at 30m), web-02 recovering at the restart (hold ends at 9m),
    # web-03 resolved at 6m (may reopen until 1h6m), web-04 a WARNING fed by a stream (every
    # 10 minutes: stale after 30 minutes of silence; medium, so it never escalates), web-05
    # acknowledged, web-06 open (acknowledged after the restart).
    await post(client, [result(f"web-0{n}") for n in (1, 2, 3, 5, 6)])
    await post(client, result("web-04", "WARNING", interval=600, reporting="stream"))
    await deliver(client)
    await at(client, clock, timedelta(minutes=1), t0)
    await post(client, result("web-03", "OK"))
    await at(client, clock, timedelta(minutes=4), t0)
    await post(client, result("web-02", "OK"))
    before = await by_host(client)
    ack = await client.post(f"/api/v1/incidents/{before['web-05']['id']}/ack",
                            json={"author": "ann"})  # fmt: skip
    assert ack.status == 200
    await at(client, clock, timedelta(minutes=6), t0)
    before = await by_host(client)
    assert {h: i["status"] for h, i in before.items()} == {
        "web-01": "open", "web-02": "recovering", "web-03": "resolved", "web-04": "open",
        "web-05": "open", "web-06": "open",
    }  # fmt: skip
    counted = await gauges(client)
    tickets = dict(helpdesk.tickets)
    await client.close()

    client = await start(CONFIG)  # the restart, at 6m
    engine = client.app[ENGINE]
    assert engine.folded_incidents == 6  # nothing was due: all six still folded
    if decoded:
        assert len(list(engine.incidents())) == 6
        assert engine.folded_incidents == 0
    assert await gauges(client) == counted  # the gauges are right at once
    assert await by_host(client) == before

    # A repeat is deduplicated into the same incident; an ack by id finds its incident.
    await post(client, result("web-01"))
    ids = {h: i["id"] for h, i in before.items()}
    ack = await client.post(f"/api/v1/incidents/{ids['web-06']}/ack", json={"author": "bob"})
    assert ack.status == 200 and (await ack.json())["ack_author"] == "bob"
    assert (await client.post("/api/v1/incidents/999/ack", json={"author": "bob"})).status == 404
    now = await by_host(client)
    assert (now["web-01"]["id"], now["web-01"]["occurrences"]) == (ids["web-01"], 2)

    # The recovery hold ends at 9m, not before.
    await at(client, clock, timedelta(minutes=9) - timedelta(seconds=1), t0)
    assert (await by_host(client))["web-02"]["status"] == "recovering"
    await at(client, clock, timedelta(minutes=9, seconds=1), t0)
    assert (await by_host(client))["web-02"]["status"] == "resolved"

    # A problem inside the reopen window reopens the same incident (and its ticket).
    await at(client, clock, timedelta(minutes=10), t0)
    await post(client, result("web-03"))
    reopened = (await by_host(client))["web-03"]
    assert (reopened["id"], reopened["status"], reopened["reopen_count"]) == (
        ids["web-03"], "open", 1,
    )  # fmt: skip

    # web-01's ticket escalates at 30m after it opened, not before.
    ticket_id = next(t for t, ticket in tickets.items() if "web-01" in ticket["subject"])
    await at(client, clock, timedelta(minutes=30) - timedelta(seconds=1), t0)
    assert helpdesk.tickets[ticket_id]["group_id"] is None
    await at(client, clock, timedelta(minutes=30, seconds=1), t0)
    assert helpdesk.tickets[ticket_id]["group_id"] == 12

    # web-04's stream has been silent since 0m; the silence counts from the start (6m), and
    # 3 intervals later (30m) it is stale: at 36m, not before.
    await at(client, clock, timedelta(minutes=36) - timedelta(seconds=1), t0)
    assert (await by_host(client))["web-04"]["stale"] is False
    await at(client, clock, timedelta(minutes=36, seconds=1), t0)
    assert (await by_host(client))["web-04"]["stale"] is True

    # The console's board lists the unresolved ones (web-02 resolved at 9m).
    board = await (await client.get("/ui/")).text()
    assert [f"web-0{n}" in board for n in range(1, 7)] == [True, False, True, True, True, True]
    assert engine.folded_incidents == 0  # the board read them all
    await client.close()
