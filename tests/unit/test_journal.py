"""The journal of several daemons on one PostgreSQL store: inputs travel whole, a standby refuses
what needs the leader's state, and the leader applies each row exactly once, across a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from alertd.clock import ManualClock
from alertd.engine import Engine
from alertd.errors import StoreError
from alertd.journal import Consumer, Forwarder, Leadership, decode, encode
from alertd.metrics import Metrics
from alertd.model import CheckResult, CheckState, Notice, NoticeKind, Reporting, StateType
from alertd.policy import LifecyclePolicy
from alertd.silences import SilenceExpire
from alertd.store import IncidentQuery
from alertd.store_pg import PgStore
from tests.support.peers import eventually
from tests.support.postgres import PgCluster

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)


def test_inputs_travel_whole_and_receipt_times_become_the_leaders() -> None:
    given = CheckResult(
        "db-01", "PG", CheckState.WARNING, T0 - timedelta(seconds=3), "slow", "long", "t=1s",
        StateType.SOFT, 2, 3, {"team": "db"}, "nrdp", Reporting.STREAM, timedelta(seconds=60),
    )  # fmt: skip
    assert decode(encode(given, received=T0), LATER) == given  # the source's own time kept
    stamped = given._replace(timestamp=T0)
    assert decode(encode(stamped, received=T0), LATER) == stamped._replace(timestamp=LATER)
    notice = Notice(NoticeKind.ACKNOWLEDGED, "db-01", None, T0 - timedelta(seconds=1), "ann",
                    "looking", True, "nagios", None, None, None)  # fmt: skip
    assert decode(encode(notice, received=T0), LATER) == notice


async def test_a_standby_refuses_what_needs_the_leaders_state_and_stores_nothing(
    pg_cluster: PgCluster,
) -> None:
    url = pg_cluster.database()
    leader = await PgStore.open(url, pg_cluster.password)
    standby = await PgStore.open(url, pg_cluster.password, standby=True)
    forwarder = Forwarder(standby)
    forwarder.start()
    try:
        assert not standby.leader and standby.describe()["lease"] == "standby"
        with pytest.raises(StoreError, match="standby"):
            await forwarder([CheckResult("a", None, CheckState.DOWN, T0), SilenceExpire(1)], T0)
        assert await leader.read_journal(0, 10) == []
        await forwarder([CheckResult("a", None, CheckState.DOWN, T0)], T0)
        assert [row_id for row_id, _ in await leader.read_journal(0, 10)] == [1]
    finally:
        await forwarder.stop()
        await standby.close()
        await leader.close()


async def test_each_journal_row_applies_once_across_a_change_of_leader(
    pg_cluster: PgCluster,
) -> None:
    url = pg_cluster.database()
    clock = ManualClock(T0)

    async def lead() -> tuple[PgStore, Engine, Consumer]:
        store = await PgStore.open(url, pg_cluster.password)
        engine = Engine(store, LifecyclePolicy(), clock)
        await engine.start()
        consumer = Consumer(store, engine, clock)
        await consumer.start()
        return store, engine, consumer

    async def occurrences(store: PgStore) -> int | None:
        found = await store.list_incidents(IncidentQuery())
        return found[0].occurrences if found else None

    store, engine, consumer = await lead()
    standby = await PgStore.open(url, pg_cluster.password, standby=True)
    try:
        for _ in range(3):
            await standby.append_journal([encode(CheckResult("a", None, CheckState.DOWN, T0))])

        async def three() -> bool:
            return await occurrences(store) == 3

        await eventually(three, "the three rows applied")
        await consumer.stop()
        await engine.stop()
        await store.close()
        # A new leader starts from the checkpoint: nothing twice, the next row once.
        await standby.append_journal([encode(CheckResult("a", None, CheckState.DOWN, T0))])
        store, engine, consumer = await lead()

        async def four() -> bool:
            return await occurrences(store) == 4

        await eventually(four, "the fourth row applied")
        assert await store.read_journal(0, 10) == []  # applied rows are deleted
        assert await store.journal_applied() == 4
        await consumer.stop()
        await engine.stop()
        await store.close()
    finally:
        await standby.close()


async def test_the_backlog_gauge_shows_what_waits_in_the_journal_for_the_leader(
    pg_cluster: PgCluster,
) -> None:
    """A standby's accepted results wait in the journal until the leader applies them: the
    standby's `alertd_inbox_backlog_results` counts them meanwhile (it read 0 on PostgreSQL
    whatever waited), and comes back to 0 once the leader has applied them."""
    url = pg_cluster.database()
    clock = ManualClock(T0)
    leader = await PgStore.open(url, pg_cluster.password)  # holds the lease, applies nothing yet
    store = await PgStore.open(url, pg_cluster.password, standby=True)
    engine = Engine(store, LifecyclePolicy(), clock)
    standby = Leadership(store, engine, timedelta(minutes=5), clock)
    registry = CollectorRegistry()
    Metrics(registry, version="test").watch(engine)

    def backlog() -> float | None:
        return registry.get_sample_value("alertd_inbox_backlog_results")

    writer = Engine(leader, LifecyclePolicy(), clock)
    consumer = Consumer(leader, writer, clock)
    try:
        await standby.start()
        assert not standby.leader
        for host in ("a", "b", "c"):
            await engine.submit([CheckResult(host, None, CheckState.DOWN, T0)], received=T0)

        async def three() -> bool:
            return backlog() == 3

        await eventually(three, "the standby's gauge counting three results")
        await writer.start()
        await consumer.start()

        async def none() -> bool:
            return backlog() == 0

        await eventually(none, "the gauge back to 0 once the leader applied them")
        assert len(await leader.list_incidents(IncidentQuery())) == 3
    finally:
        await standby.stop()
        await consumer.stop()
        await writer.stop()
        await store.close()
        await leader.close()
