"""Shared fixtures: a real alertd app on loopback with its store in tmp_path and a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from alertd.clock import ManualClock
from alertd.config import Config, load_config
from alertd.server import build_app

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
# Real captures from real peers (../shared/samples/README.md); CI has shared/ beside the clone.
SAMPLES = Path(__file__).parents[1].parent / "shared" / "samples"

MakeClient = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[[str], Config]:
    """Config from TOML text, loaded the way the daemon loads it; the store lives in tmp_path."""

    def make(toml: str = "") -> Config:
        path = tmp_path / "alertd.toml"
        path.write_text(f'[store]\npath = "{tmp_path / "alertd.db"}"\n{toml}')
        return load_config(path, env={})

    return make


@pytest.fixture
async def make_client(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    make_config: Callable[[str], Config],
    clock: ManualClock,
) -> AsyncIterator[MakeClient]:
    async def make(toml: str = "") -> TestClient[web.Request, web.Application]:
        return await aiohttp_client(build_app(make_config(toml), clock=clock))

    yield make
