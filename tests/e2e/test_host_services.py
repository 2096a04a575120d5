"""End to end: a host and its services. The host's problem absorbs its services' whatever the
order their results arrive in (Nagios runs host and service checks as separate jobs), in one
request or in several, and on a second outage within the reopen window: one ticket, the host's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from alertd.clock import ManualClock
from alertd.sandbox import Sandbox
from tests.support import Client, deliver, incidents
from tests.support.macros import macros, send

Start = Callable[..., Awaitable[Client]]
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
SERVICES = ("Disk", "HTTP", "Load")
NRDP_TOKEN = "nrdp-token"
NRDP = f'[nrdp]\ntokens = ["{NRDP_TOKEN}"]\n'


async def by_key(client: Client) -> dict[str, dict[str, Any]]:
    return {i["key"]: i for i in await incidents(client, limit="1000")}


async def nrdp(client: Client, *lines: tuple[str, str | None, int]) -> None:
    """One NRDP submitcheck request with these (host, service, state code) results, in order."""
    checks = "".join(
        f"<checkresult type='{'host' if svc is None else 'service'}'><hostname>{host}</hostname>"
        + ("" if svc is None else f"<servicename>{svc}</servicename>")
        + f"<state>{code}</state><output>code {code}</output></checkresult>"
        for host, svc, code in lines
    )
    body = urlencode(
        {"token": NRDP_TOKEN, "cmd": "submitcheck", "xml": f"<checkresults>{checks}</checkresults>"}
    )
    response = await client.post(
        "/nrdp/", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status == 200 and "<status>0</status>" in await response.text()


def services(state: str, clock: ManualClock, host: str = "web-01") -> list[dict[str, str]]:
    return [macros(host, s, state, clock.now()) for s in SERVICES]


def host(state: str, clock: ManualClock, state_type: str, attempt: int) -> dict[str, str]:
    return macros(
        "web-01", None, state, clock.now(), state_type=state_type, attempt=attempt, max_attempts=2
    )


async def outage(client: Client, clock: ManualClock) -> None:
    """web-01 goes down as Nagios reports it with OCSP/OCHP: the services' HARD CRITICALs
    first, the host's SOFT DOWN 80 ms later, its HARD DOWN at the retry a minute later."""
    await send(client, *services("CRITICAL", clock))
    clock.advance(timedelta(milliseconds=80))
    await send(client, host("DOWN", clock, "SOFT", 1))
    await deliver(client)
    clock.advance(MINUTE)
    await send(client, host("DOWN", clock, "HARD", 2))
    await deliver(client)


async def recovery(client: Client, clock: ManualClock) -> None:
    """web-01 and its services come back, and stay so for the recovery hold."""
    clock.advance(10 * MINUTE)
    await send(client, host("UP", clock, "HARD", 1))
    clock.advance(SECOND)
    await send(client, *services("OK", clock))
    await deliver(client)
    clock.advance(5 * MINUTE)
    await deliver(client)


