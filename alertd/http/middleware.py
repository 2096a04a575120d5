"""The request middleware: a request id on every answer and log line, the bearer-token check
for `/api/`, and the one place where errors become HTTP answers.

Errors are raised anywhere below (decoders, parsers, the engine) and answered here from the
attributes each error class carries (`alertd.errors`): status, headers, public message and the
reason refusals are counted under.
"""

from __future__ import annotations

import hmac
import itertools
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp.web_urldispatcher import AbstractRoute

from alertd.config import Scope
from alertd.errors import (
    AlertdError,
    AuthError,
    Forbidden,
    InputError,
    NrdpRefusal,
    PayloadTooLarge,
    StoreError,
)
from alertd.http.keys import CONFIG, INGEST_SOURCES, LIVE, METRICS, ROUTE_SCOPES
from connectors import nrdp

log: structlog.typing.FilteringBoundLogger = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Called with every answer the middleware gives or lets pass (a redirect too), before it is sent.
Finish = Callable[[web.Request, web.StreamResponse], None]

# An incoming X-Request-Id is kept if it looks like an id (a proxy's or the client's); anything
# else, e.g. text that would garble a log line, is replaced by our own.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: object
) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


def request_middleware(finish: Finish | None = None) -> Middleware:
    """The one middleware: a request id for logs and answer, the bearer-token check for `/api/`,
    and the error -> HTTP map; `finish` sees every answer last (the console's headers).

    One layer for all three: every middleware is another coroutine (and aiohttp adds one of
    its own) around each request on the hot path, a few microseconds each at thousands a second.
    """
    # Ids unique within this app's life ("<random>-<n>"), far cheaper than a uuid per request.
    prefix = f"{secrets.token_hex(4)}-"
    numbers = itertools.count(1)
    # The scope each route needs, looked up once per route instead of per request.
    scopes: dict[AbstractRoute, Scope | None] = {}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get("X-Request-Id")
        if incoming is not None and _REQUEST_ID.fullmatch(incoming):
            request_id = incoming
        else:
            request_id = f"{prefix}{next(numbers):x}"
        # No reset needed: the next request on this connection binds its own id first.
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            path = request.path
            if path.startswith("/api/") and path not in OWN_AUTH:
                _authorise(request, scopes)
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:  # redirects and the like are answers, not errors
                if finish is not None:
                    finish(request, exc)
                raise
            response = _refuse(request, _as_alertd_error(request, exc))
        except AlertdError as exc:
            response = _refuse(request, exc)
        except ConnectionResetError:
            raise  # the client went away: nobody to answer, and no bug of ours
        except Exception:  # a bug: logged with its traceback, answered in JSON like any error
            log.exception("request_failed", path=request.path)
            response = error_response(500, "internal error")
        response.headers["X-Request-Id"] = request_id
        if finish is not None:
            finish(request, response)
        return response

    return middleware


