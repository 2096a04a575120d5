"""The aiohttp application: resource ownership, authentication, and the one error -> HTTP map.

Routes live in `alertd.api`; this module wires them to an app whose `cleanup_ctx` owns the
store and the engine (teardown runs iff setup finished), and turns every `AlertdError` into a
JSON answer in exactly one middleware.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import aiohttp
import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from alertd.clock import Clock, SystemClock
from alertd.config import Config, HelpdeskConfig
from alertd.engine import Engine
from alertd.errors import (
    AlertdError,
    AuthError,
    InputError,
    NotFoundError,
    NrdpRefusal,
    StoreError,
)
from alertd.outbox import Dispatcher
from alertd.ratelimit import RateLimiter
from alertd.store import Store
from alertd.tickets import TicketPlanner
from connectors import nrdp
from connectors.freshdesk import FreshdeskClient

log = structlog.get_logger(__name__)

CONFIG = web.AppKey("config", Config)
CLOCK = web.AppKey("clock", Clock)
STORE = web.AppKey("store", Store)
ENGINE = web.AppKey("engine", Engine)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: object
) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except NrdpRefusal as exc:
        body, content_type = nrdp.refusal(exc)
        return web.Response(text=body, content_type=content_type)
    except InputError as exc:
        details = [d.as_json() for d in exc.details]
        response = (
            error_response(exc.status, exc.message, details=details)
            if details
            else error_response(exc.status, exc.message)
        )
        if isinstance(exc, AuthError):
            response.headers["WWW-Authenticate"] = 'Bearer realm="alertd"'
        return response
    except NotFoundError as exc:
        return error_response(404, str(exc))
    except StoreError as exc:
        log.error("store_unavailable", error=str(exc), path=request.path)
        return error_response(
            503,
            "could not commit to the store; nothing from this request was accepted, retry",
            headers={"Retry-After": "5"},
        )
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONFIG].server.max_body_bytes
        return error_response(413, f"request body too large: limit is {limit} bytes")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error_response(exc.status, exc.reason)
        raise
    except AlertdError as exc:
        log.error("request_failed", error=str(exc), path=request.path)
        return error_response(500, "internal error")


def auth_middleware(tokens: Sequence[str]) -> Middleware:
    """Bearer-token check for `/api/`; no tokens configured = open (the daemon warns at start)."""
    secrets = [t.encode() for t in tokens]

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if secrets and request.path.startswith("/api/"):
            _require_token(request.headers.get("Authorization", ""), secrets)
        return await handler(request)

    return middleware


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
    candidate = presented.encode()
    # Compare with every token, without stopping early, so timing says nothing of which matched.
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(candidate, secret)
    return matched


def build_app(config: Config, *, clock: Clock | None = None) -> web.Application:
    from alertd import api  # routes import this module's keys

    app = web.Application(
        client_max_size=config.server.max_body_bytes,
        middlewares=[errors_middleware, auth_middleware(config.auth.tokens)],
    )
    app[CONFIG] = config
    app[CLOCK] = clock or SystemClock()
    app.cleanup_ctx.append(_store_and_engine)
    api.add_routes(app)
    return app


async def _store_and_engine(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    store = await Store.open(config.store.path, config.store.synchronous)
    try:
        planner = None
        if config.helpdesk is not None:
            planner = TicketPlanner(
                config.helpdesk, config.lifecycle.recovery_hold, config.escalation
            )
        engine = Engine(store, config.lifecycle, app[CLOCK], planner=planner)
        await engine.start()
        app[STORE] = store
        app[ENGINE] = engine
        try:
            if config.helpdesk is None or planner is None:
                yield
            else:
                async with _dispatching(app, store, engine, planner, config.helpdesk):
                    yield
        finally:
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
        client = FreshdeskClient(session, helpdesk, limiter)
        dispatcher = Dispatcher(store, engine, client, planner, helpdesk, app[CLOCK])
        app[DISPATCHER] = dispatcher
        dispatcher.start()
        try:
            yield
        finally:
            # Before the engine stops: the dispatcher records its last outcomes through it.
            await dispatcher.stop()