async def test_services_reported_just_before_their_host_get_no_ticket(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """OCSP before OCHP: the services' HARD CRITICALs arrive 80 ms before the host's SOFT DOWN.
    The service incidents are visible at once; their tickets wait the service grace, in which
    the host's problem absorbs them: no service ticket and no note, only the host's ticket."""
    helpdesk, _ = sandbox
    client = await start(service_grace=None)  # the documented default, 30s
    await send(client, *services("CRITICAL", clock))
    seen = await by_key(client)
    assert {k: (i["status"], i["suppressed"]) for k, i in seen.items()} == {
        f"web-01/{s}": ("open", False) for s in SERVICES
    }
    await deliver(client)
    assert helpdesk.tickets == {}  # waiting for the grace
    clock.advance(timedelta(milliseconds=80))
    await send(client, host("DOWN", clock, "SOFT", 1))
    clock.advance(MINUTE)
    await send(client, host("DOWN", clock, "HARD", 2))
    await deliver(client)
    seen = await by_key(client)
    assert all(seen[f"web-01/{s}"]["suppressed"] for s in SERVICES)
    ((ticket_id, ticket),) = helpdesk.tickets.items()
    assert ticket["subject"].startswith("[DOWN] web-01:")
    await recovery(client, clock)
    assert {i["status"] for i in (await by_key(client)).values()} == {"resolved"}
    assert list(helpdesk.tickets) == [ticket_id] and helpdesk.tickets[ticket_id]["status"] == 4


async def test_a_service_alone_gets_its_ticket_after_the_grace(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """With its host fine, a service problem gets its ticket when the grace ends; one that
    recovers within the grace gets none."""
    helpdesk, _ = sandbox
    client = await start(service_grace="30s")
    await send(client, macros("web-01", "HTTP", "CRITICAL", clock.now()))
    await send(client, macros("web-02", "HTTP", "CRITICAL", clock.now()))
    clock.advance(10 * SECOND)
    await send(client, macros("web-02", "HTTP", "OK", clock.now()))
    await deliver(client)
    assert helpdesk.tickets == {}
    clock.advance(20 * SECOND)
    await deliver(client)
    (ticket,) = helpdesk.tickets.values()
    assert ticket["subject"].startswith("[CRITICAL] web-01 / HTTP")


async def test_nrdp_service_lines_before_the_host_line_are_absorbed(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """NRDP: the service lines first, in the same request as the host's DOWN or in the one
    before it: the services are absorbed either way, and no service gets a ticket, even with no
    grace at all when they share the request."""
    helpdesk, _ = sandbox
    client = await start(NRDP)  # no service grace: the same request must suffice
    await nrdp(client, ("web-01", "HTTP", 2), ("web-01", "Disk", 2), ("web-01", None, 1))
    await deliver(client)
    seen = await by_key(client)
    assert seen["web-01/HTTP"]["suppressed"] and seen["web-01/Disk"]["suppressed"]
    (ticket,) = helpdesk.tickets.values()
    assert ticket["subject"].startswith("[DOWN] web-01")

    await client.close()  # one daemon per store: the next app takes it over
    graced = await start(NRDP, service_grace=None)
    await nrdp(graced, ("web-02", "HTTP", 2))
    clock.advance(timedelta(milliseconds=80))
    await nrdp(graced, ("web-02", None, 1))
    clock.advance(MINUTE)
    await deliver(graced)
    seen = await by_key(graced)
    assert seen["web-02/HTTP"]["suppressed"]
    assert sorted(t["subject"][:14] for t in helpdesk.tickets.values()) == [
        "[DOWN] web-01:",
        "[DOWN] web-02:",
    ]


async def test_a_new_service_problem_with_its_hosts_recovery_in_one_request_is_released(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """The host is DOWN; one request brings a new service problem and the host's UP. The
    service is absorbed and released in the same commit: it is not left suppressed for ever,
    and gets its ticket after the release grace, if it still fails."""
    helpdesk, _ = sandbox
    client = await start(NRDP)
    await nrdp(client, ("web-01", None, 1))
    await deliver(client)
    (host_ticket,) = helpdesk.tickets
    clock.advance(MINUTE)
    await nrdp(client, ("web-01", "HTTP", 2), ("web-01", None, 0))
    await deliver(client)
    http = (await by_key(client))["web-01/HTTP"]
    assert (http["status"], http["suppressed"]) == ("open", False)
    assert list(helpdesk.tickets) == [host_ticket]
    clock.advance(2 * MINUTE)  # release_grace
    await deliver(client)
    assert len(helpdesk.tickets) == 2


async def quiet(client: Client, clock: ManualClock, span: timedelta) -> None:
    """`span` of ordinary checks every 5 minutes, all fine, each forwarded by OCSP/OCHP."""
    end = clock.now() + span
    while clock.now() < end:
        clock.advance(5 * MINUTE)
        await send(client, host("UP", clock, "HARD", 1), *services("OK", clock))
        await deliver(client)


async def test_a_second_outage_within_the_reopen_window_is_the_hosts_alone(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """Two outages of web-01 an hour apart, as Nagios reports them with OCSP/OCHP (every check
    forwarded). In the second, the host's resolved incident goes SOFT DOWN: that absorbs the
    services (it did not, and three service tickets were reopened), and the host's ticket alone
    is reopened. Two outages in an hour make the checks flap, as Nagios counts it: they stay
    open through their OKs until the flapping stops, and a service released meanwhile at OK
    gets no ticket ("[OK] web-01 / HTTP"). Then everything resolves."""
    helpdesk, _ = sandbox
    client = await start(service_grace=None)
    await outage(client, clock)
    await recovery(client, clock)
    ((ticket_id, ticket),) = helpdesk.tickets.items()
    assert ticket["status"] == 4
    await quiet(client, clock, HOUR)
    await send(client, host("DOWN", clock, "SOFT", 1))
    clock.advance(SECOND)
    await send(client, *services("CRITICAL", clock))
    seen = await by_key(client)
    assert seen["web-01"]["status"] == "resolved"  # only SOFT so far
    assert all(seen[f"web-01/{s}"]["suppressed"] for s in SERVICES)
    clock.advance(MINUTE)
    await send(client, host("DOWN", clock, "HARD", 2))
    await deliver(client)
    clock.advance(MINUTE)
    await deliver(client)
    assert list(helpdesk.tickets) == [ticket_id]
    assert helpdesk.tickets[ticket_id]["status"] == 2  # reopened
    await recovery(client, clock)
    seen = await by_key(client)
    assert seen["web-01"]["flapping"] and seen["web-01"]["status"] == "open"
    await quiet(client, clock, 3 * HOUR)
    assert {i["status"] for i in (await by_key(client)).values()} == {"resolved"}
    assert list(helpdesk.tickets) == [ticket_id] and helpdesk.tickets[ticket_id]["status"] == 4


async def test_a_service_ticket_resolved_before_is_brought_back_only_if_it_outlives_its_host(
    start: Start, sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """HTTP failed alone once (its own ticket, resolved). In the next outage its CRITICAL comes
    just before the host's DOWN: its ticket is not reopened (the host's problem absorbs it).
    When the host is back and HTTP still fails after the release grace, its ticket is reopened
    (not a new one)."""
    helpdesk, _ = sandbox
    client = await start(service_grace="30s")
    await send(client, macros("web-01", "HTTP", "CRITICAL", clock.now()))
    clock.advance(MINUTE)
    await deliver(client)
    ((http_ticket, _),) = helpdesk.tickets.items()
    await send(client, macros("web-01", "HTTP", "OK", clock.now()))
    clock.advance(5 * MINUTE)
    await deliver(client)
    assert helpdesk.tickets[http_ticket]["status"] == 4
    clock.advance(HOUR)
    await send(client, macros("web-01", "HTTP", "CRITICAL", clock.now()))
    clock.advance(timedelta(milliseconds=80))
    await send(client, host("DOWN", clock, "HARD", 2))
    clock.advance(MINUTE)
    await deliver(client)
    assert helpdesk.tickets[http_ticket]["status"] == 4  # not reopened
    notes = len(helpdesk.notes.get(http_ticket, []))
    clock.advance(10 * MINUTE)
    await send(client, host("UP", clock, "HARD", 1))
    await deliver(client)
    assert helpdesk.tickets[http_ticket]["status"] == 4  # the release grace runs
    clock.advance(2 * MINUTE)
    await deliver(client)
    assert helpdesk.tickets[http_ticket]["status"] == 2
    assert len(helpdesk.tickets) == 2  # HTTP's, reopened, and the host's
    assert "came back" in helpdesk.notes[http_ticket][notes]["body"]
