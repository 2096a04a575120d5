"""What the listener answers while the store loads: `/healthz` says the process is up, every
other path says "starting" with 503 and Retry-After.

A million open incidents take seconds to load, and systemd, load balancers and the tests poll
`/healthz` meanwhile. The daemon binds its socket first and serves this small app on it until
the real one is ready (alertd.daemon), so a probe gets an answer at once, and a sender is told
to come back instead of finding nobody listening.
"""

from __future__ import annotations

from aiohttp import web

RETRY_AFTER = "1"


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "starting": True})


async def _readyz(request: web.Request) -> web.Response:
    body = {"status": "not ready", "problems": ["starting: loading the store"], "checks": {}}
    return web.json_response(body, status=503, headers={"Retry-After": RETRY_AFTER})


async def _starting(request: web.Request) -> web.Response:
    return web.json_response(
        {"error": "starting: loading the store; try again shortly"},
        status=503,
        headers={"Retry-After": RETRY_AFTER},
    )


def starting_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_route("*", "/{tail:.*}", _starting)
    return app
