"""The pipelined group commit against a real `alertd run`: round N+1 is applied on top of round
N while N commits. A 202 still means on disk and applied once, across a SIGKILL; and a round
that fails to commit leaves the daemon's memory as the store has it (nothing of the failed
round, nor of the round applied on top of it), answering 5xx only for what was not stored."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.proc import IngestDaemon, log_file

TOKEN = "pipeline-test-token-0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


async def _send(session: aiohttp.ClientSession, url: str, results: list[dict[str, Any]]) -> int:
    try:
        async with session.post(f"{url}/api/v1/results", json=results, headers=HEADERS) as r:
            await r.read()
            return r.status
    except aiohttp.ClientError:
        return 0  # the daemon died under the request: not acknowledged


async def _incidents(session: aiohttp.ClientSession, url: str) -> dict[str, dict[str, Any]]:
    async with session.get(f"{url}/api/v1/incidents?limit=1000", headers=HEADERS) as r:
        assert r.status == 200
        found = (await r.json())["incidents"]
    return {i["key"]: i for i in found}


async def _read_after_start(daemon: IngestDaemon) -> dict[str, dict[str, Any]]:
    """Start the daemon on its store, read its incidents by key, stop it."""
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as session:
            return await _incidents(session, daemon.url)
    finally:
        await daemon.stop()


def _result(host: str, service: str) -> dict[str, Any]:
    return {"host": host, "service": service, "state": "CRITICAL", "output": "down"}


async def test_sigkill_during_pipelined_commits_loses_no_ack_and_applies_none_twice(
    tmp_path: Path,
) -> None:
    """16 clients send requests of 25 results (120 keys, each result one occurrence) as fast
    as they are answered; the daemon is SIGKILLed mid-flow. After a restart, every key has at
    least as many occurrences as results acknowledged for it, and no more than were sent."""
    daemon = IngestDaemon(tmp_path, TOKEN)
    await daemon.start()
    sent: Counter[str] = Counter()
    acked: Counter[str] = Counter()
    keys = [(f"h{k % 12}", f"s{k}") for k in range(120)]
    stopping, enough = asyncio.Event(), asyncio.Event()

    async def client(n: int, session: aiohttp.ClientSession) -> None:
        turn = n
        while not stopping.is_set():
            batch = [keys[(turn * 25 + i) % len(keys)] for i in range(25)]
            turn += 16
            names = [f"{h}/{s}" for h, s in batch]
            sent.update(names)
            status = await _send(session, daemon.url, [_result(h, s) for h, s in batch])
            if status == 202:
                acked.update(names)
                if acked.total() >= 6_000:  # well into repeats: the narrow path as well
                    enough.set()
            elif status == 0:
                return

    async with aiohttp.ClientSession() as session:
        clients = [asyncio.ensure_future(client(n, session)) for n in range(16)]
        await asyncio.wait_for(enough.wait(), 120)
        daemon.kill()
        stopping.set()
        await asyncio.gather(*clients)
    stored = await _read_after_start(daemon)
    assert sum(acked.values()) >= 6_000
    for host, service in keys:
        name = f"{host}/{service}"
        occurrences = stored[name]["occurrences"] if name in stored else 0
        assert acked[name] <= occurrences <= sent[name], (name, acked[name], sent[name])


def _poison(db: Path) -> None:
    """Every write of host `poison`'s incident fails inside the writer's transaction (the disk
    refusing one row, as far as alertd can tell): the whole round's commit fails."""
    with sqlite3.connect(db) as conn:
        for op in ("INSERT", "UPDATE"):
            conn.execute(
                f"CREATE TRIGGER poison_{op.lower()} BEFORE {op} ON incidents "
                "WHEN NEW.host = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
            )


