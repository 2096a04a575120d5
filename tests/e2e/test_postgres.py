"""`alertd run` on PostgreSQL, as real processes beside the sandbox helpdesk and the session's
private cluster (tests/support/postgres.py): the whole life of an incident with a SIGKILL and a
restart in the middle of it; two daemons at once, the same keys posted to both; the leader
killed while results stream in. The password reaches alertd the way the README says: a
variable, never the URL."""

from __future__ import annotations

import asyncio
import re
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from alertd.sandbox import Sandbox
from tests.support import CRIT, calls
from tests.support.daemon import Daemon, live_helpdesk
from tests.support.peers import eventually
from tests.support.postgres import PgCluster

helpdesk = live_helpdesk

LEASE = "5s"  # renewed every 1.7 s: ample on a loaded CI machine


def pg_daemon(
    base: Path, helpdesk_url: str, cluster: PgCluster, url: str, node: str, helpdesk: str = ""
) -> Daemon:
    return Daemon(
        base, helpdesk_url,
        store=f'url = "{url}"\npassword_env = "PG_SECRET"\nlease = "{LEASE}"',
        env={"PG_SECRET": cluster.password},
        release_grace="0s", node=node, helpdesk=helpdesk,
    )  # fmt: skip


@pytest.mark.timeout(180)
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
        # Back at once, as a standby while the killed daemon's lease runs out: it accepts into
        # the journal, and applies the journal once it leads.
        await daemon.start()
        for _ in range(2):
            assert await daemon.post("/api/v1/results", CRIT) == 202

        async def counted() -> dict[str, object] | None:
            found = list((await daemon.incidents()).values())
            return found[0] if len(found) == 1 and found[0]["occurrences"] == 3 else None

        incident = await eventually(counted, "three occurrences on the one incident")
        assert incident["status"] == "open"
        assert (await daemon.get("/readyz"))["store"]["lease"] == "held"
        assert await daemon.post("/api/v1/results", {**CRIT, "state": "OK"}) == 202

        async def resolved() -> bool:
            found = await daemon.incident(incident["id"])
            ops = found["ticket_operations"]
            return found["status"] == "resolved" and all(op["state"] == "done" for op in ops)

        async def seen() -> str:
            return str(await daemon.incident(incident["id"]))

        # A deadline, not a wait: on a loaded machine a delivery retried once takes its backoff.
        await eventually(resolved, "the incident and its ticket resolved", 90, explain=seen)
    finally:
        await daemon.stop()
    assert calls(sandbox).count("POST /tickets") == 1
    (ticket,) = sandbox.tickets.values()
    assert ticket["status"] in (4, 5)  # resolved or closed
    assert pg_cluster.password not in daemon.log()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("count", [2, 3])
async def test_daemons_accept_the_same_keys_into_one_incident_each(
    tmp_path: Path, helpdesk: tuple[Sandbox, str], pg_cluster: PgCluster, count: int
) -> None:
    """Two and three daemons on one database, the same keys posted to all at once: each key is
    one incident whose occurrences are every result any daemon accepted, with one ticket. A
    host outage reported through one daemon and its services through another: one ticket."""
    sandbox, url = helpdesk
    db = pg_cluster.database()
    daemons = [
        pg_daemon(tmp_path / f"d{n}", url, pg_cluster, db, f"node{n}") for n in range(count)
    ]
    for daemon in daemons:
        await daemon.start()
    leader, standbys = daemons[0], daemons[1:]
    keys = [f"web-{n}" for n in range(5)]
    rounds = 6
    try:
        for standby in standbys:
            assert (await standby.get("/readyz"))["store"]["lease"] == "standby"

        async def post_all(daemon: Daemon) -> int:
            accepted = 0
            for _ in range(rounds):
                batch = [{**CRIT, "host": host} for host in keys]
                if await daemon.post("/api/v1/results", batch) == 202:
                    accepted += 1
            return accepted

        accepted = await asyncio.gather(*(post_all(d) for d in daemons))
        assert accepted == [rounds] * count
        # The outage of host db-9: the host DOWN through one daemon, its services through
        # another; the host's incident absorbs its services' (one ticket, not three).
        for service in ("disk", "load"):
            result = {"host": "db-9", "service": service, "state": "CRITICAL"}
            assert await standbys[-1].post("/api/v1/results", result) == 202
        assert await leader.post("/api/v1/results", {"host": "db-9", "state": "DOWN"}) == 202

        async def settled() -> dict[str, dict[str, object]] | None:
            found = await standbys[-1].incidents()  # a standby reads the shared store too
            web = [i for k, i in found.items() if k.startswith("web-")]
            done = len(web) == len(keys) and all(
                i["occurrences"] == rounds * count for i in web
            )
            return found if done and len(sandbox.tickets) == len(keys) + 1 else None

        async def seen() -> str:
            found = await standbys[-1].incidents()
            counts = {k: i["occurrences"] for k, i in found.items()}
            return f"occurrences {counts}, {len(sandbox.tickets)} tickets"

        found = await eventually(
            settled, "every accepted result on one incident per key", explain=seen
        )
        assert sorted(k for k in found if k.startswith("web-")) == [f"{k}/HTTP" for k in keys]
        # An ack by id needs the leader's live state: a standby says so, the leader does it.
        some = found["web-0/HTTP"]["id"]
        ack = {"comment": "looking", "author": "ann"}
        assert await standbys[0].post(f"/api/v1/incidents/{some}/ack", ack) == 503
        assert await leader.post(f"/api/v1/incidents/{some}/ack", ack) == 200
        assert (await standbys[0].incident(some))["acknowledged"] is True
    finally:
        for daemon in reversed(daemons):
            await daemon.stop()
    assert calls(sandbox).count("POST /tickets") == len(keys) + 1


