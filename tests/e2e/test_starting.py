"""While a large store loads, the daemon already answers: `/healthz` says it is up, the API says
"starting" with 503 and Retry-After, and once loaded everything works as usual."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from alertd import logs
from alertd.clock import ManualClock
from alertd.engine import Engine
from alertd.model import CheckResult, CheckState, StateType
from alertd.policy import LifecyclePolicy
from alertd.store import SqliteStore
from tests.support.proc import free_port, log_file, start, stop

INCIDENTS = 30_000


async def fill(path: Path) -> None:
    now = datetime.now(UTC)
    store = await SqliteStore.open(path, "NORMAL")
    engine = Engine(store, LifecyclePolicy(), ManualClock(now))
    await engine.start()
    try:
        for first in range(0, INCIDENTS, 5000):
            await engine.submit([
                CheckResult(f"host-{n}", "disk", CheckState.CRITICAL, now, output="full",
                            state_type=StateType.HARD)
                for n in range(first, first + 5000)
            ])  # fmt: skip
    finally:
        await engine.stop()
        await store.close()


async def test_healthz_answers_while_the_store_loads(tmp_path: Path) -> None:
    logs.configure("warning")
    await fill(tmp_path / "a.db")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "alertd.toml"
    config.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\n[store]\npath = "a.db"\n'
                      "[auth]\ndisabled = true\n")  # fmt: skip
    proc = start(config)
    seen: list[tuple[str, int, str]] = []
    try:
        async with aiohttp.ClientSession(base) as http:
            while True:
                try:
                    async with http.get("/healthz") as health:
                        seen.append(("healthz", health.status, await health.text()))
                    async with http.get("/readyz") as ready:
                        seen.append(("readyz", ready.status, await ready.text()))
                        if ready.status == 200:
                            break
                    result = {"host": "web-01", "state": "DOWN"}
                    async with http.post("/api/v1/results", json=result) as posted:
                        seen.append(("post", posted.status, posted.headers.get("Retry-After", "")))
                except aiohttp.ClientConnectionError:
                    assert proc.poll() is None, log_file(config).read_text()[-2000:]
                await asyncio.sleep(0.01)
            async with http.post("/api/v1/results", json={"host": "web-01", "state": "DOWN"}) as r:
                assert r.status == 202
            async with http.get("/api/v1/incidents", params={"host": "web-01"}) as listed:
                assert (await listed.json())["incidents"][0]["status"] == "open"
    finally:
        assert await asyncio.to_thread(stop_gently, proc) == 0
    starting = [s for s in seen if s[0] == "healthz" and '"starting"' in s[2]]
    assert starting and all(status == 200 for _, status, _ in starting), seen[:5]
    refused = [s for s in seen if s[0] == "post"]
    assert refused and all(s[1:] == (503, "1") for s in refused), refused[:5]
    assert '"active_incidents":30000' in log_file(config).read_text()


def stop_gently(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return stop(proc)
