"""End to end: what kind of source sent a result (a stream of every check, or a report of each
change) and in what order results arrive; through HTTP to the sandbox helpdesk, on the manual
clock."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from alertd.clock import ManualClock
from alertd.sandbox import Sandbox
from tests.support import CRIT, SAMPLES, Client, deliver, incidents, post
from tests.support.macros import macros, send

Start = Callable[..., Awaitable[Client]]
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
OK = {**CRIT, "state": "OK", "output": "HTTP OK"}


async def only(client: Client) -> dict[str, Any]:
    (found,) = await incidents(client)
    return found


async def events(client: Client, incident_id: int) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/incidents/{incident_id}")
    return list((await response.json())["events"])


async def metric(client: Client, line_start: str) -> float:
    text = await (await client.get("/metrics")).text()
    (line,) = [line for line in text.splitlines() if line.startswith(line_start)]
    return float(line.rsplit(" ", 1)[1])


# -- change reports -------------------------------------------------------------------------------


async def test_outages_reported_as_notifications_never_flap_and_each_one_resolves(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """Nagios notifications are changes only, so every entry is a transition: counted like a
    stream, three ordinary outages three hours apart reached 29.9% and the incident stayed open
    as flapping, escalating, on an OK service. They are not counted: each RECOVERY resolves
    after the hold, the same ticket reopens for the next PROBLEM, and a day later all is
    resolved."""
    helpdesk, _ = sandbox
    client = await start()
    for outage in range(4):
        problem = macros("web-01", "HTTP", "CRITICAL", clock.now(), notification="PROBLEM")
        await send(client, problem)
        await deliver(client)
        clock.advance(10 * MINUTE)
        recovery = macros("web-01", "HTTP", "OK", clock.now(), notification="RECOVERY")
        await send(client, recovery)
        clock.advance(5 * MINUTE)
        await deliver(client)
        done = await only(client)
        assert (done["status"], done["flapping"]) == ("resolved", False), outage
        assert done["percent_state_change"] == 0.0
        clock.advance(3 * HOUR)
    clock.advance(24 * HOUR)
    await deliver(client)
    assert (await only(client))["status"] == "resolved"
    ((ticket_id, ticket),) = helpdesk.tickets.items()
    assert ticket["status"] == 4
    assert not any("flapping" in n["body"] for n in helpdesk.notes.get(ticket_id, []))


async def test_alertmanager_firing_and_resolved_never_flap_and_each_one_resolves(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """The captured Alertmanager firing/resolved pair, four times three hours apart: each
    resolved alert resolves the incident after the hold; no flapping."""
    helpdesk, _ = sandbox
    client = await start()
    firing = json.loads((SAMPLES / "alertmanager_firing.json").read_text())
    resolved = json.loads((SAMPLES / "alertmanager_resolved.json").read_text())
    for outage in range(4):
        assert (await client.post("/api/v1/alertmanager", json=firing)).status == 200
        await deliver(client)
        clock.advance(10 * MINUTE)
        assert (await client.post("/api/v1/alertmanager", json=resolved)).status == 200
        clock.advance(5 * MINUTE)
        await deliver(client)
        done = await only(client)
        assert (done["status"], done["flapping"], done["reporting"]) == (
            "resolved",
            False,
            "change",
        ), outage
        clock.advance(3 * HOUR)
    (ticket,) = helpdesk.tickets.values()
    assert ticket["status"] == 4


async def test_a_native_result_is_a_change_report_unless_the_client_says_otherwise(
    make_client: Callable[..., Awaitable[Client]], clock: ManualClock
) -> None:
    """Native results report changes by default; `"reporting": "stream"` or an `interval`
    (which implies a stream) make them a stream, whose interval staleness can use."""
    client = await make_client()
    await post(client, CRIT)
    assert (await only(client))["reporting"] == "change"
    await post(client, {**CRIT, "interval": "2m"})
    stream = await only(client)
    assert (stream["reporting"], stream["interval_seconds"]) == ("stream", 120.0)
    await post(client, {**CRIT, "service": "SSH", "reporting": "stream", "interval": 30})
    ssh = (await incidents(client))[0]
    assert (ssh["reporting"], ssh["interval_seconds"]) == ("stream", 30.0)


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ({"reporting": "sometimes"}, "reporting", "'sometimes' is not stream or change"),
        ({"interval": "soon"}, "interval", "expected a duration"),
        ({"interval": 0}, "interval", "out of range"),
        ({"interval": "400d"}, "interval", "out of range"),
        ({"interval": True}, "interval", "got a boolean"),
        ({"interval": "5m", "reporting": "change"}, "interval", "an interval is for a stream"),
    ],
)
async def test_a_bad_reporting_or_interval_is_refused_by_name(
    make_client: Callable[..., Awaitable[Client]], extra: dict[str, Any], field: str, message: str
) -> None:
    client = await make_client()
    response = await client.post("/api/v1/results", json={**CRIT, **extra})
    assert response.status == 400
    (detail,) = (await response.json())["details"]
    assert detail["field"] == field and message in detail["message"], detail


async def test_a_stream_flaps_as_nagios_counts_it(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """OCSP forwards every check: a check swinging CRITICAL/OK at every run flaps, as in Nagios,
    at the fourth result (the key's OK before the first problem counts, as Nagios's buffer
    starts all OK), and its ticket says so once instead of a note per swing."""
    helpdesk, _ = sandbox
    client = await start()
    for n, state in enumerate(["CRITICAL", "OK", "CRITICAL", "OK"]):
        await send(client, macros("web-01", "HTTP", state, clock.now()))
        await deliver(client)
        seen = await only(client)
        assert seen["flapping"] is (n == 3), n
        clock.advance(MINUTE)
    assert (seen["status"], seen["percent_state_change"], seen["reporting"]) == (
        "open",
        24.21,
        "stream",
    )
    (ticket_id,) = helpdesk.tickets
    assert "started flapping" in helpdesk.notes[ticket_id][-1]["body"]


# -- order ----------------------------------------------------------------------------------------


async def test_a_late_problem_changes_nothing_and_is_recorded(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """A CRITICAL stamped before the OK that started the recovery arrives after it (a spool, a
    second path): it neither reopens the incident nor its ticket, nor moves `last_seen` back; it
    is in the audit trail (`late`) and counted in `alertd_results_late_total`."""
    helpdesk, _ = sandbox
    client = await start()
    t1 = clock.now()
    await post(client, {**CRIT, "timestamp": t1.isoformat()})
    clock.advance(8 * MINUTE)
    t9 = clock.now()
    await post(client, {**OK, "timestamp": t9.isoformat()})
    await deliver(client)
    clock.advance(MINUTE)
    late = {**CRIT, "output": "from the spool", "timestamp": (t1 + MINUTE).isoformat()}
    await post(client, [late, late])
    await deliver(client)
    held = await only(client)
    assert (held["status"], held["last_seen"]) == ("recovering", "2026-01-05T09:08:00.000000Z")
    assert held["last_output"] == "HTTP OK"
    (event,) = [e for e in await events(client, held["id"]) if e["kind"] == "late"]
    assert event["detail"] == {
        "state": "CRITICAL",
        "timestamp": "2026-01-05T09:01:00+00:00",
        "newest": "2026-01-05T09:08:00+00:00",
        "source": "api",
        "output": "from the spool",
        "count": 2,
    }
    assert await metric(client, 'alertd_results_late_total{source="api"}') == 2.0
    clock.advance(5 * MINUTE)
    await deliver(client)
    assert (await only(client))["status"] == "resolved"
    await post(client, {**CRIT, "timestamp": (t1 + 2 * MINUTE).isoformat()})  # still history
    await deliver(client)
    assert (await only(client))["status"] == "resolved"
    (ticket,) = helpdesk.tickets.values()
    assert ticket["status"] == 4


async def test_a_late_ok_does_not_resolve_a_live_problem(
    make_client: Callable[..., Awaitable[Client]], clock: ManualClock
) -> None:
    """An OK older than the newest CRITICAL is history: the problem stays open."""
    client = await make_client()
    t0 = clock.now()
    clock.advance(5 * MINUTE)
    await post(client, {**CRIT, "timestamp": clock.now().isoformat()})
    await post(client, {**OK, "timestamp": (t0 + MINUTE).isoformat()})
    still = await only(client)
    assert (still["status"], still["check_state"]) == ("open", "CRITICAL")
    assert [e["kind"] for e in await events(client, still["id"])][-1] == "late"


async def test_nagios_results_out_of_order_apply_the_newest_only(
    make_client: Callable[..., Awaitable[Client]], clock: ManualClock
) -> None:
    """Nagios stamps results with the check's time: an OCSP result of an older check that
    arrives after a newer one (a spool drained after a live send) is late."""
    client = await make_client()
    older = clock.now()
    clock.advance(MINUTE)
    await send(client, macros("web-01", "HTTP", "CRITICAL", clock.now()))
    await send(client, macros("web-01", "HTTP", "OK", older))
    assert (await only(client))["status"] == "open"
    assert await metric(client, 'alertd_results_late_total{source="nagios"}') == 1.0
