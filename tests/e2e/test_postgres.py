"""`alertd run` on PostgreSQL, as a real process beside the sandbox helpdesk and the session's
private cluster (tests/support/postgres.py): the whole life of an incident, a SIGKILL and a
restart in the middle of it, and a second daemon kept from writing while the first holds the
store. The password reaches alertd the way the README says: a variable, never the URL."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from alertd.sandbox import Sandbox
from tests.support import CRIT, calls
from tests.support.daemon import Daemon, live_helpdesk
from tests.support.peers import eventually
from tests.support.postgres import PgCluster
from tests.support.proc import start

helpdesk = live_helpdesk

LEASE = "3s"


def pg_daemon(base: Path, helpdesk_url: str, cluster: PgCluster, url: str, node: str) -> Daemon:
    return Daemon(
        base, helpdesk_url,
        store=f'url = "{url}"\npassword_env = "PG_SECRET"\nlease = "{LEASE}"',
        env={"PG_SECRET": cluster.password},
        release_grace="0s", node=node,
    )  # fmt: skip


async def test_an_incident_lives_its_whole_life_on_postgresql(
    tmp_path: Path, helpdesk: tuple[Sandbox, str], pg_cluster: PgCluster
) -> None:
    """Problem -> incident -> ticket; a SIGKILL, a restart (it waits out the dead daemon's
    lease), more problems counted on the same incident; recovery -> resolved, the ticket
    resolved too. One ticket throughout; /readyz names the database; metrics carry the node."""
    sandbox, url = helpdesk
    daemon = pg_daemon(tmp_path / "a", url, pg_cluster, pg_cluster.database(), "alpha")
    await daemon.start()
    try:
        assert await daemon.post("/api/v1/results", CRIT) == 202
        ready = await daemon.get("/readyz")
        assert ready["store"]["kind"] == "postgresql" and ready["store"]["lease"] == "held"
        assert pg_cluster.password not in str(ready)
        metrics = await daemon.text("/metrics")
        assert re.search(r'alertd_results_received_total\{.*node="alpha".*\} 1\.0', metrics)

        async def ticketed() -> bool:
            return len(sandbox.tickets) == 1

        await eventually(ticketed, "the ticket")
        daemon.kill()
        await daemon.start()  # waits for the killed daemon's lease to run out
        for _ in range(2):
            assert await daemon.post("/api/v1/results", CRIT) == 202
        (incident,) = (await daemon.incidents()).values()
        assert incident["status"] == "open" and incident["occurrences"] == 3
        assert await daemon.post("/api/v1/results", {**CRIT, "state": "OK"}) == 202

        async def resolved() -> bool:
            found = await daemon.incident(incident["id"])
            ops = found["ticket_operations"]
            return found["status"] == "resolved" and all(op["state"] == "done" for op in ops)

        await eventually(resolved, "the incident and its ticket resolved")
    finally:
        await daemon.stop()
    assert calls(sandbox).count("POST /tickets") == 1
    (ticket,) = sandbox.tickets.values()
    assert ticket["status"] in (4, 5)  # resolved or closed
    assert pg_cluster.password not in daemon.log()


async def test_a_second_daemon_on_a_store_in_use_writes_nothing_and_exits(
    tmp_path: Path, helpdesk: tuple[Sandbox, str], pg_cluster: PgCluster
) -> None:
    """While one daemon holds the store's lease, another is refused at start (after waiting one
    lease length for it), says who holds it, and exits 1; the first goes on."""
    sandbox, url = helpdesk
    db = pg_cluster.database()
    first = pg_daemon(tmp_path / "a", url, pg_cluster, db, "alpha")
    second = pg_daemon(tmp_path / "b", url, pg_cluster, db, "beta")
    await first.start()
    try:
        proc = start(second.config, second.env)
        code = await asyncio.to_thread(proc.wait, 30)
        assert code == 1
        assert "in use by another alertd (node alpha)" in second.log()
        assert await first.post("/api/v1/results", CRIT) == 202

        async def ticketed() -> bool:
            return len(sandbox.tickets) == 1

        await eventually(ticketed, "the first daemon's ticket")
    finally:
        await first.stop()
