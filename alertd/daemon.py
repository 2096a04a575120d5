"""Running the server as a process: bind, announce, wait for a signal, shut down cleanly."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from aiohttp import web

from alertd.clock import Clock
from alertd.config import Config
from alertd.server import build_app

log = structlog.get_logger(__name__)


@asynccontextmanager
async def serving(config: Config, *, clock: Clock | None = None) -> AsyncIterator[str]:
    """Serve until the block exits; yields the base URL actually bound (port 0 picks one)."""
    app = build_app(config, clock=clock)
    # No access log: one line per check result would drown everything else.
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.server.host, config.server.port, backlog=1024)
        await site.start()
        host, port = runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{port}"
    finally:
        # Stops accepting, lets in-flight requests finish, then runs cleanup_ctx (engine drains
        # what was submitted and commits, then the store closes).
        await runner.cleanup()


async def run(config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if not config.auth.tokens:
        log.warning("auth_disabled", hint="set auth.tokens_file or ALERTD_TOKENS to require tokens")
    async with serving(config) as url:
        log.info("listening", url=url, store=str(config.store.path))
        await stop.wait()
        log.info("shutting_down")
    log.info("stopped")
