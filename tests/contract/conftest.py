"""The store contract: every test here runs against each store (`alertd.store.Store`): the
SQLite file and PostgreSQL (a fresh database on the session's private cluster)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from alertd.store import SqliteStore, Store
from alertd.store_pg import PgStore
from tests.support.postgres import PgCluster

OpenStore = Callable[[], Awaitable[Store]]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def open_store(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[OpenStore]:
    """Opens the test's store (again after a close: the same file or database)."""
    opened: list[Store] = []
    if store_kind == "sqlite":

        async def open_() -> Store:
            opened.append(await SqliteStore.open(tmp_path / "alertd.db"))
            return opened[-1]

    else:
        # Asked for here, not as a parameter: the SQLite half runs without PostgreSQL.
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        url = cluster.database("contract")

        async def open_() -> Store:
            opened.append(
                await PgStore.open(url, cluster.password, lease=timedelta(seconds=3))
            )
            return opened[-1]

    yield open_
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: OpenStore) -> Store:
    return await open_store()
