"""The aiohttp application: resource ownership, authentication, request ids, the one error ->
HTTP map, and the registries other components plug into (readiness checks, reload hooks).

Routes live in `alertd.api`; this module wires them to an app whose `cleanup_ctx` owns the
store and the engine (teardown runs iff setup finished), and turns every `AlertdError` into a
JSON answer in exactly one middleware. Settings a SIGHUP reload may change (tokens, lifecycle
policy) are read through `LIVE` on every use, never captured at build time.
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from alertd import incident_log, version
from alertd.clock import Clock, SystemClock
from alertd.config import Config, HelpdeskConfig
from alertd.engine import BatchHook, BatchStats, Engine, Input
from alertd.errors import (
    AlertdError,
    AuthError,
    InputError,
    NotFoundError,
    NrdpRefusal,
    PayloadTooLarge,
    StoreError,
    UnsupportedMedia,
)
from alertd.metrics import Metrics
from alertd.outbox import Dispatcher
from alertd.ratelimit import RateLimiter
from alertd.store import Store, WriteBatch
from alertd.tickets import TicketPlanner
from connectors import nrdp
from connectors.freshdesk import FreshdeskClient

log = structlog.get_logger(__name__)


class Live:
    """The reloadable view of the configuration: replaced whole by a reload, read per use."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tokens: tuple[bytes, ...] = ()
        self.set(config)

    def set(self, config: Config) -> None:
        self.config = config
        self.tokens = tuple(t.encode() for t in config.auth.tokens)


# A readiness probe answers None when fine, or the reason it is not (shown in /readyz).
ReadinessProbe = Callable[[], Awaitable[str | None]]
# A reload hook applies the reloadable parts of (old, new) config to its component.
ReloadHook = Callable[[Config, Config], None]


@dataclass(frozen=True, slots=True)
class ReadinessCheck:
    name: str
    probe: ReadinessProbe


CONFIG = web.AppKey("config", Config)  # the configuration the app was built with
LIVE = web.AppKey("live", Live)  # the configuration in force now (after reloads)
CLOCK = web.AppKey("clock", Clock)
STORE = web.AppKey("store", Store)
ENGINE = web.AppKey("engine", Engine)
METRICS = web.AppKey("metrics", Metrics)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)  # only with a [helpdesk]
# Components append their checks here (in their cleanup_ctx); /readyz runs them all.
READINESS: web.AppKey[list[ReadinessCheck]] = web.AppKey("readiness")
# Components append a hook here to take their part of a reloaded configuration.
RELOAD_HOOKS: web.AppKey[list[ReloadHook]] = web.AppKey("reload_hooks")
# Ingest routes: path -> input source name, so refusals are counted per source.
INGEST_SOURCES: web.AppKey[dict[str, str]] = web.AppKey("ingest_sources")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# An incoming X-Request-Id is kept if it looks like an id (a proxy's or the client's); anything
# else, e.g. text that would garble a log line, is replaced by our own.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: object
) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


def _reject_reason(exc: BaseException) -> str:
    if isinstance(exc, AuthError):
        return "unauthorized"
    if isinstance(exc, NrdpRefusal) and "TOKEN" in exc.code:  # NO TOKEN, BAD TOKEN, ...
        return "unauthorized"
    if isinstance(exc, PayloadTooLarge | web.HTTPRequestEntityTooLarge):
        return "too_large"
    if isinstance(exc, UnsupportedMedia):
        return "unsupported_media"
    if isinstance(exc, StoreError):
        return "store_unavailable"
    return "invalid"


def request_middleware() -> Middleware:
    """The outermost middleware: a request id for logs and answer, and the error -> HTTP map.

    One middleware for both: every layer adds a call to each request on the hot path.
    """
    # Ids unique within this app's life ("<random>-<n>"), far cheaper than a uuid per request.
    prefix = f"{secrets.token_hex(4)}-"
    numbers = itertools.count(1)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get("X-Request-Id", "")
        request_id = incoming if _REQUEST_ID.fullmatch(incoming) else f"{prefix}{next(numbers):x}"
        # No reset needed: the next request on this connection binds its own id first.
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise  # redirects and the like are answers, not errors
            response = _error_answer(request, exc)
            _count_refusal(request, exc)
        except AlertdError as exc:
            response = _error_answer(request, exc)
            _count_refusal(request, exc)
        except ConnectionResetError:
            raise  # the client went away: nobody to answer, and no bug of ours
        except Exception:  # a bug: logged with its traceback, answered in JSON like any error
            log.exception("request_failed", path=request.path)
            response = error_response(500, "internal error")
        response.headers["X-Request-Id"] = request_id
        return response

    return middleware


