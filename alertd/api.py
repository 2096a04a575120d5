"""HTTP routes: the native ingestion endpoint, the incident read API and health checks.

Handlers stay thin: decode -> parse (connectors) -> engine -> answer. Errors are raised, never
turned into responses here (`alertd.server.errors_middleware` does that).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from aiohttp import web

from alertd import codec
from alertd.errors import InputError, NotFoundError, PayloadTooLarge, UnsupportedMedia
from alertd.model import Priority, Status, key_text
from alertd.server import CLOCK, CONFIG, DISPATCHER, ENGINE, STORE
from alertd.store import IncidentQuery, OutboxRow, Redrive
from connectors.native import parse_results

MAX_PAGE = 1000
JSON_TYPES = ("application/json",)


def add_routes(app: web.Application) -> None:
    from alertd import heartbeat_api, inputs, silence_api  # they reuse read_json from here

    app.router.add_post("/api/v1/results", post_results)
    inputs.add_routes(app)
    silence_api.add_routes(app)
    heartbeat_api.add_routes(app)
    app.router.add_get("/api/v1/incidents", list_incidents)
    app.router.add_get("/api/v1/incidents/{id}", show_incident)
    app.router.add_get("/api/v1/outbox", list_outbox)
    app.router.add_post("/api/v1/outbox/retry", retry_outbox)
    app.router.add_post("/api/v1/outbox/{id}/retry", retry_outbox)
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
    link = await store.ticket_of(incident.id)
    helpdesk = request.app[CONFIG].helpdesk
    body["ticket"] = None
    if link is not None and helpdesk is not None:
        url = f"{helpdesk.url}/a/tickets/{link.ticket_id}"
        body["ticket"] = {"id": link.ticket_id, "url": url}
    body["ticket_operations"] = [_op_json(op) for op in await store.ops_of(incident.id)]
    return web.json_response(body)


OUTBOX_STATES = ("pending", "done", "dead")


async def list_outbox(request: web.Request) -> web.Response:
    """Ticket operations, newest first; `state=dead` lists the dead letters."""
    state = request.query.get("state") or None
    if state is not None and state not in OUTBOX_STATES:
        raise InputError(
            f"query parameter state: {state!r} is not one of {', '.join(OUTBOX_STATES)}"
        )
    limit = _int(request.query.get("limit"), "limit", default=100, low=1, high=MAX_PAGE)
    before = _int(request.query.get("before"), "before", default=None, low=1, high=None)
    store = request.app[STORE]
    ops = await store.ops(state, limit, before)
    stats = await store.outbox_stats()
    return web.json_response(
        {
            "operations": [_op_json(op) for op in ops],
            "next_before": ops[-1].id if len(ops) == limit else None,
            "counts": {k: stats[k] for k in OUTBOX_STATES},
        }
    )


async def retry_outbox(request: web.Request) -> web.Response:
    """Send dead letters again: one (`/outbox/{id}/retry`) or all (`/outbox/retry`)."""
    store = request.app[STORE]
    if "id" in request.match_info:
        raw = request.match_info["id"]
        op = await store.op(int(raw)) if raw.isdigit() else None
        if op is None or op.state != "dead":
            raise NotFoundError(f"dead-lettered operation {raw}")
        ops = [op]
    else:
        ops, before = [], None
        while True:  # every dead letter, a page at a time
            page = await store.ops("dead", MAX_PAGE, before)
            ops += page
            if len(page) < MAX_PAGE:
                break
            before = page[-1].id
    await request.app[ENGINE].submit([Redrive(op.id) for op in ops])
    return web.json_response({"requeued": [op.id for op in ops]})


def _op_json(op: OutboxRow) -> dict[str, Any]:
    return {
        "id": op.id,
        "incident_id": op.incident_id,
        "op": op.op,
        "state": op.state,
        "priority": op.priority,
        "attempts": op.attempts,
        "next_attempt_at": codec.ts(op.next_attempt_at),
        "created_at": codec.ts(op.created_at),
        "updated_at": codec.ts(op.updated_at),
        "last_error": op.last_error,
        "payload": op.payload,
    }


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    problems: list[str] = []
    if not request.app[ENGINE].running:
        problems.append("writer task is not running")
    try:
        await request.app[STORE].check_writable()
    except Exception as exc:  # any failure here is the answer, not an error of the probe
        problems.append(str(exc))
    if DISPATCHER in request.app:
        problems += await _helpdesk_problems(request)
    if problems:
        return web.json_response({"status": "not ready", "problems": problems}, status=503)
    return web.json_response({"status": "ready"})


# An operation pending longer than this means delivery is stuck (helpdesk down, key refused).
OUTBOX_STUCK = timedelta(minutes=15)


async def _helpdesk_problems(request: web.Request) -> list[str]:
    problems = []
    health = request.app[DISPATCHER].health
    if not health.authorised:
        problems.append(f"helpdesk refuses alertd's API key: {health.last_error}")
    oldest = (await request.app[STORE].outbox_stats())["oldest_pending"]
    now = request.app[CLOCK].now()
    if oldest is not None and now - oldest > OUTBOX_STUCK:
        age = int((now - oldest).total_seconds())
        problems.append(
            f"outbox stuck: oldest pending ticket operation is {age}s old "
            f"(last error: {health.last_error})"
        )
    return problems


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
