"""Store at scale: what the outbox statistics and one retention pass cost on a large store.

Prints figures; asserts nothing. Builds a store in a temporary directory with `--rows` delivered
outbox rows and `--incidents` old resolved incidents of `--events` events each, then times:

- `outbox_stats` (every dispatcher round and readiness probe), against the count by scan it
  replaced (`SELECT state, count(*) FROM outbox GROUP BY state`);
- one retention pass of `--chunk` rows inside a write batch (the writer's commit length);
- the incident answer's page of the newest 1,000 events of the incident with the most.

    ./run bench-store [--rows 1000000] [--incidents 2000] [--events 200] [--chunk 500]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alertd import codec
from alertd.store import Purge, SqliteStore, WriteBatch

NOW = datetime(2026, 6, 1, tzinfo=UTC)
OLD = codec.ts(NOW - timedelta(days=200))


def build(path: Path, rows: int, incidents: int, events: int) -> None:
    """Schema by `SqliteStore.open` (so migrations and triggers apply), rows straight in."""
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO outbox (incident_id, op, payload, priority, state, next_attempt_at, "
            "created_at, updated_at) VALUES (?, 'note', '{}', 1, 'done', ?, ?, ?)",
            ((n % 100_000 + 1_000_000, OLD, OLD, OLD) for n in range(rows)),
        )
        db.executemany(
            "INSERT INTO incidents (id, host, service, status, check_state, priority, impact, "
            "urgency, occurrences, first_seen, last_seen, opened_at, resolved_at, due_at, "
            "flapping, suppressed, last_output, body) VALUES (?, ?, 'svc', 'resolved', 'OK', "
            "'low', 'low', 'low', 1, ?, ?, ?, ?, NULL, 0, 0, '', '{}')",
            ((n, f"h{n}", OLD, OLD, OLD, OLD) for n in range(1, incidents + 1)),
        )
        db.executemany(
            "INSERT INTO events (incident_id, at, kind, detail) VALUES (?, ?, 'note', '{}')",
            ((n % incidents + 1, OLD) for n in range(incidents * events)),
        )


async def timed(label: str, runs: int, call: Callable[[], Awaitable[object]]) -> None:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    print(f"{label:<48} median {statistics.median(samples):8.2f} ms   max {max(samples):8.2f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--incidents", type=int, default=2_000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--chunk", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alertd.db"
        store = await SqliteStore.open(path, "NORMAL")
        await store.close()
        started = time.perf_counter()
        build(path, args.rows, args.incidents, args.events)
        took = time.perf_counter() - started
        print(
            f"built: {args.rows:,} delivered outbox rows, {args.incidents:,} resolved "
            f"incidents x {args.events} events in {took:.1f} s"
        )
        store = await SqliteStore.open(path, "FULL")
        try:
            await timed("outbox_stats", 20, store.outbox_stats)
            await timed(
                "count by scan (what outbox_stats did before)", 5,
                lambda: store._read("SELECT state, count(*) FROM outbox GROUP BY state", []),
            )  # fmt: skip
            await timed("newest 1,000 events of an incident", 20,
                        lambda: store.events_page(1, 1001))  # fmt: skip
            purge = Purge(resolved_before=NOW, done_before=NOW, limit=args.chunk)
            await timed(
                f"commit with a retention pass of {args.chunk} rows", 20,
                lambda: store.write(WriteBatch(purge=purge, at=NOW)),
            )  # fmt: skip
        finally:
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())
