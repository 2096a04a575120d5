"""The composition root: builds the aiohttp application, its route table, and the lifetime of
every component (store -> engine -> helpdesk dispatcher), with their readiness checks and
reload hooks.

`cleanup_ctx` owns the store and the engine (teardown runs iff setup finished, in reverse:
dispatcher -> engine -> store). Route handlers live in `alertd.http`; they reach components
through the keys of `alertd.http.keys`, which this module fills.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from alertd import change_log, version
from alertd.clock import Clock, SystemClock
from alertd.config import Config, HelpdeskConfig
from alertd.engine import BatchHook, BatchStats, Engine, Input
from alertd.errors import StoreError
from alertd.http import health, heartbeats, incidents, ingest, outbox, silences
from alertd.http.keys import (
    CLOCK,
    CONFIG,
    DISPATCHER,
    ENGINE,
    INGEST_SOURCES,
    LIVE,
    METRICS,
    READINESS,
    RELOAD_HOOKS,
    STORE,
    Live,
    ReadinessCheck,
    ReadinessProbe,
    ReloadHook,
)
from alertd.http.middleware import auth_middleware, request_middleware
from alertd.metrics import Metrics
from alertd.outbox import Dispatcher
from alertd.ratelimit import CallClass, RateLimiter
from alertd.store import Store, WriteBatch
from alertd.tickets import TicketPlanner
from connectors.freshdesk import FreshdeskClient

log: structlog.typing.FilteringBoundLogger = structlog.get_logger(__name__)


def add_routes(router: web.UrlDispatcher) -> None:
    """Every route of the daemon, in one table."""
    # Inputs (each answers only after its results are durably committed).
    router.add_post("/api/v1/results", ingest.post_results)
    router.add_post("/api/v1/nagios", ingest.post_nagios)
    router.add_post("/api/v1/alertmanager", ingest.post_alertmanager)
    for path in ("/nrdp", "/nrdp/"):  # outside /api/: NRDP checks its own token= field
        router.add_get(path, ingest.nrdp_request)
        router.add_post(path, ingest.nrdp_request)
    # Incidents, and what people do to them.
    router.add_get("/api/v1/incidents", incidents.list_incidents)
    router.add_get("/api/v1/incidents/{id}", incidents.show_incident)
    router.add_post("/api/v1/incidents/{id}/ack", incidents.acknowledge)
    router.add_delete("/api/v1/incidents/{id}/ack", incidents.acknowledge)
    router.add_post("/api/v1/incidents/{id}/escalate", incidents.escalate)
    # Maintenance windows and heartbeats.
    router.add_post("/api/v1/silences", silences.post_silence)
    router.add_get("/api/v1/silences", silences.list_silences)
    router.add_get("/api/v1/silences/{id}", silences.show_silence)
    router.add_delete("/api/v1/silences/{id}", silences.expire_silence)
    router.add_post("/api/v1/heartbeats/{name}", heartbeats.post_beat)
    router.add_get("/api/v1/heartbeats", heartbeats.list_heartbeats)
    router.add_delete("/api/v1/heartbeats/{name}", heartbeats.delete_heartbeat)
    # The helpdesk outbox.
    router.add_get("/api/v1/outbox", outbox.list_outbox)
    router.add_post("/api/v1/outbox/retry", outbox.retry_outbox)
    router.add_post("/api/v1/outbox/{id}/retry", outbox.retry_outbox)
    # Probes.
    router.add_get("/healthz", health.healthz)
    router.add_get("/readyz", health.readyz)


def build_app(
    config: Config, *, clock: Clock | None = None, registry: CollectorRegistry | None = None
) -> web.Application:
    """The app for `config`. Metrics go to `registry` (default: a fresh one for this app)."""
    app = web.Application(
        client_max_size=config.server.max_body_bytes,
        middlewares=[request_middleware(), auth_middleware],
    )
    app[CONFIG] = config
    app[LIVE] = Live(config)
    app[CLOCK] = clock or SystemClock()
    metrics = Metrics(CollectorRegistry() if registry is None else registry, version=version())
    app[METRICS] = metrics
    app[READINESS] = []
    app[RELOAD_HOOKS] = []
    app[INGEST_SOURCES] = dict(ingest.SOURCES)
    app.cleanup_ctx.append(_store_and_engine)
    add_routes(app.router)
    # No token: Prometheus scrapes it like the probes. It holds counts, never incident data;
    # expose the listener beyond loopback only to the monitoring network (README, "Metrics").
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    return app


def _batch_hook(metrics: Metrics) -> BatchHook:
    def on_batch(stats: BatchStats, write: WriteBatch, inputs: Sequence[Sequence[Input]]) -> None:
        # Runs in the writer task after the commit: a bug here must not stop the writer.
        try:
            metrics.observe_batch(stats, write)
            change_log.log_changes(write, inputs)
        except Exception:
            log.exception("batch_hook_failed")

    return on_batch


async def _store_and_engine(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    store = await Store.open(config.store.path, config.store.synchronous)
    try:
        metrics = app[METRICS]
        planner = None
        if config.helpdesk is not None:
            planner = TicketPlanner(
                config.helpdesk, config.lifecycle.recovery_hold, config.escalation
            )
        engine = Engine(
            store, config.lifecycle, app[CLOCK], on_batch=_batch_hook(metrics), planner=planner
        )
        await engine.start()
        app[STORE] = store
        app[ENGINE] = engine
        app[READINESS].append(ReadinessCheck("writer", _writer_probe(engine)))
        app[READINESS].append(ReadinessCheck("store", _store_probe(store)))
        app[RELOAD_HOOKS].append(_policy_hook(engine))
        metrics.watch(engine)
        try:
            if config.helpdesk is None or planner is None:
                yield
            else:
                async with _dispatching(app, store, engine, planner, config.helpdesk):
                    yield
        finally:
            metrics.watch(None)
            await engine.stop()
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def _dispatching(
    app: web.Application,
    store: Store,
    engine: Engine,
    planner: TicketPlanner,
    helpdesk: HelpdeskConfig,
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
        app[RELOAD_HOOKS].append(_helpdesk_hook(planner, client, dispatcher, limiter))
        app[READINESS].append(ReadinessCheck("helpdesk", _helpdesk_probe(dispatcher)))
        app[READINESS].append(ReadinessCheck("outbox", _outbox_probe(store, app[CLOCK])))
        dispatcher.start()
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


def _writer_probe(engine: Engine) -> ReadinessProbe:
    async def probe() -> str | None:
        return None if engine.running else "writer task is not running"

    return probe


def _store_probe(store: Store) -> ReadinessProbe:
    async def probe() -> str | None:
        try:
            await store.check_writable()
        except StoreError as exc:
            return str(exc)
        return None

    return probe


def _policy_hook(engine: Engine) -> ReloadHook:
    def apply(old: Config, new: Config) -> None:
        # The writer reads `policy` once per input between awaits, so a batch never mixes two.
        engine.reconfigure(new.lifecycle)

    return apply
