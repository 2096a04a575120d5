"""`outbox_stats` (every dispatcher round, every readiness probe) stays right as rows come, change
state and go, and reads a few rows, not the whole outbox."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alertd import codec
from alertd.store import (
    MIGRATIONS,
    NewOp,
    OutboxState,
    OutboxUpdate,
    Purge,
    SqliteStore,
    WriteBatch,
    _statements,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def old_store(path: Path, rows: list[tuple[int, str, str]]) -> None:
    """A store at the schema before the counts existed, already holding outbox rows."""
    with sqlite3.connect(path) as db:
        for script in MIGRATIONS[:6]:
            for statement in _statements(script):
                db.execute(statement)
        db.execute("PRAGMA user_version = 6")
        db.executemany(
            "INSERT INTO outbox (incident_id, op, payload, priority, state, next_attempt_at, "
            "created_at, updated_at) VALUES (?, 'note', '{}', 1, ?, ?, ?, ?)",
            [(i, state, at, at, at) for i, state, at in rows],
        )


def counts(stats: dict[str, object]) -> tuple[object, object, object]:
    return stats["pending"], stats["done"], stats["dead"]


async def test_counts_follow_every_change_from_an_upgraded_store(tmp_path: Path) -> None:
    path = tmp_path / "alertd.db"
    old_store(path, [(1, "done", codec.ts(T0)), (2, "dead", codec.ts(T0)),
                     (3, "pending", codec.ts(T0 + timedelta(minutes=1)))])  # fmt: skip
    store = await SqliteStore.open(path)
    try:
        stats = await store.outbox_stats()
        assert counts(stats) == (1, 1, 1)
        assert stats["oldest_pending"] == T0 + timedelta(minutes=1)

        ops = [NewOp(4, "note", {}, 1, T0) for _ in range(3)]
        await store.write(WriteBatch(new_ops=ops, at=T0 - timedelta(minutes=1)))
        stats = await store.outbox_stats()
        assert counts(stats) == (4, 1, 1)
        assert stats["oldest_pending"] == T0 - timedelta(minutes=1)

        done = OutboxUpdate(3, OutboxState.DONE, 1, False, T0, None)
        dead = OutboxUpdate(4, OutboxState.DEAD, 5, False, T0, "refused")
        await store.write(WriteBatch(op_updates=[done, dead], redrive=[2], at=T0))
        assert counts(await store.outbox_stats()) == (3, 2, 1)

        # Retention deletes delivered rows: the counts follow.
        purge = Purge(resolved_before=T0, done_before=T0 + timedelta(days=1), limit=10)
        await store.write(WriteBatch(purge=purge, at=T0))
        assert counts(await store.outbox_stats()) == (3, 0, 1)
    finally:
        await store.close()


async def test_stats_read_a_few_rows_whatever_the_outbox_holds(tmp_path: Path) -> None:
    """Measured in SQLite's own steps (not in time): counting 100,000 delivered rows would take
    hundreds of thousands; the stats take a handful whatever the outbox size."""
    path = tmp_path / "alertd.db"
    old_store(path, [(n, "done", codec.ts(T0)) for n in range(100_000)])
    store = await SqliteStore.open(path)
    try:
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0  # go on

        await store._reader.set_progress_handler(count, 100)  # every 100 VM instructions
        stats = await store.outbox_stats()
        await store._reader.set_progress_handler(None, 0)
        assert counts(stats) == (0, 100_000, 0)
        assert steps < 20, f"{steps * 100} SQLite instructions: a scan"
    finally:
        await store.close()
