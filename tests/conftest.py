"""Shared fixtures: a real alertd app on loopback with its store in tmp_path and a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from alertd.app import build_app
from alertd.clock import ManualClock
from alertd.config import Config, load_config
from alertd.http.ingest import SOURCES as INGEST_PATHS
from alertd.http.keys import ENGINE
from alertd.sandbox import FLAVOURS, SANDBOX, Sandbox, SandboxOptions, create_app
from connectors import freshdesk
from tests.support import KEY, START, Client, MakeClient, configure_logs, postgres
from tests.support.postgres import PgCluster

# As the daemon does: one configuration, logs on stderr (so tests reading stdout see only
# what the commands themselves print); loggers not cached, so that a test capturing logs
# (structlog.testing.capture_logs) sees every module's, whatever ran before it.
configure_logs()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[[str], Config]:
    """Config from TOML text, loaded the way the daemon loads it; the store lives in tmp_path."""

    def make(toml: str = "") -> Config:
        path = tmp_path / "alertd.toml"
        # Auth fails closed: a test that configures no [auth] runs with the API open on purpose.
        if "[auth]" not in toml:
            toml = f"[auth]\ndisabled = true\n{toml}"
        path.write_text(f'[store]\npath = "{tmp_path / "alertd.db"}"\n{toml}')
        return load_config(path, env={})

    return make


@pytest.fixture
async def make_client(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    make_config: Callable[[str], Config],
    clock: ManualClock,
) -> AsyncIterator[MakeClient]:
    async def make(
        toml: str = "", *, lag: bool = False
    ) -> TestClient[web.Request, web.Application]:
        app = build_app(make_config(toml), clock=clock)
        if not lag:
            # Ingest is acknowledged once in the inbox and applied just after (alertd.inbox).
            # These tests move a manual clock between requests, so here an ingest answer
            # waits for its application too (the inbox path itself still runs);
            # tests/e2e/test_inbox.py runs with `lag=True`, as the daemon does.
            app.on_response_prepare.append(_applied_before_answer)
        return await aiohttp_client(app)

    yield make


async def _applied_before_answer(request: web.Request, response: web.StreamResponse) -> None:
    if request.path in INGEST_PATHS and response.status < 300 and ENGINE in request.app:
        await request.app[ENGINE].settled()


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process helpdesk retries after milliseconds, not half seconds."""
    monkeypatch.setattr(freshdesk, "RETRY_INITIAL", 0.01)


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> str:
    """Which product the sandbox plays: every helpdesk test runs against both. A test that is
    about one product only says so with `@pytest.mark.parametrize("flavour", [...])`."""
    return str(request.param)


@pytest.fixture
async def sandbox(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
    clock: ManualClock,
    quick_retries: None,
    flavour: str,
) -> tuple[Sandbox, str]:
    """The sandbox helpdesk on loopback, on the test's clock; (state, base URL)."""
    app = create_app(SandboxOptions(api_key=KEY, rate_limit_per_minute=1000, flavour=flavour))
    server = await aiohttp_server(app)
    app[SANDBOX].set_clock(lambda: clock.now().timestamp())
    return app[SANDBOX], str(server.make_url("")).rstrip("/")


@pytest.fixture
def start(
    make_client: MakeClient, sandbox: tuple[Sandbox, str], tmp_path: Path, flavour: str
) -> Callable[..., Awaitable[Client]]:
    """An alertd app whose [helpdesk] is the sandbox, of the sandbox's kind (extra TOML lines go
    in that table)."""
    (tmp_path / "helpdesk.key").write_text(KEY)

    async def start(
        extra: str = "", key_file: str = "helpdesk.key", service_grace: str | None = "0s"
    ) -> Client:
        # Service tickets at once, unless the test is about that grace (None: the default).
        grace = "" if service_grace is None else f'service_grace = "{service_grace}"\n'
        return await make_client(
            f'[helpdesk]\nkind = "{flavour}"\n'
            f'url = "{sandbox[1]}"\nrequester_email = "noc@example.com"\n'
            f'api_key_file = "{tmp_path / key_file}"\nnote_interval = "10m"\n'
            # Tests poll for taken tickets themselves (poll_taken_tickets), not on a timer.
            f'poll_interval = "0s"\n{grace}{extra}'
        )

    return start


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One private PostgreSQL cluster for the whole session (tests/support/postgres.py)."""
    cluster = postgres.start_cluster(postgres.require_bin())
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """A fresh, empty database on the session's cluster; its URL without the password."""
    return pg_cluster.database()