class _HttpRefusal(InputError):
    """An aiohttp refusal (404 no route, 405 method) in our tree, with aiohttp's status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _as_alertd_error(request: web.Request, exc: web.HTTPException) -> AlertdError:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        limit = request.app[CONFIG].server.max_body_bytes
        return PayloadTooLarge(f"request body too large: limit is {limit} bytes")
    return _HttpRefusal(exc.status, exc.reason)


def _refuse(request: web.Request, exc: AlertdError) -> web.Response:
    """Count a refused ingest request by its source and reason, then answer it."""
    source = request.app[INGEST_SOURCES].get(request.path)
    if source is not None:
        request.app[METRICS].ingest_rejected(source, exc.reason())
    return _error_answer(request, exc)


def _error_answer(request: web.Request, exc: AlertdError) -> web.Response:
    """The answer for an error: the one place errors become HTTP."""
    if isinstance(exc, NrdpRefusal):  # NRDP clients read their own shape, always with 200
        body, content_type = nrdp.refusal(exc)
        return web.Response(text=body, content_type=content_type)
    status = exc.status if isinstance(exc, _HttpRefusal) else exc.http_status
    if isinstance(exc, AuthError):
        # The message says what was wrong with the header, never what it contained.
        log.info("auth_failed", path=request.path, remote=request.remote, reason=exc.message)
    elif isinstance(exc, StoreError):
        log.error("store_unavailable", error=str(exc), path=request.path)
    elif status >= 500:
        log.error("request_failed", error=str(exc), path=request.path, status=status)
    details = [d.as_json() for d in exc.details] if isinstance(exc, InputError) else []
    extra: dict[str, object] = {"details": details} if details else {}
    headers = dict(exc.http_headers) or None
    return error_response(status, exc.public_message(), headers=headers, **extra)


# Paths under /api/ that check a credential of their own instead of a bearer token: the
# helpdesk's automation webhook sends its shared secret (alertd.http.helpdesk_events).
OWN_AUTH = frozenset({"/api/v1/helpdesk/events"})


def _authorise(request: web.Request, scopes: dict[AbstractRoute, Scope | None]) -> None:
    """Bearer-token check for `/api/`: a token, and the scope its route needs.

    Fails closed: with no tokens the check refuses everything, unless `auth.disabled = true`
    opened the API on purpose. Tokens are read from `LIVE` per request, so a reload that rotates
    them takes effect at once.
    """
    live = request.app[LIVE]
    if live.auth_disabled:
        return
    granted = _require_token(request.headers.get("Authorization", ""), live.tokens)
    route = request.match_info.route
    try:
        needed = scopes[route]
    except KeyError:
        needed = _needed_scope(request)
        if route.resource is not None:  # aiohttp makes a new route per 404/405: never kept
            scopes[route] = needed
    if needed is not None and needed not in granted:
        raise Forbidden(needed.value)


def _needed_scope(request: web.Request) -> Scope | None:
    """The scope the matched route needs; None for no route (any valid token gets the 404)."""
    resource = request.match_info.route.resource
    if resource is None:
        return None
    scope = request.app[ROUTE_SCOPES].get((request.method, resource.canonical))
    if scope is not None:
        return scope
    # A route missing from the table (HEAD of a GET) reads, or else needs the most: fail closed.
    return Scope.READ if request.method in ("GET", "HEAD") else Scope.OPERATE


def _require_token(
    header: str, tokens: Sequence[tuple[bytes, frozenset[Scope]]]
) -> frozenset[Scope]:
    """The scopes of the presented token, or AuthError saying what was wrong (never what)."""
    scheme, _, presented = header.partition(" ")
    if not header:
        raise AuthError("missing Authorization header: send 'Authorization: Bearer <token>'")
    if scheme.lower() != "bearer" or not presented.strip():
        raise AuthError("Authorization header must be 'Bearer <token>'")
    granted = token_scopes(presented.strip(), tokens)
    if granted is None:
        raise AuthError("invalid token")
    return granted


def token_scopes(
    presented: str, tokens: Sequence[tuple[bytes, frozenset[Scope]]]
) -> frozenset[Scope] | None:
    """The scopes of `presented` if it is one of `tokens` (compared in constant time), else None."""
    candidate = presented.encode("utf-8", "surrogatepass")
    granted: frozenset[Scope] | None = None
    # Compare with every token, without stopping early, so timing says nothing of which matched.
    for token, scopes in tokens:
        if hmac.compare_digest(candidate, token):
            granted = scopes
    return granted


def token_matches(presented: str, tokens: Sequence[bytes]) -> bool:
    """Whether `presented` is one of `tokens`, compared in constant time."""
    # aiohttp hands over header bytes that are not UTF-8 as lone surrogates (surrogateescape);
    # surrogatepass encodes any str, and what it makes of a surrogate matches no real token.
    candidate = presented.encode("utf-8", "surrogatepass")
    # Compare with every token, without stopping early, so timing says nothing of which matched.
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(candidate, token)
    return matched
