"""Which asyncio PostgreSQL driver for the PostgreSQL store: asyncpg or psycopg 3 (async).

Both drive the same private cluster (tests/support/postgres.py: fsync on, small buffers) through
the statements the store runs most: a group commit of N incident upserts in one transaction
(executemany), a commit of one small row, and a page of 500 incidents read back. Runs alternate
between the drivers; medians of `--runs` are printed.

    .venv/bin/python bench/pg_driver.py [--runs 5] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import psycopg

from tests.support import postgres

SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id BIGINT PRIMARY KEY, host TEXT NOT NULL, service TEXT, status TEXT NOT NULL,
    occurrences BIGINT NOT NULL, last_seen TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (id BIGSERIAL PRIMARY KEY, incident_id BIGINT NOT NULL,
    at TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
"""
BODY = '{"flap_history":["OK","CRITICAL"],"labels":{"team":"db"},"perfdata":"load=1.2"}' * 4
UPSERT = (
    "INSERT INTO incidents (id, host, service, status, occurrences, last_seen, body) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET "
    "status = excluded.status, occurrences = excluded.occurrences, "
    "last_seen = excluded.last_seen, body = excluded.body"
)
EVENT = "INSERT INTO events (incident_id, at, kind, detail) VALUES ($1, $2, $3, $4)"
PAGE = "SELECT id, host, service, status, occurrences, last_seen, body FROM incidents " \
    "WHERE id > $1 ORDER BY id LIMIT 500"  # fmt: skip


def rows(batch: int, round_: int) -> list[tuple[Any, ...]]:
    return [
        (i, f"host{i % 100}", f"svc{i}", "open", round_, f"2026-11-26T12:00:{round_:02}Z", BODY)
        for i in range(batch)
    ]


def psyco(sql: str) -> str:
    # The same statements with psycopg's placeholders.
    for n in range(7, 0, -1):
        sql = sql.replace(f"${n}", "%s")
    return sql


async def asyncpg_case(url: str, batch: int, rounds: int) -> dict[str, float]:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SCHEMA)
        t0 = time.perf_counter()
        for r in range(rounds):
            async with conn.transaction():
                await conn.executemany(UPSERT, rows(batch, r))
        commit = (time.perf_counter() - t0) / rounds
        t0 = time.perf_counter()
        for r in range(rounds * 4):
            async with conn.transaction():
                await conn.execute(EVENT, 1, f"t{r}", "deduplicated", "{}")
        single = (time.perf_counter() - t0) / (rounds * 4)
        t0 = time.perf_counter()
        for _ in range(rounds):
            await conn.fetch(PAGE, 0)
        read = (time.perf_counter() - t0) / rounds
    finally:
        await conn.close()
    return {"batch_commit_ms": commit * 1e3, "single_commit_ms": single * 1e3,
            "read_page_ms": read * 1e3}  # fmt: skip


async def psycopg_case(url: str, batch: int, rounds: int) -> dict[str, float]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        for statement in filter(str.strip, SCHEMA.split(";")):
            await conn.execute(statement)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        for r in range(rounds):
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(psyco(UPSERT), rows(batch, r))  # type: ignore[arg-type]
        commit = (time.perf_counter() - t0) / rounds
        t0 = time.perf_counter()
        for r in range(rounds * 4):
            async with conn.transaction():
                await conn.execute(psyco(EVENT), (1, f"t{r}", "deduplicated", "{}"))  # type: ignore[arg-type]
        single = (time.perf_counter() - t0) / (rounds * 4)
        t0 = time.perf_counter()
        for _ in range(rounds):
            cur = await conn.execute(psyco(PAGE), (0,))  # type: ignore[arg-type]
            await cur.fetchall()
        read = (time.perf_counter() - t0) / rounds
    finally:
        await conn.close()
    return {"batch_commit_ms": commit * 1e3, "single_commit_ms": single * 1e3,
            "read_page_ms": read * 1e3}  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    bin_dir = postgres.find_bin()
    if bin_dir is None:
        sys.exit("PostgreSQL not found: apt-get install postgresql")
    cluster = postgres.start_cluster(bin_dir)
    cases: dict[str, Callable[[str, int, int], Awaitable[dict[str, float]]]] = {
        "asyncpg": asyncpg_case, "psycopg": psycopg_case,
    }  # fmt: skip
    results: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    try:
        for run in range(args.runs):
            for name, case in cases.items():
                url = cluster.database(f"{name}{run}").replace(
                    cluster.user, f"{cluster.user}:{cluster.password}", 1
                )
                results[name].append(await case(url, args.batch, args.rounds))
    finally:
        cluster.stop()
    print(f"PostgreSQL drivers, medians of {args.runs} alternating runs, batch {args.batch}")
    print(f"{'driver':10} {'commit of batch':>16} {'commit of 1 row':>16} {'read 500 rows':>14}")
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{name:10} {med['batch_commit_ms']:13.1f} ms {med['single_commit_ms']:13.2f} ms "
              f"{med['read_page_ms']:11.2f} ms")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