@pytest.mark.timeout(180)
async def test_the_standby_takes_over_when_the_leader_is_killed(
    tmp_path: Path, helpdesk: tuple[Sandbox, str], pg_cluster: PgCluster
) -> None:
    """SIGKILL of the leader while results stream to both daemons and a recovery hold runs:
    the standby leads once the lease runs out; every result either daemon answered 202 is
    counted, none twice; the hold that fell due meanwhile fires once; one ticket each."""
    sandbox, url = helpdesk
    db = pg_cluster.database()
    first = pg_daemon(tmp_path / "a", url, pg_cluster, db, "alpha")
    second = pg_daemon(tmp_path / "b", url, pg_cluster, db, "beta")
    await first.start()
    await second.start()
    accepted = {"web-1": 0, "web-2": 0}
    held = {**CRIT, "host": "db-1"}
    try:
        # A recovery hold (3 s, tests/support/daemon.py) that falls due after the kill.
        assert await first.post("/api/v1/results", held) == 202

        async def db1_ticketed() -> bool:
            return len(sandbox.tickets) == 1

        await eventually(db1_ticketed, "db-1's ticket")
        assert await first.post("/api/v1/results", {**held, "state": "OK"}) == 202
        for round_ in range(12):
            for host, daemon in (("web-1", first), ("web-2", second)):
                if round_ == 6 and daemon is first:
                    first.kill()  # mid-stream, its dispatcher possibly mid-delivery
                if daemon is first and round_ >= 6:
                    daemon = second
                if await daemon.post("/api/v1/results", {**CRIT, "host": host}) == 202:
                    accepted[host] += 1
        assert accepted == {"web-1": 12, "web-2": 12}

        async def settled() -> dict[str, dict[str, Any]] | None:
            found = {i["host"]: i for i in (await second.incidents()).values()}
            counts = {h: found[h]["occurrences"] for h in accepted if h in found}
            db1 = found.get("db-1")
            done = counts == accepted and db1 is not None and db1["status"] == "resolved"
            return found if done and len(sandbox.tickets) == 3 else None

        found = await eventually(
            settled, "the standby leading with every accepted result", within=60
        )
        assert (await second.get("/readyz"))["store"]["lease"] == "held"
        trail = await second.incident(found["db-1"]["id"])
        assert [e["kind"] for e in trail["events"]].count("resolved") == 1
    finally:
        await second.stop()
        first.kill()
    assert calls(sandbox).count("POST /tickets") == 3


@pytest.mark.timeout(300)  # three lease expiries and their deliveries, on a loaded machine
async def test_leaders_killed_again_and_again_mid_delivery_lose_and_repeat_nothing(
    tmp_path: Path, helpdesk: tuple[Sandbox, str], pg_cluster: PgCluster
) -> None:
    """Two daemons; three times, new outages are posted to both while the helpdesk is slow to
    act, and the leader is SIGKILLed with its creates in flight; it comes back as a standby.
    In the end: every 202 counted once, one ticket per incident (a create of unknown outcome
    is looked up, not repeated), and each incident's operations delivered in order."""
    sandbox, url = helpdesk
    db = pg_cluster.database()
    slow = 'timeout = "2s"\noutcome_wait = "3s"\n'
    daemons = [pg_daemon(tmp_path / f"d{n}", url, pg_cluster, db, f"node{n}", slow)
               for n in range(2)]  # fmt: skip
    for daemon in daemons:
        await daemon.start()
    accepted: dict[str, int] = {}
    leader = 0
    try:
        for cycle in range(3):
            sandbox.act_late(1.0, count=2)  # creates the helpdesk finishes after a second
            for n in range(4):
                host = f"c{cycle}-{n}"
                for daemon in daemons:
                    if await daemon.post("/api/v1/results", {**CRIT, "host": host}) == 202:
                        accepted[host] = accepted.get(host, 0) + 1

            async def sending() -> bool:
                return len(sandbox._late["create"]) < 2  # a slow create arrived, unanswered

            await eventually(sending, "a create in flight")
            daemons[leader].kill()
            standby = daemons[1 - leader]

            async def leads(daemon: Daemon = standby) -> bool:
                try:
                    return bool((await daemon.get("/readyz"))["store"]["lease"] == "held")
                except urllib.error.HTTPError as exc:
                    # 503 while it loads the state after taking the lease: not leading yet.
                    if exc.code == 503:
                        return False
                    raise

            await eventually(leads, "the standby to lead", within=60)
            await daemons[leader].start()  # back, as a standby
            leader = 1 - leader
        for host in accepted:
            ok = {**CRIT, "host": host, "state": "OK"}
            assert await daemons[leader].post("/api/v1/results", ok) == 202

        async def settled() -> dict[str, dict[str, Any]] | None:
            found = {i["host"]: i for i in (await daemons[leader].incidents()).values()}
            if {h: found[h]["occurrences"] for h in accepted if h in found} != accepted:
                return None
            details = [await daemons[leader].incident(i["id"]) for i in found.values()]
            done = all(
                d["status"] == "resolved" and d["ticket_operations"]
                and all(op["state"] == "done" for op in d["ticket_operations"])
                for d in details
            )
            return found if done else None

        await eventually(settled, "every outage counted, resolved and delivered", within=90)
    finally:
        for daemon in daemons:
            daemon.kill()
    assert len(accepted) == 12 and set(accepted.values()) == {2}
    assert calls(sandbox).count("POST /tickets") == len(sandbox.tickets) == 12
    for ticket_id in sandbox.tickets:
        # The recovery came last: its note or status change is the ticket's last operation.
        assert sandbox.tickets[ticket_id]["status"] in (4, 5)
