"""Health: `/healthz` (the process answers) and `/readyz` (every registered readiness check
passes: writer, store, and with a helpdesk its key and the outbox's age; it names the store)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from alertd.http.keys import READINESS, STORE, ReadinessCheck

# A readiness check that has not answered by then is a failed check, not a hung probe.
READINESS_TIMEOUT = 2.0


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Every registered check, run concurrently: 200 if all pass, else 503 naming each failure."""
    checks = request.app[READINESS].copy()  # a check added meanwhile waits for the next probe
    answers = await asyncio.gather(*(_run_check(c) for c in checks))
    results = {c.name: answer or "ok" for c, answer in zip(checks, answers, strict=True)}
    problems = [f"{c.name}: {answer}" for c, answer in zip(checks, answers, strict=True) if answer]
    # Which database this daemon uses (kind, file or URL without a password, PostgreSQL's lease).
    store = request.app.get(STORE)
    where = {"store": store.describe()} if store is not None else {}
    if problems or not checks:  # no checks registered yet: the app is still starting
        problems = problems or ["starting: no readiness checks registered yet"]
        body = {"status": "not ready", "problems": problems, "checks": results, **where}
        return web.json_response(body, status=503)
    return web.json_response({"status": "ready", "checks": results, **where})


async def _run_check(check: ReadinessCheck) -> str | None:
    try:
        return await asyncio.wait_for(check.probe(), READINESS_TIMEOUT)
    except TimeoutError:
        return f"no answer within {READINESS_TIMEOUT:g}s"
    except Exception as exc:  # a failing probe is the answer, not an error of /readyz
        return f"check failed: {type(exc).__name__}: {exc}"
