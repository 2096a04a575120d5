"""HTTP routes: the native ingestion endpoint, the incident read API and health checks.

Handlers stay thin: decode -> parse (connectors) -> engine -> answer. Errors are raised, never
turned into responses here (`alertd.server.request_middleware` does that).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from alertd import codec
from alertd.errors import InputError, NotFoundError, PayloadTooLarge, UnsupportedMedia
from alertd.model import Priority, Status, key_text
from alertd.server import (
    CLOCK,
    CONFIG,
    ENGINE,
    INGEST_SOURCES,
    METRICS,
    READINESS,
    STORE,
    ReadinessCheck,
)
from alertd.store import IncidentQuery
from connectors.native import parse_results

MAX_PAGE = 1000
JSON_TYPES = ("application/json",)
# A readiness check that has not answered by then is a failed check, not a hung probe.
READINESS_TIMEOUT = 2.0
SOURCE = "api"  # the input name of the native JSON endpoint, in metrics and logs


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/results", post_results)
    app[INGEST_SOURCES]["/api/v1/results"] = SOURCE
    app.router.add_get("/api/v1/incidents", list_incidents)
    app.router.add_get("/api/v1/incidents/{id}", show_incident)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or InputError naming why it is not."""
    if request.content_type not in JSON_TYPES:
        shown = request.content_type or "none"
        raise UnsupportedMedia(f"Content-Type must be application/json, got {shown}")
    limit = request.app[CONFIG].server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body too large: limit is {limit} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"request body too large: limit is {limit} bytes") from exc
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise InputError(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise InputError(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc


async def post_results(request: web.Request) -> web.Response:
    payload = await read_json(request)
    config = request.app[CONFIG]
    now = request.app[CLOCK].now()
    results = parse_results(payload, now, config.server.max_results_per_request)
    await request.app[ENGINE].submit(results)
    request.app[METRICS].results_accepted(SOURCE, results)
    return web.json_response({"accepted": len(results)}, status=202)


async def list_incidents(request: web.Request) -> web.Response:
    q = request.query
    query = IncidentQuery(
        status=_enum(Status, q.get("status"), "status"),
        priority=_enum(Priority, q.get("priority"), "priority"),
        host=q.get("host") or None,
        limit=_int(q.get("limit"), "limit", default=100, low=1, high=MAX_PAGE),
        before_id=_int(q.get("before"), "before", default=None, low=1, high=None),
    )
    incidents = await request.app[STORE].list_incidents(query)
    more = len(incidents) == query.limit
    return web.json_response(
        {
            "incidents": [codec.incident_json(i, key_text=key_text(i.key)) for i in incidents],
            "next_before": incidents[-1].id if more and incidents else None,
        }
    )


async def show_incident(request: web.Request) -> web.Response:
    raw_id = request.match_info["id"]
    store = request.app[STORE]
    incident = await store.get_incident(int(raw_id)) if raw_id.isdigit() else None
    if incident is None:
        raise NotFoundError(f"incident {request.match_info['id']}")
    body = codec.incident_json(incident, key_text=key_text(incident.key))
    body["events"] = [codec.event_json(e) for e in await store.events(incident.id)]
    return web.json_response(body)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Every registered check, run concurrently: 200 if all pass, else 503 naming each failure."""
    checks = request.app[READINESS].copy()  # a check added meanwhile waits for the next probe
    answers = await asyncio.gather(*(_run_check(c) for c in checks))
    results = {c.name: answer or "ok" for c, answer in zip(checks, answers, strict=True)}
    problems = [f"{c.name}: {answer}" for c, answer in zip(checks, answers, strict=True) if answer]
    if problems or not checks:  # no checks registered yet: the app is still starting
        problems = problems or ["starting: no readiness checks registered yet"]
        body = {"status": "not ready", "problems": problems, "checks": results}
        return web.json_response(body, status=503)
    return web.json_response({"status": "ready", "checks": results})


async def _run_check(check: ReadinessCheck) -> str | None:
    try:
        return await asyncio.wait_for(check.probe(), READINESS_TIMEOUT)
    except TimeoutError:
        return f"no answer within {READINESS_TIMEOUT:g}s"
    except Exception as exc:  # a failing probe is the answer, not an error of /readyz
        return f"check failed: {type(exc).__name__}: {exc}"


def _enum(kind: Any, value: str | None, name: str) -> Any:
    if value is None or value == "":
        return None
    try:
        return kind(value.lower())
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise InputError(f"query parameter {name}: {value!r} is not one of {allowed}") from None


def _int(value: str | None, name: str, *, default: int | None, low: int, high: int | None) -> Any:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise InputError(f"{name}: {value!r} is not an integer") from None
    if number < low or (high is not None and number > high):
        upper = f"-{high}" if high is not None else " or more"
        raise InputError(f"{name}: {number} is out of range {low}{upper}")
    return number
