"""The HTTP server's own answers: requests aiohttp cannot parse, before any middleware runs.

aiohttp answers a malformed request (a control character in a header, a raw space in the URL, a
bad request line) from `RequestHandler.handle_error`, outside the application: in plain text
that repeats the parser's message, which quotes the offending bytes (an `Authorization` header,
token included), and it logs the same text with a traceback through the stdlib logger, once
per request. Anyone who can connect could fill the log that way, with lines that are not JSON.

`GuardedRunner` replaces that handler: a short JSON answer that names no byte of the request,
and one JSON log line per malformed request, at most `LOG_BURST` per `LOG_WINDOW` seconds, with
the count of the ones left out. aiohttp has no public hook for this (its middlewares never see a
request it could not parse), so the runner swaps the server's handler class.
"""

from __future__ import annotations

import json
import time
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log: structlog.typing.FilteringBoundLogger = structlog.get_logger(__name__)

LOG_BURST = 10
LOG_WINDOW = 60.0


class Throttle:
    """At most `burst` events per `window` seconds; counts the ones it drops."""

    def __init__(self, burst: int = LOG_BURST, window: float = LOG_WINDOW) -> None:
        self._burst = burst
        self._window = window
        self._started = time.monotonic()
        self._count = 0
        self.dropped = 0

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self._started >= self._window:
            self._started, self._count = now, 0
        self._count += 1
        if self._count > self._burst:
            self.dropped += 1
            return False
        return True

    def take_dropped(self) -> int:
        dropped, self.dropped = self.dropped, 0
        return dropped


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler, with its error answer and error log replaced."""

    __slots__ = ("throttle",)

    def __init__(self, manager: web.Server, *, throttle: Throttle, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.throttle = throttle  # the server's: one limit for all its connections

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # The exception's type is safe to log; its text quotes the request's bytes, so neither
        # it nor `message` goes anywhere.
        throttle = self.throttle
        if throttle.allow():
            log.warning(
                "bad_request" if status < 500 else "request_failed_in_server",
                remote=request.remote,
                status=status,
                error=type(exc).__name__ if exc is not None else None,
                suppressed=throttle.take_dropped(),
            )
        if request.writer.output_size > 0:  # as aiohttp: half an answer cannot be replaced
            raise ConnectionError("response already started; cannot answer the error")
        text = "malformed HTTP request" if status < 500 else "internal error"
        response = web.Response(
            status=status, text=json.dumps({"error": text}), content_type="application/json"
        )
        response.force_close()
        return response


class _GuardedServer(web.Server):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.throttle = Throttle()

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, throttle=self.throttle, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """`web.AppRunner` whose connections use `GuardedRequestHandler`."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()  # app startup; the server aiohttp would use
        kwargs: dict[str, Any] = dict(made._kwargs)
        return _GuardedServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **kwargs,
        )
