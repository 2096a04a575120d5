"""The composition root: builds the aiohttp application, its route table, and the lifetime of
every component (store -> engine -> helpdesk dispatcher), with their readiness checks and
reload hooks.

`cleanup_ctx` owns the store and the engine (teardown runs iff setup finished, in reverse:
dispatcher -> engine -> store). Route handlers live in `alertd.http`; they reach components
through the keys of `alertd.http.keys`, which this module fills.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from alertd import change_log, logs, version
from alertd.clock import Clock, SystemClock
from alertd.config import Config, HelpdeskConfig, Scope
from alertd.engine import BatchHook, BatchStats, Engine, Input, Retention
from alertd.errors import StoreError
from alertd.http import health, heartbeats, helpdesk_events, incidents, ingest, outbox, silences
from alertd.http.keys import (
    CLOCK,
    CONFIG,
    DISPATCHER,
    ENGINE,
    INGEST_SOURCES,
    LIVE,
    METRICS,
    RATE_LIMITER,
    READINESS,
    RELOAD_HOOKS,
    ROUTE_SCOPES,
    STORE,
    Live,
    ReadinessCheck,
    ReadinessProbe,
    ReloadHook,
)
from alertd.http.middleware import Handler, request_middleware
from alertd.inbox import Inbox
from alertd.inbox_file import InboxFile
from alertd.metrics import Metrics, exposition
from alertd.nagios_ack import NagiosAcknowledger
from alertd.outbox import Dispatcher
from alertd.ratelimit import CallClass, RateLimiter
from alertd.store import SqliteStore, Store, WriteBatch
from alertd.tickets import TicketPlanner
from alertd.ui import actions as ui_actions
from alertd.ui import console
from alertd.ui import views as ui
from alertd.wallshift import ENV, wall_from_env
from connectors.freshdesk import FreshdeskClient

if TYPE_CHECKING:  # PostgreSQL's modules load only when a store url is set
    from alertd.journal import Leadership

log: structlog.typing.FilteringBoundLogger = structlog.get_logger(__name__)


def _settled_first(handler: Handler) -> Handler:
    """Every route but ingest and the probes: what it reads or acts on includes every result
    acknowledged before it (they may still wait in the inbox, alertd.inbox)."""

    @functools.wraps(handler)
    async def settled(request: web.Request) -> web.StreamResponse:
        engine = request.app.get(ENGINE)
        if engine is not None and engine.backlog:
            await engine.settled()
        return await handler(request)

    return settled


def add_routes(router: web.UrlDispatcher, scopes: dict[tuple[str, str], Scope]) -> None:
    """Every route of the daemon, in one table, with the token scope each needs (`scopes`)."""
    I, R, O = Scope.INGEST, Scope.READ, Scope.OPERATE  # noqa: E741 (one letter keeps a table)

    def route(
        method: str, path: str, handler: Handler, scope: Scope | None, *, settle: bool = True
    ) -> None:
        router.add_route(method, path, _settled_first(handler) if settle else handler)
        if scope is not None:
            scopes[(method, path)] = scope

    # Inputs (each answers once its results are durable: in the inbox, alertd.inbox).
    route("POST", "/api/v1/results", ingest.post_results, I, settle=False)
    route("POST", "/api/v1/nagios", ingest.post_nagios, I, settle=False)
    route("POST", "/api/v1/alertmanager", ingest.post_alertmanager, I, settle=False)
    for path in ("/nrdp", "/nrdp/"):  # outside /api/: NRDP checks its own token= field
        route("GET", path, ingest.nrdp_request, None, settle=False)
        route("POST", path, ingest.nrdp_request, None, settle=False)
    # Incidents, and what people do to them.
    route("GET", "/api/v1/incidents", incidents.list_incidents, R)
    route("GET", "/api/v1/incidents/{id}", incidents.show_incident, R)
    route("POST", "/api/v1/incidents/{id}/ack", incidents.acknowledge, O)
    route("DELETE", "/api/v1/incidents/{id}/ack", incidents.acknowledge, O)
    route("POST", "/api/v1/incidents/{id}/escalate", incidents.escalate, O)
    # Maintenance windows and heartbeats (a beat is what a job sends: ingest).
    route("POST", "/api/v1/silences", silences.post_silence, O)
    route("GET", "/api/v1/silences", silences.list_silences, R)
    route("GET", "/api/v1/silences/{id}", silences.show_silence, R)
    route("DELETE", "/api/v1/silences/{id}", silences.expire_silence, O)
    route("POST", "/api/v1/heartbeats/{name}", heartbeats.post_beat, I)
    route("GET", "/api/v1/heartbeats", heartbeats.list_heartbeats, R)
    route("DELETE", "/api/v1/heartbeats/{name}", heartbeats.delete_heartbeat, O)
    # The helpdesk outbox.
    route("GET", "/api/v1/outbox", outbox.list_outbox, R)
    route("POST", "/api/v1/outbox/retry", outbox.retry_outbox, O)
    route("POST", "/api/v1/outbox/{id}/retry", outbox.retry_outbox, O)
    # The helpdesk's automation: an agent changed a ticket (its own shared secret, no token).
    route("POST", "/api/v1/helpdesk/events", helpdesk_events.post_event, None)
    # The web console (alertd.ui): pages, then what people do from them. Outside /api/: the
    # console signs people in with a token and checks what it allows itself (alertd.ui.session).
    for method, path, handler in (
        ("GET", "/ui", ui.to_board),
        ("GET", "/ui/", ui.show_board),
        ("GET", "/ui/incidents/{id}", ui.show_incident),
        ("GET", "/ui/silences", ui.show_silences),
        ("GET", "/ui/silences/new", ui.new_silence),
        ("GET", "/ui/heartbeats", ui.show_heartbeats),
        ("GET", "/ui/outbox", ui.show_outbox),
        ("GET", "/ui/history", ui.show_history),
        ("GET", "/ui/noisiest", ui.show_noisiest),
        ("GET", "/ui/login", ui.login_form),
        ("POST", "/ui/login", ui.login),
        ("POST", "/ui/logout", ui.logout),
        ("POST", "/ui/incidents/{id}/ack", ui_actions.acknowledge),
        ("POST", "/ui/incidents/{id}/escalate", ui_actions.escalate),
        ("POST", "/ui/silences", ui_actions.create_silence),
        ("POST", "/ui/silences/{id}/expire", ui_actions.expire_silence),
        ("POST", "/ui/outbox/{id}/retry", ui_actions.redrive),
    ):
        route(method, path, handler, None)
    router.add_static("/ui/static", console.STATIC)
    # Probes.
    route("GET", "/healthz", health.healthz, None, settle=False)
    route("GET", "/readyz", health.readyz, None, settle=False)


def _system_clock() -> SystemClock:
    wall = wall_from_env()
    if wall is None:
        return SystemClock()
    log.warning("test_wall_clock", hint=f"{ENV} is set: this daemon's wall clock is shifted by "
                "the offset in that file (for tests only)")  # fmt: skip
    return SystemClock(wall=wall)


def build_app(
    config: Config, *, clock: Clock | None = None, registry: CollectorRegistry | None = None
) -> web.Application:
    """The app for `config`. Metrics go to `registry` (default: a fresh one for this app)."""
    app = web.Application(
        client_max_size=config.server.max_body_bytes,
        middlewares=[request_middleware(finish=console.headers)],
    )
    app[CONFIG] = config
    app[LIVE] = Live(config)
    app[CLOCK] = clock or _system_clock()
    metrics = Metrics(CollectorRegistry() if registry is None else registry, version=version())
    app[METRICS] = metrics
    app[READINESS] = []
    app[RELOAD_HOOKS] = []
    app[INGEST_SOURCES] = dict(ingest.SOURCES)
    app[ROUTE_SCOPES] = {}
    app.cleanup_ctx.append(_store_and_engine)
    console.install(app)
    add_routes(app.router, app[ROUTE_SCOPES])
    # No token: Prometheus scrapes it like the probes. It holds counts, never incident data;
    # expose the listener beyond loopback only to the monitoring network (README, "Metrics").
    app.router.add_get(
        "/metrics", make_aiohttp_handler(exposition(metrics.registry, labelled_node(config)))
    )
    return app


def _batch_hook(metrics: Metrics, acker: NagiosAcknowledger | None = None) -> BatchHook:
    def on_batch(stats: BatchStats, write: WriteBatch, inputs: Sequence[Sequence[Input]]) -> None:
        # Runs in the writer task after the commit: a bug here must not stop the writer.
        try:
            metrics.observe_batch(stats, write)
            change_log.log_changes(write, inputs)
            if acker is not None:
                for link in write.tickets:
                    if link.created:  # only queued here: the worker writes to Nagios
                        acker.ticket_created(link.incident_id, link.ticket_id)
        except Exception:
            log.exception("batch_hook_failed")

    return on_batch


def node_name(config: Config) -> str:
    """This daemon's name: `server.node`, else the host's name."""
    return config.server.node or socket.gethostname()


def labelled_node(config: Config) -> str | None:
    """The node label on the metrics: where it is named, or where daemons share a store."""
    if config.server.node is None and config.store.url is None:
        return None
    return node_name(config)


async def open_store(config: Config) -> Store:
    """The store the configuration names: PostgreSQL with `store.url`, else the SQLite file."""
    if config.store.url is None:
        return await SqliteStore.open(config.store.path, config.store.synchronous)
    # Imported here: an SQLite installation never loads the PostgreSQL driver.
    from alertd.store_pg import PgStore

    # A standby when another daemon leads (docs/architecture.md, "Beyond one machine").
    return await PgStore.open(
        config.store.url, config.store.password, node=node_name(config),
        lease=config.store.lease, standby=True, on_lost=_lease_lost,
    )  # fmt: skip


def _lease_lost(reason: str) -> None:
    """The leader's lease is gone: another daemon leads now. Every write of this one is fenced
    off already; it ends at once (exit 1), and systemd's Restart= brings it back as a standby.
    Nothing answered 202 is lost: all of it is committed (or in the journal)."""
    log.critical("lease_lost_exiting", reason=reason)
    logs.flush()
    os._exit(1)


async def _store_and_engine(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    store = await open_store(config)
    inbox_file: InboxFile | None = None
    try:
        metrics = app[METRICS]
        planner = None
        if config.helpdesk is not None:
            planner = TicketPlanner(
                config.helpdesk, config.lifecycle.recovery_hold, config.escalation
            )
        acker = None
        if config.helpdesk is not None and config.nagios.ack_on_ticket:
            acker = NagiosAcknowledger(config.nagios, config.helpdesk.url, store, app[CLOCK])
            acker.start()
            app[RELOAD_HOOKS].append(_nagios_hook(acker))
        # SQLite acknowledges ingest from its inbox (PostgreSQL: once applied, or journaled
        # by a standby). Opened even with `inbox_backlog = 0`: a start applies what an
        # earlier run left there.
        inbox = None
        if isinstance(store, SqliteStore):
            applied = await store.inbox_applied()
            inbox_file = await InboxFile.open(store.path, config.store.synchronous, applied)
            inbox = Inbox(inbox_file, store.inbox_applied)
        engine = Engine(
            store, config.lifecycle, app[CLOCK], on_batch=_batch_hook(metrics, acker),
            planner=planner,
            retention=Retention(
                config.store.retention, config.store.retention_chunk,
                config.store.retention_interval,
            ),
            inbox=inbox, max_backlog=config.store.inbox_backlog,
        )  # fmt: skip
        leadership = None
        try:
            if config.store.url is None:
                await engine.start()
            else:
                from alertd.journal import Leadership
                from alertd.store_pg import PgStore

                assert isinstance(store, PgStore)
                leadership = Leadership(store, engine, config.store.lease, app[CLOCK])
                await leadership.start()
        except BaseException:
            if acker is not None:
                await acker.stop(grace=0)
            raise
        app[STORE] = store
        app[ENGINE] = engine
        app[READINESS].append(ReadinessCheck("writer", _writer_probe(engine, leadership)))
        app[READINESS].append(ReadinessCheck("store", _store_probe(store, engine)))
        app[RELOAD_HOOKS].append(_policy_hook(engine))
        metrics.watch(engine)
        try:
            if config.helpdesk is None or planner is None:
                yield
            else:
                async with _dispatching(
                    app, store, engine, planner, config.helpdesk, leadership
                ):
                    yield
        finally:
            metrics.watch(None)
            if leadership is not None:  # nothing is submitted to the engine after this
                await leadership.stop()
            await engine.stop()
            if acker is not None:  # after the engine: its last commits may queue an ack
                await acker.stop()
    finally:
        if inbox_file is not None:
            await inbox_file.close()
        await store.close()


@contextlib.asynccontextmanager
async def _dispatching(
    app: web.Application,
    store: Store,
    engine: Engine,
    planner: TicketPlanner,
    helpdesk: HelpdeskConfig,
    leadership: Leadership | None = None,
) -> AsyncIterator[None]:
    """The helpdesk side: one ClientSession for the process, the client, the dispatcher."""
    timeout = aiohttp.ClientTimeout(total=helpdesk.timeout.total_seconds())
    async with aiohttp.ClientSession(timeout=timeout, raise_for_status=False) as session:
        limiter = RateLimiter(helpdesk.rate_limit_per_minute, classes=_classes(helpdesk))
        client = FreshdeskClient(session, helpdesk, limiter, metrics=app[METRICS])
        dispatcher = Dispatcher(
            store,
            engine,
            client,
            planner,
            helpdesk,
            app[CLOCK],
            metrics=app[METRICS],
            limiter=limiter,
        )
        app[DISPATCHER] = dispatcher
        app[RATE_LIMITER] = limiter
        app[RELOAD_HOOKS].append(_helpdesk_hook(planner, client, dispatcher, limiter))
        app[READINESS].append(ReadinessCheck("helpdesk", _helpdesk_probe(dispatcher)))
        app[READINESS].append(ReadinessCheck("outbox", _outbox_probe(store, app[CLOCK])))
        # On a shared store only the leader delivers: a standby starts once it leads.
        if leadership is None or leadership.leader:
            dispatcher.start()
        else:
            leadership.on_leader.append(dispatcher.start)
        try:
            yield
        finally:
            # Before the engine stops: the dispatcher records its last outcomes through it.
            await dispatcher.stop()


def _helpdesk_hook(
    planner: TicketPlanner, client: FreshdeskClient, dispatcher: Dispatcher, limiter: RateLimiter
) -> ReloadHook:
    def apply(old: Config, new: Config) -> None:
        if new.helpdesk is None:
            # Turning tickets off needs a restart; until then keep sending what was queued.
            log.warning("reload_helpdesk_kept", reason="[helpdesk] removed: restart to stop")
            return
        # Templates, fields, budget, intervals and the escalation policy apply to what is
        # planned and sent from now on; operations already queued keep what they were given.
        planner.reconfigure(new.helpdesk, new.escalation)
        client.reconfigure(new.helpdesk)
        dispatcher.reconfigure(new.helpdesk)
        limiter.reconfigure(new.helpdesk.rate_limit_per_minute, _classes(new.helpdesk))

    return apply


def _classes(helpdesk: HelpdeskConfig) -> dict[CallClass, int]:
    return {CallClass(name): limit for name, limit in helpdesk.class_limits.items()}


# An operation pending longer than this means delivery is stuck (helpdesk down, key refused).
OUTBOX_STUCK = timedelta(minutes=15)


def _helpdesk_probe(dispatcher: Dispatcher) -> ReadinessProbe:
    async def probe() -> str | None:
        health = dispatcher.health
        if not health.authorised:
            return f"helpdesk refuses alertd's API key: {health.last_error}"
        if not health.reachable:
            return f"helpdesk cannot be reached: {health.last_error}"
        return None

    return probe


def _outbox_probe(store: Store, clock: Clock) -> ReadinessProbe:
    async def probe() -> str | None:
        oldest = (await store.outbox_stats())["oldest_pending"]
        age = clock.now() - oldest if oldest is not None else timedelta(0)
        if age > OUTBOX_STUCK:
            return f"stuck: the oldest pending ticket operation is {int(age.total_seconds())}s old"
        return None

    return probe


def _writer_probe(engine: Engine, leadership: Leadership | None = None) -> ReadinessProbe:
    async def probe() -> str | None:
        if leadership is not None and not leadership.leader and engine.forward is not None:
            return None  # a standby: it forwards into the journal, the leader writes
        return None if engine.running else "writer task is not running"

    return probe


def _store_probe(store: Store, engine: Engine) -> ReadinessProbe:
    """The store answers on the read-only connection, and the writer's last commit worked.

    Never a transaction on the writer's connection: a probe must not be able to fail a commit.
    """

    async def probe() -> str | None:
        try:
            await store.check_readable()
        except StoreError as exc:
            return str(exc)
        if engine.commit_error is not None:
            return f"the last commit failed: {engine.commit_error}"
        return None

    return probe


def _nagios_hook(acker: NagiosAcknowledger) -> ReloadHook:
    def apply(old: Config, new: Config) -> None:
        # Turning it on needs a restart (the worker starts with the app); off, file, author
        # and sources apply to the next acknowledgement.
        if new.helpdesk is not None:
            acker.reconfigure(new.nagios, new.helpdesk.url)

    return apply


def _policy_hook(engine: Engine) -> ReloadHook:
    def apply(old: Config, new: Config) -> None:
        # The writer reads `policy` once per input between awaits, so a batch never mixes two.
        engine.reconfigure(new.lifecycle)

    return apply
