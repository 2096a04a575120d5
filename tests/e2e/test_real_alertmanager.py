"""A real Prometheus Alertmanager with the README's webhook receiver, a real `alertd run` and the
sandbox helpdesk: grouped alerts, firing and resolved, as Alertmanager really sends them
(issue: real peers).

Alerts go in through Alertmanager's own API as Prometheus posts them; Alertmanager groups them
by alertname and instance and sends each group a second after it changes. What alertd names
the incidents is not asserted (it is being changed); what is: how many, and how they live.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from alertd.sandbox import Sandbox
from tests.support.alertmanager import ALERTMANAGER, PACKAGE, Alertmanager, alert
from tests.support.daemon import TOKEN, Daemon, describe, live_helpdesk, tickets
from tests.support.peers import eventually, require_binary
from tests.support.postgres import PgCluster

pytestmark = [pytest.mark.peers, pytest.mark.timeout(180)]

OPEN, RESOLVED = 2, 4  # Freshdesk ticket statuses (alertd's default resolve_status is 4)
Incidents = dict[str, dict[str, Any]]

# Shared with the Nagios tests: the sandbox helpdesk and a real `alertd run` beside it.
helpdesk = live_helpdesk


@pytest.fixture(params=["sqlite", "postgresql"])
async def daemon(
    request: pytest.FixtureRequest, tmp_path: Path, helpdesk: tuple[Sandbox, str]
) -> AsyncIterator[Daemon]:
    """The real `alertd run` (as `live_daemon`), once on each store: every scenario here
    runs on SQLite and on PostgreSQL."""
    store, env = None, None
    if request.param == "postgresql":
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        store = f'url = "{cluster.database()}"\npassword_env = "PG_SECRET"'
        env = {"PG_SECRET": cluster.password}
    running = Daemon(tmp_path / "alertd", helpdesk[1], store=store, env=env)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
def alertmanager_binary() -> Path:
    return require_binary(ALERTMANAGER, PACKAGE)


@pytest.fixture
async def alertmanager(
    alertmanager_binary: Path, tmp_path: Path, daemon: Daemon
) -> AsyncIterator[Alertmanager]:
    """Alertmanager sending to `daemon` (the binary is looked for first: a skip starts nothing)."""
    peer = Alertmanager(alertmanager_binary, tmp_path / "alertmanager", daemon.url, TOKEN)
    await asyncio.to_thread(peer.start)
    try:
        yield peer
    finally:
        await asyncio.to_thread(peer.stop)


def disk_full(mountpoint: str, severity: str) -> dict[str, str]:
    return {
        "alertname": "DiskFull",
        "instance": "node-3:9100",
        "job": "node",
        "mountpoint": mountpoint,
        "severity": severity,
    }


def on(incidents: Incidents, alertname: str) -> list[dict[str, Any]]:
    """The incidents of one alert name, however alertd names their service."""
    return [i for i in incidents.values() if (i["service"] or "").startswith(alertname)]


async def until(
    daemon: Daemon,
    sandbox: Sandbox,
    alertmanager: Alertmanager,
    what: str,
    probe: Callable[[Incidents], bool],
) -> Incidents:
    """Wait until `probe(incidents)` holds with alertd's outbox empty."""

    async def look() -> Incidents | None:
        found = await daemon.incidents()
        if not probe(found):
            return None
        outbox = await daemon.get("/api/v1/outbox?limit=1")
        return found if outbox["counts"]["pending"] == 0 else None

    async def explain() -> str:
        sent = alertmanager.notifications()
        return f"{describe(await daemon.incidents(), sandbox)}\nalertmanager sent {sent} webhooks"

    return await eventually(look, what, 30, explain=explain)


async def test_grouped_alerts_with_distinct_labels_are_distinct_incidents(
    alertmanager: Alertmanager, daemon: Daemon, helpdesk: tuple[Sandbox, str]
) -> None:
    """DiskFull for /var (critical) and /home (warning) on one instance arrive in one group:
    two incidents, two tickets. /var resolves while /home still fires: only /var's incident and
    ticket resolve, after the hold; then /home resolves too."""
    sandbox = helpdesk[0]
    started = datetime.now(UTC)
    var, home = disk_full("/var", "critical"), disk_full("/home", "warning")
    alertmanager.post(alert(var, "/var is 97% full", started), alert(home, "/home 91%", started))

    found = await until(
        daemon, sandbox, alertmanager, "two DiskFull incidents, open, with a ticket each",
        lambda i: len(on(i, "DiskFull")) == 2
        and all(x["status"] == "open" for x in on(i, "DiskFull"))
        and len(tickets(sandbox)) == 2,
    )  # fmt: skip
    states = sorted(x["check_state"] for x in on(found, "DiskFull"))
    assert states == ["CRITICAL", "WARNING"], describe(found, sandbox)

    alertmanager.post(alert(var, "/var is 97% full", started, resolved=True))
    found = await until(
        daemon, sandbox, alertmanager, "/var resolved after the hold, /home still open",
        lambda i: sorted(x["status"] for x in on(i, "DiskFull")) == ["open", "resolved"],
    )  # fmt: skip
    by_state = {x["status"]: x for x in on(found, "DiskFull")}
    assert by_state["open"]["check_state"] == "WARNING", describe(found, sandbox)
    assert sorted(t["status"] for t in tickets(sandbox)) == [OPEN, RESOLVED]

    alertmanager.post(alert(home, "/home 91%", started, resolved=True))
    found = await until(
        daemon, sandbox, alertmanager, "both resolved",
        lambda i: [x["status"] for x in on(i, "DiskFull")] == ["resolved", "resolved"],
    )  # fmt: skip
    assert [t["status"] for t in tickets(sandbox)] == [RESOLVED, RESOLVED]
    assert not any(x["flapping"] for x in on(found, "DiskFull"))


async def test_firing_then_resolved_resolves_after_the_hold_every_time(
    alertmanager: Alertmanager, daemon: Daemon, helpdesk: tuple[Sandbox, str]
) -> None:
    """An alert that fires and resolves three times (within the reopen window) opens one
    incident and one ticket, which resolve after the hold each time and are reopened by the next
    firing; Alertmanager reports changes only, so this is never flapping (issue section 1)."""
    sandbox = helpdesk[0]
    labels = {"alertname": "InstanceDown", "instance": "web-02:9100", "severity": "critical"}

    for outage in (1, 2, 3):
        started = datetime.now(UTC)
        alertmanager.post(alert(labels, "web-02 is down", started))
        found = await until(
            daemon, sandbox, alertmanager, f"firing {outage}: the incident open, its ticket open",
            lambda i: len(on(i, "InstanceDown")) == 1
            and on(i, "InstanceDown")[0]["status"] == "open"
            and [t["status"] for t in tickets(sandbox)] == [OPEN],
        )  # fmt: skip
        assert on(found, "InstanceDown")[0]["reopen_count"] == outage - 1

        alertmanager.post(alert(labels, "web-02 is down", started, resolved=True))
        found = await until(
            daemon, sandbox, alertmanager, f"resolved {outage}: the incident resolved",
            lambda i: on(i, "InstanceDown")[0]["status"] == "resolved",
        )  # fmt: skip
        assert [t["status"] for t in tickets(sandbox)] == [RESOLVED]
        assert not on(found, "InstanceDown")[0]["flapping"]
