"""What every request passes before its endpoint, in order: injected fault, rate limit (the
account total, then the sub-limit of the request's operation class), Basic auth, Accept, route,
Content-Type; the rate-limit headers on every answer; the one place that turns `_Reject` into a
response; and the record of each request."""

from __future__ import annotations

import base64
import binascii
import json
import re
from http import HTTPStatus
from typing import Any, Final

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from alertd.sandbox.account import API, SandboxOptions
from alertd.sandbox.errors import _DropConnection, _error, _not_found, _Reject
from alertd.sandbox.state import SANDBOX, RequestRecord, Sandbox, _Fault, _RateWindow
from alertd.sandbox.validation import _include_items


@web.middleware
async def _front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record every request and answer it, or drop its connection when a handler asks to."""
    sandbox = request.app[SANDBOX]
    arrived = sandbox.now()
    status: int | None = None
    try:
        response = await _guarded(sandbox, request, handler)
        status = response.status
        return response
    except _DropConnection:
        # Closed before a byte of the answer is written: the client sees the server go away.
        # aiohttp then fails to write the placeholder below and ignores that as a disconnect.
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=500)
    finally:
        body = await _body_for_record(request)
        sandbox.requests.append(
            RequestRecord(request.method, request.path, dict(request.query), status, arrived, body)
        )


async def _guarded(sandbox: Sandbox, request: web.Request, handler: Handler) -> web.StreamResponse:
    """Faults, then the rate limit, then the transport rules, then the endpoint."""
    options = sandbox.options
    window = sandbox._window
    now = sandbox.now()
    window.roll(now)
    cost = 1 + options.include_cost * len(_include_items(request.query.get("include")))
    limit = options.rate_limit_per_minute
    fault = sandbox._take_fault()
    sub = _sub_window(sandbox, request, now)
    response: web.StreamResponse
    if fault is not None:
        # A failed request still spends credits, as on the real service.
        charged = min(cost, limit - window.used)
        window.used += charged
        response = _fault_response(fault)
        if fault.retry_after is not None or fault.status == 429:
            retry = fault.retry_after if fault.retry_after is not None else window.resets_in(now)
            response.headers[hdrs.RETRY_AFTER] = str(retry)
    elif window.used + cost > limit or (sub is not None and sub[0].used + cost > sub[1]):
        charged = 0
        # Whichever budget ran out says when it comes back.
        full = window if window.used + cost > limit else sub[0] if sub else window
        response = _error(
            429, "rate_limit_exceeded", "You have exceeded the limit of requests per minute"
        ).response()
        response.headers[hdrs.RETRY_AFTER] = str(full.resets_in(now))
    else:
        charged = cost
        window.used += cost
        if sub is not None:
            sub[0].used += cost
        response = await _endpoint(options, request, handler)
    response.headers["X-RateLimit-Total"] = str(limit)
    response.headers["X-RateLimit-Remaining"] = str(max(0, limit - window.used))
    response.headers["X-RateLimit-Used-CurrentRequest"] = str(charged)
    return response


# Which operation class a request draws on, for the per-class sub-limits (docs/protocols.md 1.9).
_CLASSES: Final = (
    ("POST", re.compile(rf"{API}/tickets"), "create"),
    ("PUT", re.compile(rf"{API}/tickets/\d+"), "update"),
    ("GET", re.compile(rf"{API}/(tickets|search/tickets|tickets/filter)"), "list"),
    ("GET", re.compile(rf"{API}/tickets/(archived/)?\d+"), "view"),
)


def _sub_window(
    sandbox: Sandbox, request: web.Request, now: float
) -> tuple[_RateWindow, int] | None:
    """The rolled one-minute window of the request's class and its limit, if it has one."""
    for method, path, kind in _CLASSES:
        if request.method == method and path.fullmatch(request.path):
            limit = sandbox.options.sub_limits.get(kind)
            if limit is None:
                return None
            window = sandbox._class_windows.setdefault(kind, _RateWindow())
            window.roll(now)
            return window, limit
    return None


def _fault_response(fault: _Fault) -> web.Response:
    if fault.garble == "html":
        page = "<html><body><h1>Please sign in</h1></body></html>"
        return web.Response(status=fault.status, text=page, content_type="text/html")
    if fault.garble == "no_id":
        return web.json_response({"message": "accepted"}, status=fault.status)
    if fault.garble == "charset":
        # Declared UTF-8, written in Latin-1: the bytes do not decode.
        raw = b'{"id": 1, "subject": "caf\xe9"}'
        return web.Response(
            status=fault.status, body=raw, content_type="application/json", charset="utf-8"
        )
    status = fault.status
    phrase = HTTPStatus(status).phrase
    if status >= 500:
        # A gateway in front of the API answers 5xx with a page, not JSON; clients must cope.
        page = f"<html><body><h1>{status} {phrase}</h1></body></html>"
        return web.Response(status=status, text=page, content_type="text/html")
    return _error(status, phrase.lower().replace(" ", "_"), phrase).response()


async def _endpoint(
    options: SandboxOptions, request: web.Request, handler: Handler
) -> web.StreamResponse:
    try:
        _check_transport(options, request)
        return await handler(request)
    except _Reject as rejected:
        return rejected.response()
    except web.HTTPException as exc:
        return _from_http_exception(exc)


def _check_transport(options: SandboxOptions, request: web.Request) -> None:
    if not _authorised(request.headers.get(hdrs.AUTHORIZATION), options.api_key):
        raise _error(401, "invalid_credentials", "You have to be logged in to perform this action.")
    accept = request.headers.get(hdrs.ACCEPT)
    if accept is not None and not _accepts_json(accept):
        raise _error(406, "invalid_accept_header", "This request only supports application/json")
    route_problem = request.match_info.http_exception
    if route_problem is not None:
        raise route_problem
    if (
        request.method in (hdrs.METH_POST, hdrs.METH_PUT)
        and request.content_type != "application/json"
        # A bodiless PUT (restore) has no type to check; a bodiless one that needs a body
        # fails as invalid JSON instead.
        and (request.body_exists or not request.path.endswith("/restore"))
    ):
        raise _error(
            415,
            "invalid_content_type",
            f"Content-Type is {request.content_type}. It should be application/json",
        )


def _authorised(header: str | None, api_key: str) -> bool:
    # Decoded by hand: aiohttp 3.14 deprecates BasicAuth, and warnings are errors in our tests.
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    login, colon, _password = decoded.partition(":")
    return bool(colon) and login == api_key  # the password is ignored, as on the real service


def _accepts_json(accept: str) -> bool:
    types = [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]
    return not types or any(t in ("application/json", "*/*") for t in types)


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    if exc.status == 404:
        return _not_found().response()
    headers: dict[str, str] = {}
    if hdrs.ALLOW in exc.headers:
        headers[hdrs.ALLOW] = exc.headers[hdrs.ALLOW]
    code = HTTPStatus(exc.status).phrase.lower().replace(" ", "_")
    return _Reject(exc.status, {"code": code, "message": exc.reason}, headers).response()


async def _body_for_record(request: web.Request) -> Any:
    if not request.body_exists:
        return None
    try:
        raw = await request.read()  # cached if the handler read it already
    except (web.HTTPException, ConnectionError):
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")
