"""The daemon's memory with many open incidents (issue 13: <= 150 MiB at 100,000).

A real `alertd run` (no helpdesk, SQLite, as `bench/compare.py` starts it) is sent --incidents
CRITICAL results over HTTP, each its own key (2,000 per request, 10 services per host, a tenth
of them streams), and the RSS is read from /proc once all are applied; then it is stopped
(SIGTERM), started again on the same store, and the RSS read once it is ready.

    ./run bench-memory                  # 100,000 open incidents
    ./run bench-memory --incidents 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
import compare  # the same daemon set-up as the side-by-side benchmark


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def body(start: int, count: int) -> bytes:
    items = []
    for n in range(start, start + count):
        item: dict[str, object] = {
            "host": f"host-{n // 10:06}", "service": f"svc-{n % 10}", "state": "CRITICAL",
            "output": f"CRITICAL - check {n % 7} timed out", "state_type": "HARD",
        }  # fmt: skip
        if n % 10 == 0:
            item["interval"] = 60
        items.append(item)
    return json.dumps(items).encode()


async def ingest(target: compare.Alertd, incidents: int) -> None:
    async with aiohttp.ClientSession() as session:
        for start in range(0, incidents, 2000):
            data = body(start, min(2000, incidents - start))
            async with session.post(target.url, data=data, headers=target.headers) as answer:
                assert answer.status == 202, await answer.text()
        await target.applied(session)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="alertd-memory-") as tmp:
        target = compare.Alertd()
        target.start(Path(tmp))
        assert target.proc is not None
        idle = rss_mib(target.proc.pid)
        began = time.monotonic()
        asyncio.run(ingest(target, args.incidents))
        took = time.monotonic() - began
        time.sleep(1)
        after_ingest = rss_mib(target.proc.pid)
        compare.stop(target.proc)
        target.log.close()
        began = time.monotonic()
        target.start(Path(tmp))  # the same store: a restart
        assert target.proc is not None
        ready = time.monotonic() - began
        after_restart = rss_mib(target.proc.pid)
        compare.stop(target.proc)
        target.log.close()
    print(f"{args.incidents:,} open incidents: RSS idle {idle:.0f} MiB, after ingest "
          f"{after_ingest:.0f} MiB (sent and applied in {took:.1f} s), after a restart "
          f"{after_restart:.0f} MiB (ready in {ready:.1f} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
