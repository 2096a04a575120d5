"""What every store must do, run against each (tests/contract/conftest.py): the engine's writes
read back the same, an incident's trail folds its repeats, the outbox queues and reports, one
unresolved incident per key holds whatever is written, a failed batch leaves nothing, retention
deletes what it may, and everything survives a reopen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alertd import codec
from alertd.clock import ManualClock
from alertd.engine import Engine
from alertd.errors import StoreError
from alertd.gauges import gauge_key
from alertd.heartbeats import Heartbeat
from alertd.model import (
    CheckResult,
    CheckState,
    EventKind,
    Incident,
    Notice,
    NoticeKind,
    Priority,
    Reporting,
    Status,
)
from alertd.policy import LifecyclePolicy, Pattern
from alertd.silences import Silence
from alertd.store import (
    IncidentQuery,
    NewOp,
    OutboxState,
    OutboxUpdate,
    Purge,
    PurgeKind,
    SqliteStore,
    Store,
    TicketLink,
    WriteBatch,
)
from alertd.store_pg import PgStore
from tests.contract.conftest import OpenStore
from tests.unit.test_codec import every_field_set


async def load_active(store: Store, since: datetime) -> list[Incident]:
    """What the engine loads at start, decoded (a store may hand them over folded)."""
    return [
        codec.unfold(i) if isinstance(i, codec.Folded) else i
        for page in [p async for p in store.load_active(since)]
        for i in page
    ]

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def crit(host: str, service: str | None = "HTTP", at: datetime = T0) -> CheckResult:
    return CheckResult(host, service, CheckState.CRITICAL, at, output=f"{host} down")


def ok(host: str, service: str | None = "HTTP", at: datetime = T0) -> CheckResult:
    return CheckResult(host, service, CheckState.OK, at)


async def run_engine(store: Store, clock: ManualClock) -> Engine:
    engine = Engine(store, LifecyclePolicy(), clock)
    await engine.start()
    return engine


async def test_incidents_written_by_the_engine_read_back_alike(store: Store) -> None:
    clock = ManualClock(T0)
    engine = await run_engine(store, clock)
    try:
        await engine.submit([crit("web-01"), crit("web-02"), crit("db-01", None)])
        for _ in range(3):
            clock.advance(timedelta(seconds=10))
            await engine.submit([crit("web-01", at=clock.now())])
    finally:
        await engine.stop()
    assert await store.max_incident_id() == 3
    listed = await store.list_incidents(IncidentQuery())
    assert [(i.host, i.service) for i in listed] == [
        ("db-01", None), ("web-02", "HTTP"), ("web-01", "HTTP")
    ]  # newest first
    web1 = listed[2]
    assert web1.status is Status.OPEN and web1.occurrences == 4
    assert web1.last_seen == T0 + timedelta(seconds=30)
    assert await store.get_incident(web1.id) == web1
    assert await store.get_incident(999) is None
    # Filters and keyset paging.
    assert [i.host for i in await store.list_incidents(IncidentQuery(host="web-02"))] == [
        "web-02"
    ]
    page = await store.list_incidents(IncidentQuery(limit=1, before_id=listed[0].id))
    assert [i.host for i in page] == ["web-02"]
    assert await store.list_incidents(IncidentQuery(status=Status.RESOLVED)) == []
    assert len(await store.list_incidents(IncidentQuery(priority=web1.priority))) == 3
    # A run of repeats is one `deduplicated` event, its count grown commit by commit.
    events = await store.events_page(web1.id, 10)
    kinds = [e.kind for _, e in events]
    assert kinds == [EventKind.DEDUPLICATED, EventKind.OPENED]
    assert events[0][1].detail["count"] == 3
    older = await store.events_page(web1.id, 10, before_id=events[0][0])
    assert [e.kind for _, e in older] == [EventKind.OPENED]
    opened = await store.event_times([web1.id], EventKind.OPENED.value)
    assert opened == {web1.id: T0}


async def test_the_engine_starts_again_from_what_the_store_holds(open_store: OpenStore) -> None:
    clock = ManualClock(T0)
    store = await open_store()
    engine = await run_engine(store, clock)
    await engine.submit([crit("web-01"), crit("web-02")])
    await engine.submit([ok("web-02")])
    clock.advance(LifecyclePolicy().recovery_hold + timedelta(seconds=1))
    await engine.run_timers()
    await engine.stop()
    await store.close()

    store = await open_store()
    loaded = await load_active(store, T0)
    assert {(i.host, i.status) for i in loaded} == {
        ("web-01", Status.OPEN), ("web-02", Status.RESOLVED)
    }
    # Past the reopen window the resolved one is no longer loaded.
    later = clock.now() + LifecyclePolicy().reopen_window + timedelta(seconds=1)
    loaded = await load_active(store, later)
    assert [i.host for i in loaded] == ["web-01"]
    resolved = await store.resolved_between(T0, clock.now() + timedelta(seconds=1), 10)
    assert [i.host for i in resolved] == ["web-02"]
    engine = await run_engine(store, clock)
    try:
        await engine.submit([crit("web-03")])
        cached = engine.cached(("web-03", "HTTP"))
        assert cached is not None and cached.id == 3  # ids go on after the stored ones
    finally:
        await engine.stop()


async def test_one_unresolved_incident_per_key_and_a_failed_batch_leaves_nothing(
    store: Store,
) -> None:
    clock = ManualClock(T0)
    engine = await run_engine(store, clock)
    try:
        await engine.submit([crit("web-01")])
        first = engine.cached(("web-01", "HTTP"))
    finally:
        await engine.stop()
    assert first is not None
    twin = first._replace(id=first.id + 1)
    note = NewOp(twin.id, "note", {"body": "x"}, 1, T0)
    with pytest.raises(StoreError):
        await store.write(WriteBatch(upserts=[(twin, None)], new_ops=[note], at=T0))
    assert await store.get_incident(twin.id) is None
    assert await store.ops_of(twin.id) == []
    # Resolved, the key is free for a new incident.
    resolved = first._replace(status=Status.RESOLVED, resolved_at=T0)
    await store.write(WriteBatch(upserts=[(resolved, None), (twin, None)], at=T0))
    assert (await store.get_incident(twin.id)) == twin


async def test_outbox_queue_order_states_and_statistics(store: Store) -> None:
    at = T0
    ops = [
        NewOp(1, "create", {"subject": "a"}, 2, at),
        NewOp(1, "note", {"body": "a2"}, 4, at),  # incident 1 has an Urgent op waiting
        NewOp(2, "create", {"subject": "b"}, 3, at),
        NewOp(3, "create", {"subject": "c"}, 1, at + timedelta(minutes=5)),  # not due yet
    ]
    await store.write(WriteBatch(new_ops=ops, at=at))
    due = await store.due_ops(at, 10)
    # One per incident (its first), the incident with the highest waiting priority first.
    assert [(o.incident_id, o.op) for o in due] == [(1, "create"), (2, "create")]
    assert due[0].payload == {"subject": "a"} and due[0].state is OutboxState.PENDING
    assert await store.next_op_due() == at
    stats = await store.outbox_stats()
    assert (stats["pending"], stats["done"], stats["dead"]) == (4, 0, 0)
    assert stats["oldest_pending"] == at

    first, second = due
    later = at + timedelta(seconds=30)
    await store.write(WriteBatch(op_updates=[
        OutboxUpdate(first.id, OutboxState.DONE, 1, False, later, None),
        OutboxUpdate(second.id, OutboxState.PENDING, 1, True, later, "timeout", backoff=True),
    ], tickets=[TicketLink(1, 501, 2)], at=later))  # fmt: skip
    assert [(o.incident_id, o.op) for o in await store.due_ops(later, 10)] == [
        (1, "note"), (2, "create")
    ]  # fmt: skip
    backed = await store.backed_off()
    assert [(o.id, o.started, o.last_error) for o in backed] == [(second.id, True, "timeout")]
    stats = await store.outbox_stats()
    assert (stats["pending"], stats["done"], stats["dead"]) == (3, 1, 0)

    await store.write(WriteBatch(op_updates=[
        OutboxUpdate(second.id, OutboxState.DEAD, 5, False, later, "refused"),
    ], at=later))  # fmt: skip
    assert [o.id for o in await store.ops(OutboxState.DEAD)] == [second.id]
    await store.write(WriteBatch(redrive=[second.id], at=later + timedelta(seconds=1)))
    again = await store.op(second.id)
    assert again is not None and again.state is OutboxState.PENDING and again.attempts == 0
    assert await store.op(9999) is None
    everything = await store.ops(limit=2)
    assert [o.id for o in everything] == [4, 3]
    assert [o.id for o in await store.ops(limit=10, before_id=3)] == [2, 1]
    assert [o.op for o in await store.ops_of(1)] == ["create", "note"]
    stats = await store.outbox_stats()
    assert (stats["pending"], stats["done"], stats["dead"]) == (3, 1, 0)


async def test_ticket_links(store: Store) -> None:
    await store.write(WriteBatch(tickets=[TicketLink(1, 501, 3), TicketLink(2, 502, None)], at=T0))
    # A later link without a priority keeps the one sent; a re-create changes the ticket.
    await store.write(WriteBatch(tickets=[TicketLink(1, 601, None)], at=T0))
    assert await store.ticket_of(1) == TicketLink(1, 601, 3)
    assert await store.ticket_of(3) is None
    assert await store.tickets_of([1, 2, 3]) == {
        1: TicketLink(1, 601, 3), 2: TicketLink(2, 502, None)
    }  # fmt: skip
    assert await store.tickets_of([]) == {}
    assert await store.tickets_for([1, 2]) == {1: 601, 2: 502}
    assert await store.ticket_times([2]) == {2: T0}


async def test_silences_and_heartbeats(open_store: OpenStore) -> None:
    store = await open_store()
    ended = Silence(1, T0, T0 + timedelta(hours=1), "ops", "old", T0, Pattern.compile("web-*"))
    open_ = Silence(2, T0, None, "ops", "migration", T0, Pattern.compile("db-01"))
    beat = Heartbeat("backup", timedelta(hours=1), T0, T0 + timedelta(hours=1), False)
    gone = Heartbeat("cron", timedelta(minutes=5), T0, T0 + timedelta(minutes=5), True)
    await store.write(WriteBatch(silences=[ended, open_], heartbeats=[beat, gone], at=T0))
    await store.write(WriteBatch(heartbeat_deletes=["cron"], at=T0))
    after = T0 + timedelta(hours=2)
    assert [s.id for s in await store.list_silences(None)] == [2, 1]
    assert [s.id for s in await store.list_silences(after)] == [2]
    assert await store.get_silence(1) == ended
    assert await store.get_silence(7) is None
    assert await store.list_heartbeats() == [beat]
    await store.close()
    store = await open_store()
    assert await store.max_silence_id() == 2
    assert await store.load_silences(after) == [open_]
    assert await store.load_heartbeats() == [beat]


async def test_retention_deletes_old_resolved_incidents_and_delivered_operations(
    store: Store,
) -> None:
    clock = ManualClock(T0)
    engine = await run_engine(store, clock)
    try:
        await engine.submit([crit("old"), crit("live")])
        await engine.submit([ok("old")])
        clock.advance(LifecyclePolicy().recovery_hold + timedelta(seconds=1))
        await engine.run_timers()
        old = engine.cached(("old", "HTTP"))
    finally:
        await engine.stop()
    assert old is not None and old.status is Status.RESOLVED
    await store.write(WriteBatch(new_ops=[NewOp(old.id, "create", {}, 1, T0)], at=T0))
    (row,) = await store.ops_of(old.id)
    await store.write(WriteBatch(
        op_updates=[OutboxUpdate(row.id, OutboxState.DONE, 1, False, T0, None)], at=T0
    ))  # fmt: skip
    late = clock.now() + timedelta(days=1)
    batch = WriteBatch(at=late, purge=Purge(resolved_before=late, done_before=late, limit=100))
    await store.write(batch)
    assert batch.purged[PurgeKind.INCIDENTS] == 1 and batch.purged[PurgeKind.EVENTS] >= 2
    assert await store.get_incident(old.id) is None
    assert await store.ops_of(old.id) == []
    assert [i.host for i in await store.list_incidents(IncidentQuery())] == ["live"]
    stats = await store.outbox_stats()
    assert (stats["pending"], stats["done"], stats["dead"]) == (0, 0, 0)


async def test_pending_incident_discarded_with_its_events(store: Store) -> None:
    clock = ManualClock(T0)
    engine = Engine(store, LifecyclePolicy(open_after=2), clock)
    await engine.start()
    try:
        await engine.submit([crit("web-01")])
        pending = engine.cached(("web-01", "HTTP"))
        assert pending is not None and pending.status is Status.PENDING
        await engine.submit([ok("web-01", at=T0 + timedelta(seconds=1))])
    finally:
        await engine.stop()
    assert await store.get_incident(pending.id) is None
    assert await store.events_page(pending.id, 10) == []


async def test_console_reports(store: Store) -> None:
    clock = ManualClock(T0)
    engine = await run_engine(store, clock)
    try:
        for _ in range(3):
            await engine.submit([crit("busy", at=clock.now())])
            clock.advance(timedelta(seconds=1))
        await engine.submit([crit("quiet", at=clock.now())])
    finally:
        await engine.stop()
    until = clock.now() + timedelta(seconds=1)
    busiest = await store.noisiest_by_occurrences(T0, until, 5)
    assert [(i.host, i.occurrences) for i in busiest] == [("busy", 3), ("quiet", 1)]
    opened = await store.noisiest_by_events(EventKind.OPENED.value, T0, until, 5)
    assert sorted((i.host, n) for i, n in opened) == [("busy", 1), ("quiet", 1)]
    assert all(i.priority in Priority for i, _ in opened)
    await store.check_readable()
    assert store.describe()["kind"] in ("sqlite", "postgresql")


async def test_a_run_of_plain_repeats_reads_back_and_closes_into_one_event(
    open_store: OpenStore,
) -> None:
    """Plain repeats of an open incident (written narrow, their run counted on the incident
    row): the incident reads back as the engine holds it, field for field, also after a
    reopen; the trail shows the open run as one `deduplicated` entry; anything else that
    happens closes the run into one event, before the new one."""
    clock = ManualClock(T0)
    store = await open_store()
    engine = await run_engine(store, clock)
    key = ("web", "HTTP")
    try:
        await engine.submit([crit("web")._replace(reporting=Reporting.STREAM)])
        for n in range(3):
            clock.advance(timedelta(seconds=10))
            await engine.submit([
                CheckResult("web", "HTTP", CheckState.CRITICAL, clock.now(), output=f"down {n}",
                            perfdata=f"t={n}s", labels={"n": str(n)},
                            reporting=Reporting.STREAM)
            ])  # fmt: skip
        cached = engine.cached(key)
        assert cached is not None
        stored = await store.get_incident(cached.id)
        assert stored == cached
        assert (stored.occurrences, stored.last_output, stored.perfdata) == (4, "down 2", "t=2s")
        assert stored.labels == {"n": "2"} and stored.stream_seen == clock.now()
        trail = await store.events_page(cached.id, 10)
        assert [(e.kind, e.detail.get("count")) for _, e in trail] == [
            (EventKind.DEDUPLICATED, 3), (EventKind.OPENED, None)
        ]
        assert trail[1][0] < trail[0][0]  # the open run is numbered after the newest event
    finally:
        await engine.stop()
    await store.close()

    store = await open_store()  # the run and the narrow fields survive a reopen
    loaded = await load_active(store, T0)
    assert loaded == [cached]
    engine = await run_engine(store, clock)
    try:
        ack = Notice(NoticeKind.ACKNOWLEDGED, "web", "HTTP", clock.now(), "bob", "looking", True)
        await engine.submit([ack])
        clock.advance(timedelta(seconds=10))
        await engine.submit([crit("web", at=clock.now())._replace(reporting=Reporting.STREAM)])
        trail = await store.events_page(cached.id, 10)
        assert [(e.kind, e.detail.get("count")) for _, e in reversed(trail)] == [
            (EventKind.OPENED, None), (EventKind.DEDUPLICATED, 3),
            (EventKind.ACKNOWLEDGED, None), (EventKind.DEDUPLICATED, 1),
        ]  # fmt: skip
        assert trail[2][1].at == T0 + timedelta(seconds=10)  # the closed run: its first repeat
        assert trail[2][1].detail["last_at"] == codec.ts(T0 + timedelta(seconds=30))
        assert await store.get_incident(cached.id) == engine.cached(key)
    finally:
        await engine.stop()


async def test_a_start_loads_each_incident_folded_as_the_store_holds_it(
    open_store: OpenStore,
) -> None:
    """Each store hands a start its incidents folded (nothing parsed but the index values):
    each unfolds to exactly what the store reads back, indexes as its own writes say (a
    plain repeat's newer stream time included), and a row without its index values (written
    before them, or by hand) is indexed alike."""
    every = every_field_set()._replace(status=Status.OPEN, stale=False)
    odd = every._replace(id=43, service='"quoted" \\ path\n', last_output="naïve ✓ end",
                         labels={"é": "\u2028"}, history=(), flap_history=(), interval=None,
                         stream_seen=None, acknowledged=False)  # fmt: skip
    resolved = every._replace(id=44, service=None, status=Status.RESOLVED)
    repeated = every._replace(id=45, host="web-02")
    store = await open_store()
    await store.write(WriteBatch(upserts=[(i, i.recovery_due) for i in
                                          (every, odd, resolved, repeated)]))  # fmt: skip
    later = repeated._replace(occurrences=9, last_seen=T0 + timedelta(days=1), interval=30.0,
                              stream_seen=T0 + timedelta(days=1))  # fmt: skip
    await store.write(WriteBatch(repeats=[(later, None)]))
    unindexed = "UPDATE incidents SET fold = NULL WHERE id = 43"
    if isinstance(store, SqliteStore):
        await store._writer_rows(unindexed, ())
    else:
        assert isinstance(store, PgStore)
        await store._writer_rows(unindexed)
    await store.close()

    store = await open_store()
    folded = [f for page in [p async for p in store.load_active(T0 - timedelta(days=365))]
              for f in page]  # fmt: skip
    assert all(isinstance(f, codec.Folded) for f in folded)
    decoded = [codec.unfold(f) for f in folded if isinstance(f, codec.Folded)]
    assert decoded == [every, odd, resolved, later]
    for incident in decoded:
        assert incident == await store.get_incident(incident.id)
    indexed = [(f.key, f.gauge, f.suppressed, f.until, f.stream)
               for f in folded if isinstance(f, codec.Folded)]  # fmt: skip
    assert indexed == [
        (i.key, gauge_key(i), i.suppressed, i.reopen_until if i.status is Status.RESOLVED
         else None, (i.last_seen, i.interval) if i.stream_seen and not i.stale
         and i.status is Status.OPEN else None)
        for i in decoded
    ]  # fmt: skip
