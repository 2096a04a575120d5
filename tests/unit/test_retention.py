"""Retention: old resolved incidents, their events and delivered operations go, a chunk at a
time, through the writer's own commits; nothing that may still matter goes."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from alertd import codec
from alertd.clock import ManualClock
from alertd.engine import BatchStats, Engine, Input, Retention
from alertd.model import CheckResult, CheckState, Status
from alertd.policy import LifecyclePolicy
from alertd.store import PurgeKind, SqliteStore, WriteBatch

KEEP = timedelta(days=2)
CHUNK = 2


class Deleted:
    """What the writer reports it deleted, summed over commits (what the metric counts)."""

    def __init__(self) -> None:
        self.by_kind = dict.fromkeys(PurgeKind, 0)
        self.largest_pass = 0

    def __call__(self, _: BatchStats, write: WriteBatch, __: Sequence[Sequence[Input]]) -> None:
        for kind, n in write.purged.items():
            self.by_kind[kind] += n
        self.largest_pass = max(self.largest_pass, sum(write.purged.values()))


@pytest.fixture
def deleted() -> Deleted:
    return Deleted()


@pytest.fixture
async def engine(tmp_path: Path, clock: ManualClock, deleted: Deleted) -> AsyncIterator[Engine]:
    store = await SqliteStore.open(tmp_path / "alertd.db")
    # A pass on every commit (interval 0), so the test drives passes by committing.
    retention = Retention(keep=KEEP, chunk=CHUNK, every=timedelta(0))
    engine = Engine(store, LifecyclePolicy(), clock, on_batch=deleted, retention=retention)
    await engine.start()
    yield engine
    await engine.stop()
    await store.close()


def db(tmp_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(tmp_path / "alertd.db")


async def resolve(engine: Engine, clock: ManualClock, host: str, repeats: int = 0) -> int:
    """An incident on `host` that failed (`repeats` more times, each its own commit) and was
    resolved; returns its id."""
    for _ in range(1 + repeats):
        await engine.submit([CheckResult(host, "HTTP", CheckState.CRITICAL, clock.now())])
    await engine.submit([CheckResult(host, "HTTP", CheckState.OK, clock.now())])
    clock.advance(LifecyclePolicy().recovery_hold + timedelta(seconds=1))
    await engine.run_timers()
    incident = engine.cached((host, "HTTP"))
    assert incident is not None and incident.status is Status.RESOLVED
    return incident.id


async def passes(engine: Engine, n: int) -> None:
    for _ in range(n):
        await engine.run_timers()


def counts(tmp_path: Path, incident_id: int) -> tuple[int, int]:
    with db(tmp_path) as conn:
        incidents = conn.execute("SELECT count(*) FROM incidents WHERE id = ?", (incident_id,))
        n_incidents = incidents.fetchone()[0]
        events = conn.execute("SELECT count(*) FROM events WHERE incident_id = ?", (incident_id,))
        return n_incidents, events.fetchone()[0]


async def test_an_old_resolved_incident_goes_with_its_trail_in_small_chunks(
    engine: Engine, clock: ManualClock, tmp_path: Path, deleted: Deleted
) -> None:
    old = await resolve(engine, clock, "old", repeats=6)
    _, trail = counts(tmp_path, old)
    assert trail > CHUNK  # more than one pass is needed
    with db(tmp_path) as conn:  # its ticket link and delivered operation go with it
        conn.execute("INSERT INTO tickets VALUES (?, 7, NULL, ?)", (old, codec.ts(clock.now())))
        conn.execute(
            "INSERT INTO outbox (incident_id, op, payload, priority, state, next_attempt_at, "
            "created_at, updated_at) VALUES (?, 'create', '{}', 1, 'done', ?, ?, ?)",
            (old, *[codec.ts(clock.now())] * 3),
        )
    clock.advance(KEEP + timedelta(hours=1))
    recent = await resolve(engine, clock, "recent")

    await passes(engine, 10)

    assert counts(tmp_path, old) == (0, 0)
    assert counts(tmp_path, recent)[0] == 1 and counts(tmp_path, recent)[1] > 0
    with db(tmp_path) as conn:
        assert conn.execute("SELECT count(*) FROM tickets").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    assert deleted.by_kind[PurgeKind.INCIDENTS] == 1
    assert deleted.by_kind[PurgeKind.EVENTS] == trail
    assert 0 < deleted.largest_pass <= CHUNK


async def test_kept_an_incident_in_its_reopen_window_or_with_undelivered_operations(
    tmp_path: Path, clock: ManualClock, deleted: Deleted
) -> None:
    """A reopen window longer than retention wins; an incident whose operations are not all
    delivered (pending or dead-lettered) is kept however old."""
    store = await SqliteStore.open(tmp_path / "alertd.db")
    policy = LifecyclePolicy(reopen_window=timedelta(days=5))
    retention = Retention(keep=KEEP, chunk=CHUNK, every=timedelta(0))
    engine = Engine(store, policy, clock, on_batch=deleted, retention=retention)
    await engine.start()
    try:
        reopenable = await resolve(engine, clock, "reopenable")
        undelivered = {}
        for state in ("pending", "dead"):
            undelivered[state] = await resolve(engine, clock, state)
            with db(tmp_path) as conn:
                conn.execute(
                    "INSERT INTO outbox (incident_id, op, payload, priority, state, "
                    "next_attempt_at, created_at, updated_at) "
                    "VALUES (?, 'note', '{}', 1, ?, ?, ?, ?)",
                    (undelivered[state], state, *[codec.ts(clock.now())] * 3),
                )
        clock.advance(KEEP + timedelta(days=1))  # past retention, inside the reopen window
        await passes(engine, 5)
        assert counts(tmp_path, reopenable)[0] == 1
        await engine.submit([CheckResult("reopenable", "HTTP", CheckState.CRITICAL, clock.now())])
        live = engine.cached(("reopenable", "HTTP"))
        assert live is not None and live.id == reopenable  # the same incident reopened

        clock.advance(timedelta(days=30))
        await passes(engine, 5)
        for incident_id in undelivered.values():
            assert counts(tmp_path, incident_id)[0] == 1
        assert counts(tmp_path, reopenable)[0] == 1  # open again: never deleted
        with db(tmp_path) as conn:
            assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 2
    finally:
        await engine.stop()
        await store.close()


async def test_old_delivered_operations_of_a_live_incident_go_pending_ones_stay(
    engine: Engine, clock: ManualClock, tmp_path: Path, deleted: Deleted
) -> None:
    await engine.submit([CheckResult("web", "HTTP", CheckState.CRITICAL, clock.now())])
    live = engine.cached(("web", "HTTP"))
    assert live is not None
    then = codec.ts(clock.now())
    with db(tmp_path) as conn:
        for state in ("done",) * 6 + ("pending",):
            conn.execute(
                "INSERT INTO outbox (incident_id, op, payload, priority, state, "
                "next_attempt_at, created_at, updated_at) VALUES (?, 'note', '{}', 1, ?, ?, ?, ?)",
                (live.id, state, then, then, then),
            )
    clock.advance(KEEP + timedelta(hours=1))
    await passes(engine, 3)
    with db(tmp_path) as conn:
        left = conn.execute("SELECT state FROM outbox").fetchall()
    assert left == [("pending",)]
    assert counts(tmp_path, live.id)[0] == 1
    assert deleted.by_kind[PurgeKind.OUTBOX] == 6
    assert deleted.largest_pass <= CHUNK
