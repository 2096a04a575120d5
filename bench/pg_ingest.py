"""Ingest on PostgreSQL beside SQLite: results/s accepted (202, durable) by real `alertd run`
processes, for storm batches and single results, on SQLite, on PostgreSQL with one daemon, and
on PostgreSQL with two daemons (the load split between the leader and a standby, whose results
go through the shared journal).

The cluster is a private one (tests/support/postgres.py: fsync on, small buffers) on the same
machine; the load generator is aiohttp's client in this process. Runs alternate between the
targets; medians of `--runs` are printed.

    .venv/bin/python bench/pg_ingest.py [--runs 3] [--duration 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import postgres
from tests.support.proc import free_port, wait_ready

KEYS = 5000
# Workload -> (results per request, requests in flight).
WORKLOADS = {"storm": (100, 8), "single": (1, 64)}


def config(tmp: Path, port: int, store: str) -> Path:
    path = tmp / f"alertd-{port}.toml"
    path.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\nnode = "n{port}"\n[store]\n{store}\n'
        '[auth]\ndisabled = true\n[log]\nlevel = "warning"\nchanges = "debug"\n'
    )
    return path


def start(path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "alertd.cli", "run", "--config", str(path)],
        env={**os.environ, **env}, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def load(urls: list[str], per_request: int, in_flight: int, seconds: float) -> float:
    """Results/s answered 202, sent to `urls` in turn, `in_flight` requests per URL."""
    accepted = 0
    deadline = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession, url: str, n: int) -> None:
        nonlocal accepted
        i = n * 7919
        while time.monotonic() < deadline:
            batch = [
                {"host": f"h{(i + k) % KEYS}", "service": "svc", "state": "CRITICAL"}
                for k in range(per_request)
            ]
            i += per_request
            async with session.post(f"{url}/api/v1/results", json=batch) as response:
                if response.status == 202:
                    accepted += per_request

    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        await asyncio.gather(*(
            worker(session, url, n) for url in urls for n in range(in_flight)
        ))  # fmt: skip
        return accepted / (time.monotonic() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    bin_dir = postgres.find_bin()
    if bin_dir is None:
        sys.exit("PostgreSQL not found: apt-get install postgresql")
    cluster = postgres.start_cluster(bin_dir)
    tmp = Path(tempfile.mkdtemp(prefix="alertd-bench-pg-"))
    env = {"ALERTD_STORE_PASSWORD": cluster.password}
    targets = ("sqlite", "postgresql x1", "postgresql x2")
    figures: dict[tuple[str, str], list[float]] = {}
    try:
        for run in range(args.runs):
            for target in targets:
                for workload, (per_request, in_flight) in WORKLOADS.items():
                    procs: list[subprocess.Popen[bytes]] = []
                    urls: list[str] = []
                    if target == "sqlite":
                        store = f'path = "{tmp / f"r{run}-{workload}.db"}"'
                        daemons = 1
                    else:
                        url = cluster.database(f"r{run}{workload[:2]}{target[-1]}")
                        store = f'url = "{url}"'
                        daemons = int(target[-1])
                    try:
                        for _ in range(daemons):
                            port = free_port()
                            procs.append(start(config(tmp, port, store), env))
                            urls.append(f"http://127.0.0.1:{port}")
                            wait_ready(urls[-1], procs[-1], 30)
                        # In flight per daemon: the same total load whatever the count.
                        rate = await load(
                            urls, per_request, max(in_flight // daemons, 1), args.duration
                        )
                    finally:
                        for proc in procs:
                            proc.terminate()
                        for proc in procs:
                            proc.wait(30)
                    figures.setdefault((target, workload), []).append(rate)
                    print(f"run {run + 1} {target:14} {workload:7} {rate:10,.0f} results/s",
                          flush=True)  # fmt: skip
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nmedians of {args.runs} alternating runs, {args.duration:g} s each, results/s (202)")
    print(f"{'target':15} " + " ".join(f"{w:>12}" for w in WORKLOADS))
    for target in targets:
        row = [statistics.median(figures[(target, w)]) for w in WORKLOADS]
        print(f"{target:15} " + " ".join(f"{v:12,.0f}" for v in row))


if __name__ == "__main__":
    asyncio.run(main())
