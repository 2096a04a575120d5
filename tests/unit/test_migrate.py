"""`alertd migrate --from sqlite:PATH --to postgresql://...`: an installation's whole store moves,
reads back the same from PostgreSQL, and goes on from there; a non-empty target, a running
daemon's file and a password on the command line are refused."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alertd.cli import migrate
from alertd.cli.main import main
from alertd.clock import ManualClock
from alertd.config import secrets
from alertd.engine import Engine
from alertd.heartbeats import Heartbeat
from alertd.inbox import encode
from alertd.inbox_file import InboxFile
from alertd.model import CheckResult, CheckState
from alertd.policy import LifecyclePolicy, Pattern
from alertd.silences import Silence
from alertd.store import (
    IncidentQuery,
    NewOp,
    OutboxState,
    OutboxUpdate,
    SqliteStore,
    Store,
    TicketLink,
    WriteBatch,
)
from alertd.store_pg import PgStore
from tests.support.postgres import PgCluster

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


async def fill(path: Path) -> None:
    """An SQLite store as a running installation leaves it: incidents with trails, operations
    done and pending, a ticket link, a silence, a heartbeat."""
    store = await SqliteStore.open(path)
    clock = ManualClock(T0)
    engine = Engine(store, LifecyclePolicy(), clock)
    await engine.start()
    for n in range(3):
        await engine.submit([CheckResult(f"web-{n}", "HTTP", CheckState.CRITICAL, clock.now())])
    clock.advance(timedelta(seconds=5))
    await engine.submit([CheckResult("web-0", "HTTP", CheckState.CRITICAL, clock.now())])
    await engine.stop()
    ops = [NewOp(1, "create", {"subject": "a"}, 3, T0), NewOp(1, "note", {"body": "b"}, 3, T0)]
    await store.write(WriteBatch(new_ops=ops, at=T0))
    await store.write(WriteBatch(
        op_updates=[OutboxUpdate(1, OutboxState.DONE, 1, False, T0, None)],
        tickets=[TicketLink(1, 4711, 3)],
        silences=[Silence(1, T0, None, "ops", "window", T0, Pattern.compile("db-*"))],
        heartbeats=[Heartbeat("backup", timedelta(hours=1), T0, T0 + timedelta(hours=1))],
        at=T0,
    ))  # fmt: skip
    await store.close()


async def snapshot(store: Store) -> tuple[object, ...]:
    incidents = await store.list_incidents(IncidentQuery())
    return (
        incidents,
        [await store.events_page(i.id, 100) for i in incidents],
        await store.ops(limit=100),
        {k: v for k, v in (await store.outbox_stats()).items()},
        await store.tickets_of([i.id for i in incidents]),
        await store.list_silences(None),
        await store.list_heartbeats(),
    )


async def test_a_store_moves_whole_and_goes_on(tmp_path: Path, pg_cluster: PgCluster) -> None:
    path = tmp_path / "alertd.db"
    await fill(path)
    sqlite_store = await SqliteStore.open(path)
    expected = await snapshot(sqlite_store)
    await sqlite_store.close()
    url = pg_cluster.database()
    env = {migrate.DEFAULT_PASSWORD_ENV: pg_cluster.password}

    assert await run_cli(["migrate", "--from", f"sqlite:{path}", "--to", url], env) == 0

    pg = await PgStore.open(url, pg_cluster.password)
    try:
        assert await snapshot(pg) == expected
        # Ids go on after the copied ones: a new operation and event do not collide.
        await pg.write(WriteBatch(new_ops=[NewOp(2, "create", {}, 1, T0)], at=T0))
        assert [o.id for o in await pg.ops_of(2)] == [3]
        assert (await pg.outbox_stats())["pending"] == 2
    finally:
        await pg.close()
    # Once is enough: the target now holds rows, and a second run refuses to mix two stores.
    assert await run_cli(["migrate", "--from", f"sqlite:{path}", "--to", url], env) == 1


def test_the_password_never_goes_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "alertd.db").touch()
    code = main(["migrate", "--from", f"sqlite:{tmp_path / 'alertd.db'}",
                 "--to", "postgresql://alertd:hunter22@localhost/alertd"], {})  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "--password-file" in err and "hunter22" not in err
    assert migrate.DEFAULT_PASSWORD_ENV == secrets.DEFAULT_PASSWORD_ENV


async def test_a_store_in_use_is_not_copied(
    tmp_path: Path, pg_cluster: PgCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "alertd.db"
    await fill(path)
    running = await SqliteStore.open(path)  # a daemon still on it
    try:
        url = pg_cluster.database()
        env = {migrate.DEFAULT_PASSWORD_ENV: pg_cluster.password}
        args = ["migrate", "--from", f"sqlite:{path}", "--to", url]
        assert await run_cli(args, env) == 1
        assert "in use by another alertd" in capsys.readouterr().err
    finally:
        await running.close()
    pg = await PgStore.open(url, pg_cluster.password)
    try:
        assert await pg.list_incidents(IncidentQuery()) == []
    finally:
        await pg.close()


async def run_cli(args: list[str], env: dict[str, str]) -> int:
    """`alertd ...` as the shell runs it: its own event loop, on a thread of its own."""
    return await asyncio.to_thread(main, args, env)


async def test_a_store_with_results_waiting_in_its_inbox_is_not_copied(
    tmp_path: Path, pg_cluster: PgCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """A daemon killed with acknowledged results still in its inbox: migrating then would
    leave them behind, so it is refused, saying what to do; the target stays empty."""
    path = tmp_path / "alertd.db"
    await fill(path)
    store = await SqliteStore.open(path)
    try:
        file = await InboxFile.open(path, "FULL", await store.inbox_applied())
        await file.append([encode([CheckResult("db", "disk", CheckState.CRITICAL, T0)])])
        await file.close()
    finally:
        await store.close()
    url = pg_cluster.database()
    env = {migrate.DEFAULT_PASSWORD_ENV: pg_cluster.password}
    assert await run_cli(["migrate", "--from", f"sqlite:{path}", "--to", url], env) == 1
    assert "1 acknowledged requests wait in" in capsys.readouterr().err
    pg = await PgStore.open(url, pg_cluster.password)
    try:
        assert await pg.list_incidents(IncidentQuery()) == []
    finally:
        await pg.close()