def _count_refusal(request: web.Request, exc: BaseException) -> None:
    source = request.app[INGEST_SOURCES].get(request.path)
    if source is not None:
        request.app[METRICS].ingest_rejected(source, _reject_reason(exc))


def _error_answer(request: web.Request, exc: AlertdError | web.HTTPException) -> web.Response:
    """The JSON answer for an error: the one place errors become HTTP."""
    if isinstance(exc, NrdpRefusal):  # NRDP clients read their own shape, always with 200
        body, content_type = nrdp.refusal(exc)
        return web.Response(text=body, content_type=content_type)
    if isinstance(exc, InputError):
        details = [d.as_json() for d in exc.details]
        response = (
            error_response(exc.status, exc.message, details=details)
            if details
            else error_response(exc.status, exc.message)
        )
        if isinstance(exc, AuthError):
            # The message says what was wrong with the header, never what it contained.
            log.info("auth_failed", path=request.path, remote=request.remote, reason=exc.message)
            response.headers["WWW-Authenticate"] = 'Bearer realm="alertd"'
        return response
    if isinstance(exc, NotFoundError):
        return error_response(404, str(exc))
    if isinstance(exc, StoreError):
        log.error("store_unavailable", error=str(exc), path=request.path)
        return error_response(
            503,
            "could not commit to the store; nothing from this request was accepted, retry",
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        limit = request.app[CONFIG].server.max_body_bytes
        return error_response(413, f"request body too large: limit is {limit} bytes")
    if isinstance(exc, web.HTTPException):
        return error_response(exc.status, exc.reason)
    log.error("request_failed", error=str(exc), path=request.path)
    return error_response(500, "internal error")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer-token check for `/api/`; no tokens configured = open (the daemon warns at start).

    Tokens are read from `LIVE` per request, so a reload that rotates them takes effect at once.
    """
    secrets = request.app[LIVE].tokens
    if secrets and request.path.startswith("/api/"):
        _require_token(request.headers.get("Authorization", ""), secrets)
    return await handler(request)


def _require_token(header: str, secrets: Sequence[bytes]) -> None:
    scheme, _, presented = header.partition(" ")
    if not header:
        raise AuthError("missing Authorization header: send 'Authorization: Bearer <token>'")
    if scheme.lower() != "bearer" or not presented.strip():
        raise AuthError("Authorization header must be 'Bearer <token>'")
    if not token_matches(presented.strip(), secrets):
        raise AuthError("invalid token")


def token_matches(presented: str, secrets: Sequence[bytes]) -> bool:
    """Whether `presented` is one of `secrets`, compared in constant time."""
    # aiohttp hands over header bytes that are not UTF-8 as lone surrogates (surrogateescape);
    # surrogatepass encodes any str, and what it makes of a surrogate matches no real token.
    candidate = presented.encode("utf-8", "surrogatepass")
    # Compare with every token, without stopping early, so timing says nothing of which matched.
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(candidate, secret)
    return matched


def build_app(
    config: Config, *, clock: Clock | None = None, registry: CollectorRegistry | None = None
) -> web.Application:
    """The app for `config`. Metrics go to `registry` (default: a fresh one for this app)."""
    from alertd import api  # routes import this module's keys

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
    app[INGEST_SOURCES] = {}
    app.cleanup_ctx.append(_store_and_engine)
    api.add_routes(app)
    # No token: Prometheus scrapes it like the probes. It holds counts, never incident data;
    # expose the listener beyond loopback only to the monitoring network (README, "Metrics").
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    return app


def _batch_hook(metrics: Metrics) -> BatchHook:
    def on_batch(stats: BatchStats, write: WriteBatch, inputs: Sequence[Sequence[Input]]) -> None:
        # Runs in the writer task after the commit: a bug here must not stop the writer.
        try:
            metrics.observe_batch(stats, write)
            incident_log.log_changes(write, inputs)
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
        limiter = RateLimiter(helpdesk.rate_limit_per_minute)
        client = FreshdeskClient(session, helpdesk, limiter, metrics=app[METRICS])
        dispatcher = Dispatcher(
            store, engine, client, planner, helpdesk, app[CLOCK], metrics=app[METRICS]
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
        planner.config, planner.escalation = new.helpdesk, new.escalation
        client.reconfigure(new.helpdesk)
        dispatcher.reconfigure(new.helpdesk)
        limiter.set_budget(new.helpdesk.rate_limit_per_minute)

    return apply


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
        engine.policy = new.lifecycle

    return apply
