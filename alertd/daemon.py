"""Running the server as a process: bind, tell systemd, serve, reload on SIGHUP, stop cleanly.

The order matters to systemd (`Type=notify`): READY=1 goes out only once the listener is
bound and the store is open; WATCHDOG=1 is sent from the event loop for the whole run;
SIGHUP is bracketed by RELOADING=1 and READY=1 (`Type=notify-reload`); SIGTERM/SIGINT send
STOPPING=1, stop accepting, let in-flight requests finish, commit what is queued, close.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import structlog
from aiohttp import web

from alertd import logs
from alertd import reload as reloading
from alertd.app import build_app
from alertd.clock import Clock
from alertd.config import Config
from alertd.http.keys import ENGINE
from alertd.http.server import GuardedRunner
from alertd.http.starting import starting_app
from alertd.sdnotify import Notifier, extend_start, watchdog, watchdog_interval

log: structlog.typing.FilteringBoundLogger = structlog.get_logger(__name__)

# In-flight requests get this long to finish at shutdown; below systemd's TimeoutStopSec=30s
# so that the commit of what they queued and the store's close still fit.
SHUTDOWN_TIMEOUT = 15.0
# Connections the kernel queues for the listener (also while the starting app hands over).
BACKLOG = 1024
# How often the STATUS= line (active incidents) is refreshed.
STATUS_INTERVAL = 30.0


@asynccontextmanager
async def serving(config: Config, *, clock: Clock | None = None) -> AsyncIterator[str]:
    """Serve until the block exits; yields the base URL actually bound (port 0 picks one)."""
    async with serving_app(build_app(config, clock=clock), config) as url:
        yield url


@asynccontextmanager
async def serving_app(app: web.Application, config: Config) -> AsyncIterator[str]:
    """Serve `app` (built from `config`) until the block exits; yields the bound base URL."""
    # No access log: one line per check result would drown everything else.
    # Guarded: malformed requests get a short JSON 400 and a throttled JSON log line, never
    # aiohttp's plain-text echo of the request (`alertd.http.server`).
    runner = GuardedRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
    )
    # Bound first: while the store loads (seconds, with a million open incidents) the socket
    # answers `/healthz` and tells everything else to come back (alertd.http.starting). A
    # second daemon on the same port fails here, before it opens anything.
    sock = _listen(config.server.host, config.server.port)
    try:
        await _setup_answering_meanwhile(runner, sock)
    except BaseException:
        sock.close()
        raise
    try:
        site = web.SockSite(runner, sock, backlog=BACKLOG)
        await site.start()
        host, port = runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{port}"
    finally:
        # Stops accepting, lets in-flight requests finish, then runs cleanup_ctx (engine drains
        # what was submitted and commits, then the store closes).
        await runner.cleanup()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    sock.setblocking(False)
    return sock


async def _setup_answering_meanwhile(runner: web.AppRunner, sock: socket.socket) -> None:
    """`runner.setup()` (the store opens, the incidents load, the writer starts) while the
    starting app answers on a duplicate of `sock`; connections that arrive as one hands over
    to the other wait in the socket's backlog."""
    starting = GuardedRunner(starting_app(), access_log=None, handle_signals=False,
                             shutdown_timeout=0.5)  # fmt: skip
    await starting.setup()
    try:
        await web.SockSite(starting, sock.dup(), backlog=BACKLOG).start()
        await runner.setup()  # runs cleanup_ctx: the store is open and the writer runs after this
    finally:
        await starting.cleanup()


async def run(config: Config, env: Mapping[str, str]) -> None:
    """The daemon: serve `config` until SIGTERM/SIGINT; `env` is the process environment
    (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID; token sources on reload)."""
    notifier = Notifier.from_env(env)
    logs.set_changes_level(config.log.changes)
    stop = asyncio.Event()
    hup = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, hup.set)
    if config.auth.disabled:
        # Only ever on purpose: without this key, no token at all is a configuration error.
        log.warning("auth_disabled", hint="auth.disabled = true: anyone who reaches the listener "
                    "can use the API; configure tokens to require them")  # fmt: skip
    try:
        # Pings start before the store opens: a slow migration must not look like a hang.
        async with watchdog(notifier, watchdog_interval(env, os.getpid())):
            app = build_app(config)
            starting = asyncio.create_task(
                extend_start(notifier, "starting: opening the store, loading incidents"),
                name="alertd-starting",
            )
            try:
                async with serving_app(app, config) as url:
                    starting.cancel()
                    log.info("listening", url=url, store=config.store.where)
                    notifier.ready(_status(app, url))
                    await _serve(app, config, url, notifier, stop, hup, env)
                    log.info("shutting_down")
                    notifier.stopping("stopping: finishing requests, committing queued results")
            finally:
                starting.cancel()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        notifier.close()
    log.info("stopped")
    logs.flush()  # at exit too; here so that "stopped" is out before the process ends


async def _serve(
    app: web.Application,
    config: Config,
    url: str,
    notifier: Notifier,
    stop: asyncio.Event,
    hup: asyncio.Event,
    env: Mapping[str, str],
) -> None:
    """Wait for a stop signal; meanwhile reload on SIGHUP and keep STATUS= current."""
    # What the start built (modules, the app, the loaded incidents) lives until exit: out of
    # the cyclic GC's sight, so that a full collection walks only what came after, not the
    # whole heap (tens of ms of the loop each time).
    gc.collect()
    gc.freeze()
    while not stop.is_set():
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(hup.wait())]
        try:
            await asyncio.wait(waiters, timeout=STATUS_INTERVAL, return_when="FIRST_COMPLETED")
        finally:
            for waiter in waiters:
                waiter.cancel()
            # Cancelled tasks are awaited: nothing is left pending when the loop closes.
            await asyncio.gather(*waiters, return_exceptions=True)
        if stop.is_set():
            return
        if hup.is_set():
            hup.clear()
            notifier.reloading("reloading configuration")
            report = await reloading.reload(app, config.source, env)
            outcome = "reloaded" if report.applied else "reload FAILED, previous config kept"
            notifier.ready(f"{outcome}; {_status(app, url)}")
        else:
            notifier.status(_status(app, url))


def _status(app: web.Application, url: str) -> str:
    engine = app[ENGINE]
    return f"listening on {url}; {engine.active_incidents} active incidents, {engine.queued} queued"
