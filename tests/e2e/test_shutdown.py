"""SIGTERM in the middle of a stream of posts: every 202 answered is on disk, and exit is 0."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import aiohttp

from tests.support.proc import free_port, log_file, start, stop, wait_ready

POSTS = 1500
SIGNAL_AFTER = 200


async def test_sigterm_under_load_loses_nothing_accepted(tmp_path: Path) -> None:
    """Concurrent posts, SIGTERM after the first 200 answers: no 202 is missing from the store."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "alertd.toml"
    config.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\n[store]\npath = "a.db"\n'
                      "[auth]\ndisabled = true\n")
    proc = start(config)
    try:
        await asyncio.to_thread(wait_ready, base, proc)
        accepted: list[str] = []
        answered = asyncio.Event()

        async def post(http: aiohttp.ClientSession, n: int) -> None:
            host = f"host-{n:05d}"
            try:
                async with http.post("/api/v1/results", json={"host": host, "state": "DOWN"}) as r:
                    if r.status == 202:
                        accepted.append(host)
                        if len(accepted) == SIGNAL_AFTER:
                            answered.set()
            except aiohttp.ClientError:
                pass  # refused or cut off by the shutdown: not accepted, nothing promised

        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(base, connector=connector) as http:
            posts = [asyncio.create_task(post(http, n)) for n in range(POSTS)]
            await answered.wait()
            proc.send_signal(signal.SIGTERM)
            await asyncio.gather(*posts)
    finally:
        returncode = await asyncio.to_thread(stop, proc)
    stderr = log_file(config).read_text()
    assert returncode == 0, stderr[-2000:]
    assert len(accepted) >= SIGNAL_AFTER
    with sqlite3.connect(tmp_path / "a.db") as db:
        stored = {host for (host,) in db.execute("SELECT host FROM incidents")}
    assert set(accepted) <= stored
    assert '"event":"stopped"' in stderr
