"""End to end: maintenance windows, stale checks and heartbeats, through HTTP to the sandbox
helpdesk, with the manual clock driving every timer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from alertd.clock import ManualClock
from alertd.sandbox import Sandbox
from tests.support import CRIT, START, Client, deliver, notes_text, post, sample

Start = Callable[..., Awaitable[Client]]
OK = {**CRIT, "state": "OK", "output": "HTTP OK"}
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


async def add_silence(client: Client, **body: Any) -> dict[str, Any]:
    body = {"author": "alice", "comment": "kernel update", **body}
    response = await client.post("/api/v1/silences", json=body)
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def incident(client: Client, number: int = 0) -> dict[str, Any]:
    found = (await (await client.get("/api/v1/incidents")).json())["incidents"]
    return dict(found[number])


async def test_a_problem_in_a_window_makes_no_ticket_and_its_recovery_resolves(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """Inside a window a new problem is recorded as suppressed (maintenance), no ticket is
    made, and its recovery still resolves the incident."""
    helpdesk, _ = sandbox
    client = await start()
    silence = await add_silence(client, host="web-*", duration="2h")
    assert silence["state"] == "active" and silence["ends_at"] == "2026-01-05T11:00:00Z"
    await post(client, CRIT)
    await deliver(client)
    held = await incident(client)
    assert (held["status"], held["suppressed"]) == ("open", True)
    assert (
        held["suppressed_reason"]
        == f"maintenance (silence {silence['id']}, by alice): kernel update"
    )
    await post(client, OK)
    clock.advance(timedelta(minutes=5))
    await deliver(client)
    assert (await incident(client))["status"] == "resolved"
    clock.advance(2 * HOUR)
    await deliver(client)
    assert helpdesk.tickets == {}


async def test_when_the_window_ends_still_failing_checks_get_tickets_at_once(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """At the window's end every key still failing is released and ticketed without the
    release grace a host recovery waits for; one that recovered is not."""
    helpdesk, _ = sandbox
    client = await start()
    await add_silence(client, host="web-01", duration="1h")
    await post(client, [CRIT, {**CRIT, "service": "SSH"}])
    await post(client, {**CRIT, "service": "SSH", "state": "OK"})
    await deliver(client)
    clock.advance(HOUR)
    await deliver(client)
    ((ticket_id, ticket),) = helpdesk.tickets.items()
    assert ticket["subject"] == "[CRITICAL] web-01 / HTTP: connection refused"
    events = (await (await client.get("/api/v1/incidents/1")).json())["events"]
    assert [e["kind"] for e in events] == ["opened", "suppressed", "unsuppressed"]
    assert notes_text(helpdesk, ticket_id) == []


async def test_an_open_incident_is_held_by_a_window_that_starts_and_a_delete_ends_it(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """A future window suppresses matching open incidents when it starts (a note on their
    ticket); expiring it early releases them; listings show active and future by default."""
    helpdesk, _ = sandbox
    client = await start()
    await post(client, CRIT)
    await deliver(client)
    starts = (START + HOUR).isoformat()
    silence = await add_silence(client, service="HTTP", starts_at=starts, duration="1h")
    assert silence["state"] == "pending"
    clock.advance(HOUR)
    await deliver(client)
    assert (await incident(client))["suppressed"] is True
    response = await client.delete(f"/api/v1/silences/{silence['id']}")
    assert (await response.json())["state"] == "expired"
    await deliver(client)
    assert (await incident(client))["suppressed"] is False
    (ticket_id,) = helpdesk.tickets
    notes = notes_text(helpdesk, ticket_id)
    assert "Suppressed: maintenance (silence 1, by alice)" in notes[0]
    assert "No longer suppressed" in notes[1]
    listed = await (await client.get("/api/v1/silences")).json()
    assert listed["silences"] == []
    everything = await (await client.get("/api/v1/silences?all=1")).json()
    assert [s["state"] for s in everything["silences"]] == ["expired"]


async def test_silences_survive_a_restart_and_end_on_time_after_it(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """A stored silence still holds back problems after a restart, and a window that ended
    while the daemon was down releases its incidents at start."""
    helpdesk, _ = sandbox
    client = await start()
    await add_silence(client, host="web-01", duration="1h")
    await post(client, CRIT)
    await client.close()

    client = await start()
    await post(client, {**CRIT, "service": "SSH"})
    await deliver(client)
    assert [i["suppressed"] for i in (await (await client.get("/api/v1/incidents")).json())[
        "incidents"]] == [True, True]  # fmt: skip
    await client.close()

    clock.advance(2 * HOUR)
    client = await start()
    await deliver(client)
    assert len(helpdesk.tickets) == 2
    assert [i["suppressed"] for i in (await (await client.get("/api/v1/incidents")).json())[
        "incidents"]] == [False, False]  # fmt: skip


async def test_a_nagios_downtime_is_a_silence_until_it_ends(
    start: Start, sandbox: tuple[Sandbox, str]
) -> None:
    """DOWNTIMESTART makes an open-ended silence for the service, so later problems are held
    too; DOWNTIMEEND expires it and what still fails gets its ticket."""
    helpdesk, _ = sandbox
    client = await start()
    macros = {**sample("nagios_notification_problem"), "NAGIOS_NOTIFICATIONAUTHOR": "bob",
              "NAGIOS_NOTIFICATIONCOMMENT": "disk swap"}  # fmt: skip
    down = {**macros, "NAGIOS_NOTIFICATIONTYPE": "DOWNTIMESTART"}
    assert (await client.post("/api/v1/nagios", json=down)).status == 202
    assert (await client.post("/api/v1/nagios", json=down)).status == 202  # a repeat: no second
    (silence,) = (await (await client.get("/api/v1/silences")).json())["silences"]
    assert (silence["host"], silence["service"], silence["source"]) == (
        "web-01",
        "Disk /var",
        "nagios",
    )
    assert (silence["ends_at"], silence["author"]) == (None, "bob")
    assert (await client.post("/api/v1/nagios", json=macros)).status == 202
    await deliver(client)
    assert helpdesk.tickets == {} and (await incident(client))["suppressed"] is True
    end = {**macros, "NAGIOS_NOTIFICATIONTYPE": "DOWNTIMEEND"}
    assert (await client.post("/api/v1/nagios", json=end)).status == 202
    await deliver(client)
    assert len(helpdesk.tickets) == 1
    assert (await (await client.get("/api/v1/silences")).json())["silences"] == []


async def test_a_recurring_window_comes_back_every_week(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """A weekly Monday 10:00-11:00 Berlin window (09:00 UTC in January) holds problems during
    each occurrence and not between them."""
    helpdesk, _ = sandbox
    client = await start()
    weekly = {"days": ["mon"], "start": "10:00", "duration": "1h", "timezone": "Europe/Berlin"}
    silence = await add_silence(client, host="web-01", recurring=weekly)
    assert silence["state"] == "active" and silence["next_change"] == "2026-01-05T10:00:00Z"
    await post(client, CRIT)
    await deliver(client)
    assert helpdesk.tickets == {}
    clock.advance(HOUR)
    await deliver(client)
    assert len(helpdesk.tickets) == 1  # released at 11:00 local
    clock.advance(7 * 24 * HOUR - HOUR)
    await post(client, {**CRIT, "service": "SSH"})
    await deliver(client)
    assert len(helpdesk.tickets) == 1
    assert (await incident(client))["suppressed"] is True


async def test_bad_silences_are_refused_naming_each_field(start: Start) -> None:
    """Every problem of the body is named by field, and nothing is stored."""
    client = await start()
    body = {"host": "re:(", "labels": {"env": 3}, "starts_at": "tomorrow", "duration": "2h",
            "ends_at": "2026-01-06T00:00:00Z", "recurring": {"days": ["funday"], "start": "9",
            "duration": "1h", "timezone": "Mars/Base"}, "colour": "red"}  # fmt: skip
    response = await client.post("/api/v1/silences", json=body)
    assert response.status == 400
    details = (await response.json())["details"]
    assert [d["field"] for d in details] == [
        "colour", "host", "labels.env", "author", "comment", "starts_at", "recurring.timezone",
        "duration",
    ]  # fmt: skip
    assert (await (await client.get("/api/v1/silences?all=1")).json())["silences"] == []
    assert (await client.delete("/api/v1/silences/9")).status == 404


async def test_a_check_that_stops_reporting_is_stale_not_resolved(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """A stream with results every 2 minutes, then nothing: after 3 intervals (6m) its open
    incident is stale with a ticket note, and silence never resolves it; fresh OK data then
    recovers it, and the hold resolves it."""
    helpdesk, _ = sandbox
    client = await start()
    stream = {**CRIT, "reporting": "stream"}
    for _ in range(3):
        await post(client, stream)
        clock.advance(2 * MINUTE)
    await deliver(client)
    clock.advance(6 * MINUTE)
    await deliver(client)
    quiet = await incident(client)
    assert (quiet["status"], quiet["stale"], quiet["interval_seconds"]) == ("open", True, 120.0)
    assert quiet["reporting"] == "stream"
    (ticket_id,) = helpdesk.tickets
    assert "No data from the check since" in notes_text(helpdesk, ticket_id)[-1]
    assert "every 2m" in notes_text(helpdesk, ticket_id)[-1]
    metrics = await (await client.get("/metrics")).text()
    assert "alertd_incidents_stale 1.0" in metrics  # an SRE sees it too
    clock.advance(HOUR)
    await deliver(client)
    assert (await incident(client))["status"] == "open"
    await post(client, {**OK, "reporting": "stream"})
    await deliver(client)
    back = await incident(client)
    assert (back["status"], back["stale"]) == ("recovering", False)
    clock.advance(5 * MINUTE)
    await deliver(client)
    assert (await incident(client))["status"] == "resolved"
    notes = notes_text(helpdesk, ticket_id)
    assert any("reports again (OK)" in n and "Recovered at" in n for n in notes)
    assert "resolved by alertd" in notes[-1]


async def test_a_stream_that_stops_during_the_hold_still_resolves(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """Staleness never turns a recovery into a stuck incident: a stream that recovers and then
    goes quiet (the check removed, the host decommissioned) resolves when its hold ends, its
    ticket too; a problem that comes back later reopens it."""
    helpdesk, _ = sandbox
    client = await start('[lifecycle]\nstale_after = "1m"\nrecovery_hold = "10m"')
    stream = {**CRIT, "reporting": "stream"}
    for _ in range(3):
        await post(client, stream)
        clock.advance(30 * timedelta(seconds=1))
    await post(client, {**OK, "reporting": "stream"})
    await deliver(client)
    clock.advance(2 * MINUTE)  # past stale_after, inside the hold
    await deliver(client)
    assert (await incident(client))["stale"] is False
    clock.advance(8 * MINUTE)
    await deliver(client)
    assert (await incident(client))["status"] == "resolved"
    (ticket,) = helpdesk.tickets.values()
    assert ticket["status"] == 4


async def test_notifications_a_minute_apart_resolve_and_are_never_stale(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """PROBLEM and RECOVERY notifications less than 100 s apart (a short outage; notifications
    only, the main Nagios setup): the recovery resolves after the hold and the ticket with it.
    A notification's silence is its normal, so no interval is learnt and nothing turns stale."""
    helpdesk, _ = sandbox
    client = await start()
    problem = {**sample("nagios_notification_problem"), "NAGIOS_TIMET": str(int(START.timestamp()))}
    assert (await client.post("/api/v1/nagios", json=problem)).status == 202
    clock.advance(timedelta(seconds=60))
    recovery = {
        **sample("nagios_notification_recovery"),
        "NAGIOS_TIMET": str(int(clock.now().timestamp())),
        "NAGIOS_LASTSERVICECHECK": str(int(clock.now().timestamp())),
    }
    assert (await client.post("/api/v1/nagios", json=recovery)).status == 202
    await deliver(client)
    for _ in range(24 * 60 // 5):  # a day, looking every five minutes
        clock.advance(5 * MINUTE)
        await deliver(client)
    done = await incident(client)
    assert (done["status"], done["stale"], done["interval_seconds"]) == ("resolved", False, None)
    assert done["reporting"] == "change"
    (ticket,) = helpdesk.tickets.values()
    assert ticket["status"] == 4


async def test_a_missed_heartbeat_opens_an_incident_and_the_next_beat_resolves_it(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """No beat for 1.5 intervals opens alertd-heartbeat/<name> with a ticket; the next beat
    starts its recovery, which resolves the ticket after the hold."""
    helpdesk, _ = sandbox
    client = await start()
    response = await client.post("/api/v1/heartbeats/nagios", json={"interval": "5m"})
    assert response.status == 200
    assert (await response.json())["due"] == "2026-01-05T09:07:30.000000Z"
    clock.advance(7 * MINUTE)
    await deliver(client)
    assert helpdesk.tickets == {}
    clock.advance(MINUTE)
    await deliver(client)
    ((ticket_id, ticket),) = helpdesk.tickets.items()
    assert ticket["subject"] == (
        "[CRITICAL] alertd-heartbeat / nagios: no heartbeat from nagios since "
        "2026-01-05 09:00:00 UTC (expected every 5m)"
    )
    listed = (await (await client.get("/api/v1/heartbeats")).json())["heartbeats"]
    assert [(h["name"], h["missed"]) for h in listed] == [("nagios", True)]
    assert (await client.post("/api/v1/heartbeats/nagios")).status == 200  # interval known
    clock.advance(5 * MINUTE)
    await deliver(client)
    assert helpdesk.tickets[ticket_id]["status"] == 4
    assert (await client.delete("/api/v1/heartbeats/nagios")).status == 200
    assert (await client.post("/api/v1/heartbeats/other")).status == 400  # no interval yet


async def test_deleting_a_heartbeat_resolves_what_its_misses_opened(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """A heartbeat whose miss opened a CRITICAL incident is deleted: the incident recovers
    (nothing will beat again) and resolves after the hold, its ticket too, instead of staying
    open and escalating for ever. Fresh beats under the same name later change nothing."""
    helpdesk, _ = sandbox
    client = await start()
    assert (await client.post("/api/v1/heartbeats/backup", json={"interval": "5m"})).status == 200
    clock.advance(8 * MINUTE)
    await deliver(client)
    (ticket_id,) = helpdesk.tickets
    assert (await incident(client))["status"] == "open"
    assert (await client.delete("/api/v1/heartbeats/backup")).status == 200
    await deliver(client)
    gone = await incident(client)
    assert (gone["status"], gone["check_state"]) == ("recovering", "OK")
    assert gone["last_output"] == "heartbeat backup retired: no longer watched"
    clock.advance(5 * MINUTE)
    await deliver(client)
    assert (await incident(client))["status"] == "resolved"
    assert helpdesk.tickets[ticket_id]["status"] == 4
    clock.advance(HOUR)
    assert (await client.post("/api/v1/heartbeats/backup", json={"interval": "5m"})).status == 200
    clock.advance(4 * MINUTE)
    assert (await client.post("/api/v1/heartbeats/backup")).status == 200
    await deliver(client)
    assert (await incident(client))["status"] == "resolved"
    assert list(helpdesk.tickets) == [ticket_id]


async def test_a_first_beat_ends_an_incident_left_open_under_its_name(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """An incident left open under a heartbeat's key (a heartbeat deleted by an older alertd)
    recovers at the first beat of a heartbeat of that name."""
    client = await start()
    await post(client, {"host": "alertd-heartbeat", "service": "backup", "state": "CRITICAL"})
    assert (await client.post("/api/v1/heartbeats/backup", json={"interval": "5m"})).status == 200
    assert (await incident(client))["status"] == "recovering"


async def test_alertds_own_downtime_does_not_make_checks_stale(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """alertd is down for an hour, far longer than a stream's stale window (3 x 2m): at the
    restart no incident is marked stale and no ticket gets a "No data" note; the silence counts
    from the daemon's start, so a check that stays silent after it is stale 6 minutes later."""
    helpdesk, _ = sandbox
    client = await start()
    for _ in range(3):
        await post(client, {**CRIT, "interval": "2m"})
        clock.advance(2 * MINUTE)
    await deliver(client)
    (ticket_id,) = helpdesk.tickets
    await client.close()
    clock.advance(HOUR)
    client = await start()  # the restart
    await deliver(client)
    assert (await incident(client))["stale"] is False
    clock.advance(5 * MINUTE)
    await post(client, {**CRIT, "interval": "2m"})  # the check reports again: never stale
    await deliver(client)
    assert (await incident(client))["stale"] is False
    notes = notes_text(helpdesk, ticket_id)
    assert not [n for n in notes if "No data from the check" in n or "reports again" in n]
    clock.advance(6 * MINUTE)
    await deliver(client)
    assert (await incident(client))["stale"] is True  # silent 6m while alertd ran
