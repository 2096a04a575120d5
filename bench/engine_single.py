"""One result per request through the inbox and the writer in-process: CPU per result, no HTTP.

The `single` shape of bench/compare.py below the HTTP layer: 64 clients, each handing one
result at a time to `Engine.accept` (decoded from JSON by the native parser, stamped by the
daemon's clock, counted by its metrics), through a real Inbox (its own SQLite file, fsync'd)
and a real Engine and Store (SQLite, synchronous=FULL) with the daemon's batch hook (metrics,
change log as JSON lines to /dev/null). The keys are the shape's: 10,000, one in ten CRITICAL.

Prints, medians of `--runs`: the event loop thread's CPU per result (`time.thread_time`), the
whole process's (loop, inbox and store threads), and how many results each inbox append and
each store commit carried. CPU time is steadier than throughput on a shared machine, still not
steady: compare two checkouts alternately, e.g.
`PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/engine_single.py`.

    .venv/bin/python bench/engine_single.py --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import orjson
import uvloop
from prometheus_client import CollectorRegistry

from alertd import app as app_module
from alertd import logs
from alertd.clock import SystemClock
from alertd.engine import Engine
from alertd.inbox import Inbox
from alertd.inbox_file import InboxFile
from alertd.metrics import Metrics
from alertd.policy import LifecyclePolicy
from alertd.store import SqliteStore
from connectors.native import parse_results

CLIENTS = 64
KEYS = 10_000


class Counted:
    """Counts the inbox appends and store commits of a run (their sizes follow from them)."""

    def __init__(self, inbox_file: InboxFile, store: SqliteStore) -> None:
        self.appends = self.commits = 0
        append, commit = inbox_file.append, store.commit

        async def counted_append(bodies):  # type: ignore[no-untyped-def]
            self.appends += 1
            return await append(bodies)

        async def counted_commit(prepared):  # type: ignore[no-untyped-def]
            self.commits += 1
            return await commit(prepared)

        inbox_file.append = counted_append  # type: ignore[method-assign]
        store.commit = counted_commit  # type: ignore[method-assign]


async def one_run(results: int, spin: float, clients: int) -> tuple[float, float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = await SqliteStore.open(Path(tmp) / "alertd.db", "FULL")
        inbox_file = await InboxFile.open(store.path, "FULL", await store.inbox_applied())
        clock = SystemClock()
        metrics = Metrics(CollectorRegistry(), version="bench")
        engine = Engine(
            store,
            LifecyclePolicy(),
            clock,
            on_batch=app_module._batch_hook(metrics),
            inbox=Inbox(inbox_file, store.inbox_applied),
        )
        await engine.start()
        bodies = [
            orjson.dumps({
                "host": f"p-host-{k // 10:05d}", "service": f"svc-{k % 10}",
                "state": "CRITICAL" if k % 10 == 0 else "OK",
                "output": "CRITICAL - bench" if k % 10 == 0 else "OK - bench",
                "perfdata": "time=0.012s;1;2;0",
            })
            for k in range(KEYS)
        ]  # fmt: skip
        sent = iter(range(results))

        async def client() -> None:
            for n in sent:
                if spin:  # the loop's time in the HTTP layer around a request, as a stand-in
                    until = time.thread_time() + spin
                    while time.thread_time() < until:
                        pass
                now = clock.now()
                items = parse_results(orjson.loads(bodies[n % KEYS]), now, 1_000)
                await engine.accept(items, received=now)
                metrics.results_accepted("api", items)

        warm = iter(range(2_000))  # the incidents of the CRITICAL keys opened, code warm
        sent, rest = warm, sent
        await asyncio.gather(*(client() for _ in range(clients)))
        await engine.settled()
        sent = rest
        counted = Counted(inbox_file, store)
        loop0, process0 = time.thread_time(), time.process_time()
        await asyncio.gather(*(client() for _ in range(clients)))
        await engine.settled()
        loop1, process1 = time.thread_time(), time.process_time()
        await engine.stop()
        await inbox_file.close()
        await store.close()
    return (
        (loop1 - loop0) / results * 1e6 - spin * 1e6,
        (process1 - process0) / results * 1e6 - spin * 1e6,
        results / max(counted.appends, 1),
        results / max(counted.commits, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--results", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--spin", type=float, default=0.0,
                        help="us of loop CPU spent per request before it is accepted (a stand-in "
                             "for the HTTP layer; subtracted from the figures)")  # fmt: skip
    args = parser.parse_args()
    with Path("/dev/null").open("w") as sink:
        logs.configure("info", json=True, stream=sink)
        figures = [
            uvloop.run(one_run(args.results, args.spin / 1e6, args.clients))
            for _ in range(args.runs)
        ]
    loop, process, per_append, per_commit = (list(column) for column in zip(*figures, strict=True))
    print(
        f"single in-process, {args.results:,} results: loop CPU "
        f"{statistics.median(loop):.1f} us/result (runs {', '.join(f'{v:.1f}' for v in loop)}), "
        f"process CPU {statistics.median(process):.1f} us/result; results per inbox append "
        f"{statistics.median(per_append):.1f}, per store commit {statistics.median(per_commit):.1f}"
    )


if __name__ == "__main__":
    main()
