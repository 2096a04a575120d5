"""The inbox against a real `alertd run` (alertd.inbox): ingest is answered once the results are
in the inbox's own file, fsync'd, and applied after. While the store itself cannot be written
(here: another process holds its write lock), ingest goes on being answered; a SIGKILL then
loses nothing and a restart applies every acknowledged result exactly once; the backlog is
bounded; reads wait for what was acknowledged before them."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from alertd import engine as engine_module
from tests.support import MakeClient
from tests.support.proc import IngestDaemon

TOKEN = "inbox-test-token-0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
KEYS = [(f"h{k % 4}", f"s{k}") for k in range(10)]


@contextmanager
def store_locked(db: Path) -> Iterator[None]:
    """Another process holds the store's write lock: the writer cannot commit meanwhile."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def _batch(turn: int) -> list[dict[str, Any]]:
    return [
        {"host": h, "service": s, "state": "CRITICAL", "output": f"down {turn}"}
        for h, s in (KEYS[(turn + i) % len(KEYS)] for i in range(5))
    ]


async def _post(session: aiohttp.ClientSession, url: str, results: list[dict[str, Any]]) -> int:
    async with session.post(f"{url}/api/v1/results", json=results, headers=HEADERS) as r:
        await r.read()
        return r.status


async def _occurrences(session: aiohttp.ClientSession, url: str) -> dict[str, int]:
    async with session.get(f"{url}/api/v1/incidents", headers=HEADERS) as r:
        assert r.status == 200
        return {i["key"]: i["occurrences"] for i in (await r.json())["incidents"]}


async def test_acknowledged_while_the_store_is_locked_and_applied_once_after_sigkill(
    tmp_path: Path,
) -> None:
    """The store's write lock is held by another process: 40 requests are still answered 202
    (from the inbox). SIGKILL, lock released, restart (with the inbox turned off for new
    input, `inbox_backlog = 0`: what is there is applied all the same): every acknowledged
    result is applied, exactly once (the count per key equals what was acknowledged for it)."""
    daemon = IngestDaemon(tmp_path, TOKEN)
    await daemon.start()
    expected: dict[str, int] = {}
    try:
        async with aiohttp.ClientSession() as session:
            with store_locked(daemon.db):
                for turn in range(40):
                    batch = _batch(turn)
                    assert await _post(session, daemon.url, batch) == 202
                    for r in batch:
                        name = f"{r['host']}/{r['service']}"
                        expected[name] = expected.get(name, 0) + 1
                assert daemon.waiting_in_inbox() == 40  # none could be applied
                daemon.kill()
            text = daemon.config.read_text()
            daemon.config.write_text(text.replace("[store]\n", "[store]\ninbox_backlog = 0\n"))
            await daemon.start()
            assert await _occurrences(session, daemon.url) == expected
            assert daemon.waiting_in_inbox() == 0
    finally:
        await daemon.stop()


async def test_backlog_is_bounded_and_reads_wait_for_what_was_acknowledged(
    tmp_path: Path,
) -> None:
    """With `inbox_backlog = 10` and the store locked for longer than the writer waits for
    it (its commit fails and is tried again): two requests of 5 fill the backlog and are
    answered; the third waits, unanswered, readiness names the failing commit and the metrics
    show the backlog. Once the
    lock goes, the third is answered, a read right after sees all 15 results, and nothing is
    left in the inbox."""
    daemon = IngestDaemon(tmp_path, TOKEN, "inbox_backlog = 10\n")
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as session:
            with store_locked(daemon.db):
                assert await _post(session, daemon.url, _batch(0)) == 202
                assert await _post(session, daemon.url, _batch(1)) == 202
                third = asyncio.ensure_future(_post(session, daemon.url, _batch(2)))
                read = asyncio.ensure_future(_occurrences(session, daemon.url))
                # The writer waits 5 s for the lock (busy_timeout), fails, and tries again.
                for _ in range(300):
                    async with session.get(f"{daemon.url}/readyz") as r:
                        if r.status == 503 and "commit failed" in await r.text():
                            break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("readiness never named the failing commit")
                assert not third.done() and not read.done()
                async with session.get(f"{daemon.url}/metrics") as r:
                    assert "alertd_inbox_backlog_results 10.0" in await r.text()
            assert await third == 202
            assert sum((await read).values()) >= 10  # acknowledged before it was asked
            assert sum((await _occurrences(session, daemon.url)).values()) == 15
            assert daemon.waiting_in_inbox() == 0
    finally:
        await daemon.stop()


async def test_a_read_that_cannot_settle_gets_503_naming_the_wait(
    make_client: MakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read waits for what was acknowledged before it, but not for ever: while the store
    cannot be written it answers 503 saying how many results wait, then works again."""
    monkeypatch.setattr(engine_module, "_SETTLE_SECONDS", 0.3)
    client = await make_client(lag=True)
    result = {"host": "db", "service": "disk", "state": "CRITICAL"}
    with store_locked(tmp_path / "alertd.db"):
        assert (await client.post("/api/v1/results", json=result)).status == 202
        response = await client.get("/api/v1/incidents")
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        message = (await response.json())["error"]
        assert message.startswith("1 results acknowledged before this request are not applied")
    response = await client.get("/api/v1/incidents")
    assert response.status == 200
    assert [i["key"] for i in (await response.json())["incidents"]] == ["db/disk"]