@pytest.mark.parametrize("inbox", [True, False], ids=["inbox", "ack-after-apply"])
async def test_a_failed_pipelined_commit_leaves_memory_as_stored(
    tmp_path: Path, inbox: bool
) -> None:
    """Rounds carrying a result the store refuses fail to commit while others are applied on
    top of them. Afterwards the daemon's memory is the store's: one more result per key counts
    exactly the acknowledged ones (no occurrence of a rolled-back round survives in memory),
    the refused key has no incident, and the API's view equals a fresh restart's view.

    Acknowledged from the inbox (the default), the refused results were acknowledged before
    the store refused to apply them: skipped, their rows gone, everything else applied once.
    Acknowledged after applying (`inbox_backlog = 0`), the refused requests get a 5xx."""
    daemon = IngestDaemon(tmp_path, TOKEN, "" if inbox else "inbox_backlog = 0\n")
    await daemon.start()
    await daemon.stop()  # the schema exists now
    _poison(daemon.db)
    await daemon.start()
    keys = [(f"h{k % 8}", f"s{k}") for k in range(80)]
    acked: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    poisoned: list[int] = []

    async def client(n: int, session: aiohttp.ClientSession) -> None:
        for turn in range(12):
            if (n + turn) % 5 == 0:
                poisoned.append(await _send(session, daemon.url, [_result("poison", "x")]))
                continue
            batch = [keys[(n * 7 + turn * 10 + i) % len(keys)] for i in range(10)]
            status = await _send(session, daemon.url, [_result(h, s) for h, s in batch])
            statuses[status] += 1
            if status == 202:
                acked.update(f"{h}/{s}" for h, s in batch)

    try:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(client(n, session) for n in range(12)))
            if inbox:
                assert poisoned and set(poisoned) == {202}, poisoned
            else:
                assert poisoned and all(s >= 500 for s in poisoned), poisoned
            assert set(statuses) == {202}, statuses
            # One more result per key, alone: memory decides what it counts.
            for host, service in keys:
                assert await _send(session, daemon.url, [_result(host, service)]) == 202
            live = await _incidents(session, daemon.url)
            assert "poison/x" not in live
            for host, service in keys:
                name = f"{host}/{service}"
                assert live[name]["occurrences"] == acked[name] + 1, (name, live[name])
        await daemon.stop()
        restarted = await _read_after_start(daemon)
    finally:
        await daemon.stop()

    def view(incidents: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
        return {
            k: (i["id"], i["status"], i["occurrences"], i["last_seen"], i["check_state"])
            for k, i in incidents.items()
        }

    assert view(live) == view(restarted)
    if inbox:  # the refused rows were skipped, not left to be tried at every start
        assert daemon.waiting_in_inbox() == 0


def _fail_store_on(db: Path, host: str) -> None:
    """Every write of `host`'s incident fails as a failing disk would (an error that may pass,
    not a refusal of the row): the writer keeps its inbox row and tries it again."""
    with sqlite3.connect(db) as conn:
        for op in ("INSERT", "UPDATE"):
            conn.execute(
                f"CREATE TRIGGER failing_{op.lower()} BEFORE {op} ON incidents BEGIN "
                f"SELECT json(CASE WHEN NEW.host = '{host}' THEN 'not json' ELSE '1' END); END"
            )


async def test_rows_after_one_a_stop_leaves_behind_wait_for_it(tmp_path: Path) -> None:
    """A result the store cannot write (it fails, and may work later) is acknowledged with
    others in one writer round, and the daemon is stopped while it is being retried. The stop
    leaves its inbox row to the next start and commits none of the rows after it: that commit
    would move the store's inbox mark past it, and the next start would take it as applied.
    Once the store works again, a restart applies every acknowledged result exactly once."""
    daemon = IngestDaemon(tmp_path, TOKEN)
    await daemon.start()
    await daemon.stop()  # the schema exists now
    _fail_store_on(daemon.db, "stuck")
    await daemon.start()
    log = log_file(daemon.config)
    others = [(f"h{n}", "s") for n in range(20)]
    try:
        async with aiohttp.ClientSession() as session:
            # Sent together: one or two inbox appends, one writer round, `stuck` among them.
            statuses = await asyncio.gather(
                _send(session, daemon.url, [_result("stuck", "x")]),
                *(_send(session, daemon.url, [_result(h, s)]) for h, s in others),
            )
            assert set(statuses) == {202}, statuses
        for _ in range(200):  # the round failed and the stuck row is being retried
            if "commit_failed_inbox_kept" in log.read_text():
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(log.read_text()[-2000:])
    finally:
        await daemon.stop()
    with sqlite3.connect(daemon.db) as conn:
        stored = {h for (h,) in conn.execute("SELECT host FROM incidents")}
        assert "stuck" not in stored
        conn.execute("DROP TRIGGER failing_insert")
        conn.execute("DROP TRIGGER failing_update")
    assert daemon.waiting_in_inbox() >= 1  # the stuck row at least, left for the next start
    incidents = await _read_after_start(daemon)
    expected = {"stuck/x", *(f"{h}/{s}" for h, s in others)}
    assert set(incidents) == expected
    assert {name: i["occurrences"] for name, i in incidents.items()} == dict.fromkeys(expected, 1)
    assert daemon.waiting_in_inbox() == 0
