"""Start-up benchmark: how long the engine takes to load `--incidents` open incidents from the
store, the longest the event loop stood still meanwhile and in the seconds after (issue: no
stall over 100 ms), the CPU time the start used (every thread: on a shared machine less noisy
than the wall time), and the process's RSS once loaded; the child that fills the store prints
its RSS after the ingest.

Fills a store through the engine in a child process (batches of 5,000 results, one open
incident each, a tenth of them fed by a stream so the stale deadlines are indexed too), then
starts a fresh store and engine on it in this process while a ticker task measures how late its
10 ms sleeps wake up. After the start it keeps ticking for `--after` seconds while results
arrive (one every 100 ms) and Prometheus scrapes the metrics (one every 100 ms too).

    ./run bench-start                              # 100,000 incidents
    ./run bench-start --incidents 1000000
    ./run bench-start --incidents 1000000 --store /tmp/1m.db   # fill once, start it again
    ./run bench-start --postgresql                 # on a private PostgreSQL cluster
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from alertd import logs
from alertd.clock import ManualClock
from alertd.engine import Engine
from alertd.metrics import Metrics
from alertd.model import CheckResult, CheckState, Reporting, StateType
from alertd.policy import LifecyclePolicy
from alertd.store import SqliteStore, Store

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
PROFILE = False


def result(n: int, at: datetime) -> CheckResult:
    return CheckResult(
        f"host-{n // 10:06}", f"svc-{n % 10}", CheckState.CRITICAL, at, output="timeout",
        state_type=StateType.HARD,
        reporting=Reporting.STREAM if n % 10 == 0 else Reporting.CHANGE,
        interval=timedelta(minutes=1) if n % 10 == 0 else None,
    )  # fmt: skip


async def open_store(where: str) -> Store:
    """A path (SQLite, synchronous=NORMAL), or a PostgreSQL URL whose password is in
    $BENCH_PG_PASSWORD (`--postgresql`)."""
    if where.startswith("postgresql://"):
        from alertd.store_pg import PgStore

        return await PgStore.open(where, os.environ["BENCH_PG_PASSWORD"])
    return await SqliteStore.open(Path(where), "NORMAL")


async def fill(where: str, incidents: int) -> None:
    store = await open_store(where)
    engine = Engine(store, LifecyclePolicy(), ManualClock(NOW))
    await engine.start()
    for start in range(0, incidents, 5000):
        await engine.submit([result(n, NOW) for n in range(start, min(start + 5000, incidents))])
    # Issue 13 asks for this one too: the daemon that ingested them, every one decoded.
    print(f"ingest: RSS {rss_mib():.0f} MiB with {engine.active_incidents:,} open incidents")
    await engine.stop()
    await store.close()


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def start(where: str, after: float) -> tuple[float, float, float, float, float, int]:
    """(seconds to start, CPU seconds the process used meanwhile (every thread), longest
    stall while starting, longest stall after it, RSS in MiB once loaded, incidents loaded)."""
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
    began, cpu = time.perf_counter(), time.process_time()
    store = await open_store(where)
    clock = ManualClock(NOW + timedelta(seconds=30))
    engine = Engine(store, LifecyclePolicy(), clock)
    if PROFILE:
        import cProfile

        with cProfile.Profile() as prof:
            await engine.start()
        prof.print_stats("cumulative")
    else:
        await engine.start()
    took, cpu = time.perf_counter() - began, time.process_time() - cpu
    loading, worst = worst, 0.0
    rss = rss_mib()
    registry = CollectorRegistry()
    Metrics(registry, version="bench").watch(engine)
    ends = time.perf_counter() + after
    n = 0
    while time.perf_counter() < ends:  # life goes on: results arrive, timers are looked at
        clock.advance(timedelta(milliseconds=100))
        await engine.submit([result(n * 7919 % 1000, clock.now())])
        generate_latest(registry)  # a scrape: the incident gauges included
        await asyncio.sleep(0.1)
        n += 1
    done.set()
    await tick
    loaded = engine.active_incidents
    await engine.stop()
    await store.close()
    return took, cpu, loading, worst, rss, loaded


def main(incidents: int, after: float, keep: Path | None, postgresql: bool) -> int:
    logs.configure("warning")
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        if postgresql:
            # A private cluster on this machine (tests/support/postgres.py: fsync on, small
            # buffers), stopped at the end; the store is filled anew each run.
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
            from tests.support import postgres

            found = postgres.find_bin()
            if found is None:
                print(f"PostgreSQL not found: apt-get install {postgres.PACKAGE}")
                return 1
            cluster = postgres.start_cluster(found)
            stack.callback(cluster.stop)
            os.environ["BENCH_PG_PASSWORD"] = cluster.password
            where, filled = cluster.database("bench"), False
        else:
            path = keep or Path(tmp) / "alertd.db"
            where, filled = str(path), path.exists()
        if not filled:
            began = time.perf_counter()
            # A child process, so this one's RSS is the start's alone.
            subprocess.run([sys.executable, __file__, "--fill", where,
                            "--incidents", str(incidents)], check=True)  # fmt: skip
            print(f"filled {incidents:,} open incidents in {time.perf_counter() - began:.1f} s")
        took, cpu, loading, later, rss, loaded = asyncio.run(start(where, after))
        print(f"start: {loaded:,} incidents loaded in {took:.2f} s ({cpu:.2f} s of CPU); "
              f"longest event-loop stall "
              f"{loading * 1000:.0f} ms while starting, {later * 1000:.0f} ms in the {after:g} s "
              f"after; RSS once loaded {rss:.0f} MiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--after", type=float, default=5.0, help="seconds to watch after start")
    parser.add_argument("--store", type=Path, help="reuse this store (filled if missing)")
    parser.add_argument("--postgresql", action="store_true",
                        help="on a private PostgreSQL cluster (filled each run)")  # fmt: skip
    parser.add_argument("--fill", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fill:
        logs.configure("warning")
        asyncio.run(fill(args.fill, args.incidents))
        sys.exit(0)
    sys.exit(main(args.incidents, args.after, args.store, args.postgresql))
