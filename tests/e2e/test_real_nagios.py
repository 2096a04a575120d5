"""A real Nagios 4 with the README's notification and OCSP/OCHP commands, a real `alertd run`
and the sandbox helpdesk: the incident story as the field tells it (issue: real peers).

Check states come from files and forced checks; Nagios does the rest as it does in production:
SOFT attempts, retries every second, services forced HARD while their host is down, host and
service results as separate worker jobs (in either order), notifications only on change.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from alertd.sandbox import Sandbox
from tests.support.daemon import Daemon, describe, live_daemon, live_helpdesk, tickets
from tests.support.nagios import (
    NAGIOS,
    PACKAGE,
    Host,
    Nagios,
    NagiosOptions,
    alertd_command,
    readme_commands,
)
from tests.support.peers import eventually, require_binary

pytestmark = [pytest.mark.peers, pytest.mark.timeout(240)]

SERVICES = ["Load", "Disk", "HTTP"]
OPEN, RESOLVED = 2, 4  # Freshdesk ticket statuses (alertd's default resolve_status is 4)
MakeNagios = Callable[[list[Host], NagiosOptions], Awaitable[Nagios]]


@pytest.fixture
def nagios_binary() -> Path:
    return require_binary(NAGIOS, PACKAGE)


# Shared with the Alertmanager tests: the sandbox helpdesk and a real `alertd run` beside it.
helpdesk = live_helpdesk
daemon = live_daemon


@pytest.fixture
async def make_nagios(
    nagios_binary: Path, tmp_path: Path, daemon: Daemon
) -> AsyncIterator[MakeNagios]:
    """A factory for the test's Nagios, talking to `daemon` through the README's commands; it is
    stopped at the end of the test. Starting and stopping run in a thread: the sandbox helpdesk
    shares the test's event loop and must go on answering meanwhile."""
    started: list[Nagios] = []

    async def make(hosts: list[Host], options: NagiosOptions) -> Nagios:
        commands = readme_commands(
            alertd_command(), daemon.url, daemon.token_file, tmp_path / "spool"
        )
        nagios = Nagios(nagios_binary, tmp_path / "nagios", hosts, commands, options)
        started.append(nagios)
        await asyncio.to_thread(nagios.start)
        await asyncio.to_thread(nagios.settle)
        return nagios

    yield make
    for nagios in started:
        await asyncio.to_thread(nagios.stop)


