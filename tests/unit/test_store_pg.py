"""What only the PostgreSQL store has: the writer's lease and its fencing token, a schema from a
newer alertd refused, and a password that never shows in an error. (What both stores do is in
tests/contract/.)"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest

from alertd.clock import ManualClock
from alertd.engine import Engine
from alertd.errors import StoreError
from alertd.model import CheckResult, CheckState, EventKind
from alertd.policy import LifecyclePolicy
from alertd.store import NewOp, WriteBatch
from alertd.store_pg import MIGRATIONS, PgStore
from tests.support.postgres import PgCluster

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
NO_WAIT = timedelta(0)


def note(incident_id: int) -> WriteBatch:
    return WriteBatch(new_ops=[NewOp(incident_id, "note", {"body": "x"}, 1, T0)], at=T0)


async def test_a_daemon_that_lost_its_lease_cannot_write_another_row(
    pg_cluster: PgCluster,
) -> None:
    """A writer paused past its lease (here: the lease made to run out) finds, on its next
    write, that another daemon took the store: the write fails whole, the new holder's work
    stands, and the old one reports the loss."""
    url = pg_cluster.database()
    first = await PgStore.open(url, pg_cluster.password, lease=timedelta(seconds=30))
    try:
        await first.write(note(1))
        with pytest.raises(StoreError, match="in use by another alertd"):
            await PgStore.open(url, pg_cluster.password, wait=NO_WAIT)
        database = url.rpartition("/")[2]
        pg_cluster.psql("UPDATE alertd_lease SET expires_at = now() - interval '1s'", database)
        second = await PgStore.open(url, pg_cluster.password, wait=NO_WAIT, node="beta")
        try:
            with pytest.raises(StoreError, match="another alertd took"):
                await first.write(note(2))
            await second.write(note(3))
            assert [o.incident_id for o in await second.ops()] == [3, 1]
            assert first.describe()["lease"] == "lost"
            with pytest.raises(StoreError):
                await first.check_readable()
        finally:
            await second.close()
    finally:
        await first.close()


async def test_a_closed_store_hands_its_lease_over_at_once(pg_cluster: PgCluster) -> None:
    url = pg_cluster.database()
    first = await PgStore.open(url, pg_cluster.password, lease=timedelta(minutes=5))
    await first.close()
    second = await PgStore.open(url, pg_cluster.password, wait=NO_WAIT)
    await second.close()


async def test_a_schema_from_a_newer_alertd_is_refused(pg_cluster: PgCluster) -> None:
    url = pg_cluster.database()
    store = await PgStore.open(url, pg_cluster.password)
    await store.close()
    pg_cluster.psql("UPDATE alertd_schema SET version = 99", url.rpartition("/")[2])
    with pytest.raises(StoreError, match="newer than this alertd knows"):
        await PgStore.open(url, pg_cluster.password)


async def test_a_wrong_password_is_a_clear_error_without_the_password(
    pg_cluster: PgCluster,
) -> None:
    with pytest.raises(StoreError) as info:
        await PgStore.open(pg_cluster.database(), "wrong-Pa55word")
    assert "password authentication failed" in str(info.value)
    assert "wrong-Pa55word" not in str(info.value)
    assert pg_cluster.url("x").split("/x")[0] in str(info.value)  # where, for the admin


async def test_a_store_of_the_release_before_narrow_repeats_is_migrated_in_place(
    pg_cluster: PgCluster,
) -> None:
    """A database at schema version 2 (before the narrow-repeat columns) opens: migration 3
    adds them, the incidents written before read back as they were, and repeats are counted
    on them from then on."""
    url = pg_cluster.database()
    database = url.rpartition("/")[2]
    store = await PgStore.open(url, pg_cluster.password)
    clock = ManualClock(T0)
    engine = Engine(store, LifecyclePolicy(), clock)
    await engine.start()
    crit = CheckResult("web", "HTTP", CheckState.CRITICAL, T0, output="down")
    await engine.submit([crit])
    await engine.stop()
    before = engine.cached(("web", "HTTP"))
    await store.close()
    pg_cluster.psql(
        "ALTER TABLE incidents DROP COLUMN hot, DROP COLUMN repeats, DROP COLUMN repeats_from, "
        "DROP COLUMN repeats_last, DROP COLUMN fold; UPDATE alertd_schema SET version = 2",
        database,
    )
    store = await PgStore.open(url, pg_cluster.password, wait=timedelta(seconds=5))
    try:
        assert before is not None and await store.get_incident(before.id) == before
        engine = Engine(store, LifecyclePolicy(), clock)
        await engine.start()
        clock.advance(timedelta(seconds=10))
        await engine.submit([crit._replace(timestamp=clock.now())])
        await engine.stop()
        assert await store.get_incident(before.id) == engine.cached(("web", "HTTP"))
        trail = await store.events_page(before.id, 10)
        assert [(e.kind, e.detail.get("count")) for _, e in trail] == [
            (EventKind.DEDUPLICATED, 1), (EventKind.OPENED, None)
        ]
    finally:
        await store.close()
    assert pg_cluster.psql("SELECT version FROM alertd_schema", database).strip() == str(
        len(MIGRATIONS)
    )


class CommitCutter:
    """A loopback TCP proxy in front of the cluster. Once `armed`, it passes the client's COMMIT
    on to the server and then drops both sides before the answer can come back: the commit
    lands, and the client cannot know it (a network cut or a failover at the worst moment)."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.armed = False
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> CommitCutter:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, cut: bool) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
                    if cut and self.armed and b"COMMIT" in data:
                        break
            for end in (writer, up_writer):
                end.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_a_commit_whose_answer_is_lost_stops_the_writer_instead_of_a_retry(
    pg_cluster: PgCluster,
) -> None:
    """The connection drops after COMMIT left: the rows are in (checked below), but the writer
    cannot know. A retry would write them twice (the engine commits each submission alone
    after a failure), so the store stops writing and reports the loss: the daemon ends, and
    the next leader loads the store as it is."""
    url = pg_cluster.database()
    database = url.rpartition("/")[2]
    cutter = await CommitCutter(pg_cluster.host, pg_cluster.port).start()
    lost: list[str] = []
    via = url.replace(f":{pg_cluster.port}/", f":{cutter.port}/")
    store = await PgStore.open(via, pg_cluster.password, on_lost=lost.append)
    try:
        await store.write(note(1))
        cutter.armed = True
        with pytest.raises(StoreError, match="outcome unknown"):
            await store.write(note(2))
        assert len(lost) == 1 and "outcome of a commit is unknown" in lost[0]
        assert store.describe()["lease"] == "lost"
        cutter.armed = False
        with pytest.raises(StoreError, match="not written"):
            await store.write(note(3))
    finally:
        await store.close()
        cutter.close()
    ids = "SELECT string_agg(incident_id::text, ',' ORDER BY id) FROM outbox"
    landed = pg_cluster.psql(ids, database)
    assert landed == "1,2"
