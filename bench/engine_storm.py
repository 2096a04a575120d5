"""The storm through the writer in-process: CPU per result of the event loop, no HTTP.

5,000 new keys x 4 results, all CRITICAL (the `storm` shape of bench/compare.py), 100 results
per submission decoded from JSON by the native parser, 8 submissions in flight, through a
real Engine and Store (SQLite in a temp dir) with the daemon's change log (JSON lines to
/dev/null). Prints the event loop thread's CPU per result (`time.thread_time`, the figure the
loop's Python cost moves) and the whole process's (loop plus the store's thread), medians of
`--runs`. CPU time is steadier than throughput on a shared machine, still not steady: compare
two checkouts alternately, e.g. `PYTHONPATH=/path/to/other/checkout python bench/engine_storm.py`.

    .venv/bin/python bench/engine_storm.py --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from alertd import change_log, logs
from alertd.clock import SystemClock
from alertd.engine import Engine
from alertd.policy import LifecyclePolicy
from alertd.store import SqliteStore
from connectors.native import parse_results

RESULTS = 20_000


async def one_run(run: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = await SqliteStore.open(Path(tmp) / "alertd.db")
        clock = SystemClock()
        engine = Engine(
            store,
            LifecyclePolicy(),
            clock,
            on_batch=lambda _stats, write, inputs: change_log.log_changes(write, inputs),
        )
        await engine.start()
        items = [
            {
                "host": f"h{run}-{k // 10:04d}",
                "service": f"svc-{k % 10}",
                "state": "CRITICAL",
                "output": "CRITICAL - bench",
                "perfdata": "time=0.012s;1;2;0",
            }
            for _ in range(4)
            for k in range(5_000)
        ]
        bodies = iter([orjson.dumps(items[i : i + 100]) for i in range(0, RESULTS, 100)])

        async def client() -> None:
            for body in bodies:
                await engine.submit(parse_results(orjson.loads(body), clock.now(), 1_000))

        loop0, process0 = time.thread_time(), time.process_time()
        await asyncio.gather(*(client() for _ in range(8)))
        loop1, process1 = time.thread_time(), time.process_time()
        await engine.stop()
        await store.close()
    return (loop1 - loop0) / RESULTS * 1e6, (process1 - process0) / RESULTS * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with Path("/dev/null").open("w") as sink:
        logs.configure("info", json=True, stream=sink)
        figures = [asyncio.run(one_run(run)) for run in range(args.runs)]
    loop = [f[0] for f in figures]
    process = [f[1] for f in figures]
    print(
        f"storm in-process, {RESULTS:,} results: loop CPU {statistics.median(loop):.1f} us/result "
        f"(runs {', '.join(f'{v:.1f}' for v in loop)}), "
        f"process CPU {statistics.median(process):.1f} us/result"
    )


if __name__ == "__main__":
    main()