class Scene:
    """The test's view of Nagios, alertd and the helpdesk together, and the waits it needs."""

    def __init__(self, nagios: Nagios, daemon: Daemon, sandbox: Sandbox) -> None:
        self.nagios = nagios
        self.daemon = daemon
        self.sandbox = sandbox

    async def explain(self) -> str:
        try:
            seen = describe(await self.daemon.incidents(), self.sandbox)
        except OSError as exc:
            seen = f"(alertd did not answer: {exc})"
        return f"{seen}\nnotify lines in nagios.log:\n" + "\n".join(
            self.nagios.notify_lines()[-10:]
        )

    async def until(
        self, what: str, probe: Callable[[dict[str, dict[str, Any]]], bool], within: float = 30
    ) -> dict[str, dict[str, Any]]:
        """Wait until `probe(incidents)` holds with the outbox empty (every ticket operation the
        incidents imply has reached the helpdesk), and return the incidents."""

        async def look() -> dict[str, dict[str, Any]] | None:
            found = await self.daemon.incidents()
            if not probe(found):
                return None
            outbox = await self.daemon.get("/api/v1/outbox?limit=1")
            return found if outbox["counts"]["pending"] == 0 else None

        return await eventually(look, what, within, explain=self.explain)

    async def nagios_hard(self, host: str, states: dict[str | None, str]) -> None:
        """Wait until Nagios holds each of host's checks (None: the host) HARD in its state."""

        async def look() -> bool:
            return all(self.nagios.hard(host, svc, state) for svc, state in states.items())

        await eventually(look, f"nagios: {host} HARD in {states}", 60, explain=self.explain)

    async def outage(self, host: str, services: list[str]) -> None:
        """The host goes down and its services fail. The services' checks are forced first: in
        the field a service check usually notices first, and Nagios then checks the host."""
        self.nagios.set_state(host, None, "DOWN", "PING CRITICAL - Packet loss = 100%")
        for service in services:
            self.nagios.set_state(host, service, "CRITICAL", f"{service} CRITICAL - no answer")
        for service in services:
            self.nagios.force_check(host, service)
        self.nagios.force_check(host)
        await self.nagios_hard(host, {None: "DOWN", **{s: "CRITICAL" for s in services}})

    @contextlib.asynccontextmanager
    async def checks_go_on(self, host: str, services: list[str]) -> AsyncIterator[None]:
        """Scheduled checks, as in the field: every second each check runs again (and OCSP and
        OCHP report it), so a check that flapped (Nagios's own algorithm, on the stream alertd
        receives) settles as Nagios's would, instead of waiting an hour for its next check."""

        async def run() -> None:
            while True:
                self.nagios.force_check(host)
                for service in services:
                    self.nagios.force_check(host, service)
                await asyncio.sleep(1)

        task = asyncio.create_task(run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def recovery(self, host: str, services: list[str]) -> None:
        self.nagios.set_state(host, None, "UP", "PING OK - Packet loss = 0%")
        for service in services:
            self.nagios.set_state(host, service, "OK", f"{service} OK")
        self.nagios.force_check(host)
        for service in services:
            self.nagios.force_check(host, service)
        await self.nagios_hard(host, {None: "UP", **{s: "OK" for s in services}})


def waiting(spool: Path) -> list[str]:
    """The notifications waiting in the spool: one file each (README), hidden ones aside."""
    return sorted(p.name for p in spool.iterdir() if p.is_file() and not p.name.startswith("."))


def keys(host: str, services: list[str]) -> list[str]:
    return [host, *(f"{host}/{s}" for s in services)]


async def test_host_outage_with_three_services_is_one_ticket_twice(
    make_nagios: MakeNagios, daemon: Daemon, helpdesk: tuple[Sandbox, str]
) -> None:
    """A host down with its three services (OCSP/OCHP and notifications on) is one ticket, the
    host's, with the services absorbed; all recover and resolve; a second outage within the
    reopen window reopens that same ticket and nothing else."""
    sandbox = helpdesk[0]
    nagios = await make_nagios([Host("web-01", SERVICES)], NagiosOptions(obsess=True))
    scene = Scene(nagios, daemon, sandbox)
    every = keys("web-01", SERVICES)

    for outage in (1, 2):
        await scene.outage("web-01", SERVICES)
        found = await scene.until(
            f"outage {outage}: the host's incident open, its services suppressed",
            lambda i: (
                all(k in i for k in every)
                and i["web-01"]["status"] == "open"
                and i["web-01"]["check_state"] == "DOWN"
                and all(i[k]["suppressed"] for k in every[1:])
                and len(tickets(sandbox)) >= 1
            ),
        )
        assert [t["status"] for t in tickets(sandbox)] == [OPEN], await scene.explain()
        assert "web-01" in tickets(sandbox)[0]["subject"]
        assert found["web-01"]["reopen_count"] == outage - 1

        await scene.recovery("web-01", SERVICES)
        # Two outages close together flap by Nagios's measure (as in Nagios itself); the checks
        # that go on reporting OK settle it, and then everything resolves.
        async with scene.checks_go_on("web-01", SERVICES):
            found = await scene.until(
                f"outage {outage}: everything resolved",
                lambda i: all(i[k]["status"] == "resolved" for k in every),
                within=120,
            )
        assert [t["status"] for t in tickets(sandbox)] == [RESOLVED], await scene.explain()

    assert len({found[k]["id"] for k in every}) == len(every)  # one incident per key, kept
    assert nagios.notify_lines() == []  # README: a quiet nagios.log means every run delivered


async def test_notification_only_recoveries_resolve_every_outage(
    make_nagios: MakeNagios, daemon: Daemon, helpdesk: tuple[Sandbox, str]
) -> None:
    """Notifications without OCSP report changes only: three ordinary outages of one service,
    each PROBLEM then RECOVERY, resolve each time, on one incident and one ticket, never
    flapping (issue section 1: a change-report source must not be counted like a stream)."""
    sandbox = helpdesk[0]
    nagios = await make_nagios([Host("web-02", ["HTTP"])], NagiosOptions(obsess=False))
    scene = Scene(nagios, daemon, sandbox)
    key = "web-02/HTTP"

    for outage in (1, 2, 3):
        nagios.set_state("web-02", "HTTP", "CRITICAL", "HTTP CRITICAL - 503 Service Unavailable")
        nagios.force_check("web-02", "HTTP")
        await scene.nagios_hard("web-02", {"HTTP": "CRITICAL"})
        found = await scene.until(
            f"outage {outage}: the PROBLEM notification opens the incident and its ticket",
            lambda i: key in i
            and i[key]["status"] == "open"
            and [t["status"] for t in tickets(sandbox)] == [OPEN],
        )
        assert found[key]["reopen_count"] == outage - 1
        assert [t["status"] for t in tickets(sandbox)] == [OPEN], await scene.explain()

        nagios.set_state("web-02", "HTTP", "OK", "HTTP OK - 200")
        nagios.force_check("web-02", "HTTP")
        await scene.nagios_hard("web-02", {"HTTP": "OK"})
        found = await scene.until(
            f"outage {outage}: the RECOVERY notification resolves it after the hold",
            lambda i: i[key]["status"] == "resolved",
        )
        assert not found[key]["flapping"], await scene.explain()
        assert [t["status"] for t in tickets(sandbox)] == [RESOLVED], await scene.explain()

    assert "SERVICE NOTIFICATION: alertd;web-02;HTTP;OK" in nagios.log()  # no OCSP: these
    assert nagios.notify_lines() == []


async def test_spooled_while_the_daemon_is_down_and_drained_after(
    make_nagios: MakeNagios, daemon: Daemon, helpdesk: tuple[Sandbox, str], tmp_path: Path
) -> None:
    """With alertd stopped, every notify run spools (exit 1, logged by Nagios); alertd comes back
    and the next run drains the spool oldest first: the outage opens its incident and ticket,
    and the recovery that follows resolves them. Nothing is lost."""
    sandbox = helpdesk[0]
    spool = tmp_path / "spool"
    nagios = await make_nagios([Host("web-03", ["Disk"])], NagiosOptions(obsess=True))
    scene = Scene(nagios, daemon, sandbox)
    key = "web-03/Disk"

    await daemon.stop()
    nagios.set_state("web-03", "Disk", "CRITICAL", "DISK CRITICAL - free space: / 12 MB (1%)")
    nagios.force_check("web-03", "Disk")
    await scene.nagios_hard("web-03", {"Disk": "CRITICAL"})

    async def problem_spooled() -> bool:
        # Nagios's own words for a notification command's exit code; 1 = spooled (README).
        return re.search(r"NOTIFY job \d+ .* exited with return code 1", nagios.log()) is not None

    await eventually(problem_spooled, "the PROBLEM notification spooled", 30, explain=scene.explain)
    # The OCSP results of attempts 1, 2 and 3 and the PROBLEM notification, at least.
    assert len(waiting(spool)) >= 4, waiting(spool)
    assert sandbox.tickets == {}

    await daemon.start()
    nagios.force_check("web-03", "Disk")  # the next check result runs notify, which drains
    found = await scene.until(
        "the drained outage opens its incident and ticket",
        lambda i: key in i and i[key]["status"] == "open" and len(tickets(sandbox)) == 1,
    )
    assert waiting(spool) == []
    assert found[key]["check_state"] == "CRITICAL"
    trail = [e["kind"] for e in (await daemon.incident(found[key]["id"]))["events"]]
    assert "opened" in trail

    nagios.set_state("web-03", "Disk", "OK", "DISK OK - free space: / 3120 MB (40%)")
    nagios.force_check("web-03", "Disk")
    await scene.until("the recovery resolves it", lambda i: i[key]["status"] == "resolved")
    assert [t["status"] for t in tickets(sandbox)] == [RESOLVED], await scene.explain()
