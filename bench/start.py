"""Start-up benchmark: how long the engine takes to load `--incidents` open incidents from the
store, and the longest the event loop stood still meanwhile (issue: no stall over 100 ms).

Fills a store in a temp dir through the engine (batches of 1,000 results, one open incident
each), stops, then starts a fresh store and engine on it while a ticker task measures how late
its 10 ms sleeps wake up.

    ./run bench-start                      # 100,000 incidents
    ./run bench-start --incidents 20000
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from alertd import logs
from alertd.clock import ManualClock
from alertd.engine import Engine
from alertd.model import CheckResult, CheckState, StateType
from alertd.policy import LifecyclePolicy
from alertd.store import SqliteStore

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
PROFILE = False


async def fill(path: Path, incidents: int) -> None:
    store = await SqliteStore.open(path, "NORMAL")
    engine = Engine(store, LifecyclePolicy(), ManualClock(NOW))
    await engine.start()
    for start in range(0, incidents, 1000):
        await engine.submit([
            CheckResult(f"host-{n // 10:05}", f"svc-{n % 10}", CheckState.CRITICAL, NOW,
                        output="timeout", state_type=StateType.HARD)
            for n in range(start, min(start + 1000, incidents))
        ])  # fmt: skip
    await engine.stop()
    await store.close()


async def start(path: Path) -> tuple[float, float, int]:
    """(seconds to start, longest loop stall in seconds, incidents loaded)."""
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            worst = max(worst, time.perf_counter() - before - 0.01)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    began = time.perf_counter()
    store = await SqliteStore.open(path, "NORMAL")
    engine = Engine(store, LifecyclePolicy(), ManualClock(NOW))
    if PROFILE:
        import cProfile

        with cProfile.Profile() as prof:
            await engine.start()
        prof.print_stats("cumulative")
    else:
        await engine.start()
    took = time.perf_counter() - began
    done.set()
    await tick
    loaded = engine.active_incidents
    await engine.stop()
    await store.close()
    return took, worst, loaded


async def main(incidents: int) -> int:
    logs.configure("warning")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alertd.db"
        began = time.perf_counter()
        await fill(path, incidents)
        print(f"filled {incidents:,} open incidents in {time.perf_counter() - began:.1f} s")
        took, worst, loaded = await start(path)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"start: {loaded:,} incidents loaded in {took:.2f} s; longest event-loop stall "
              f"{worst * 1000:.0f} ms; peak RSS of this process {rss:.0f} MiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    sys.exit(asyncio.run(main(parser.parse_args().incidents)))
