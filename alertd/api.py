"""HTTP routes: the native ingestion endpoint, the incident read API and health checks.

Handlers stay thin: decode -> parse (connectors) -> engine -> answer. Errors are raised, never
turned into responses here (`alertd.server.request_middleware` does that).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from alertd import codec, jsontext
from alertd.errors import (
    Conflict,
    InputError,
    NotFoundError,
    PayloadTooLarge,
    UnsupportedMedia,
)
from alertd.model import Incident, Notice, NoticeKind, Priority, Status, key_text
from alertd.server import (
    CLOCK,
    CONFIG,
    ENGINE,
    INGEST_SOURCES,
    LIVE,
    METRICS,
    READINESS,
    STORE,
    ReadinessCheck,
)
from alertd.store import IncidentQuery, OutboxRow, Redrive, Store
from connectors.native import parse_results

MAX_PAGE = 1000
MAX_ID = 2**63 - 1  # SQLite's INTEGER: a larger Python int cannot even be bound to a query
JSON_TYPES = ("application/json",)
# A readiness check that has not answered by then is a failed check, not a hung probe.
READINESS_TIMEOUT = 2.0
SOURCE = "api"  # the input name of the native JSON endpoint, in metrics and logs


def add_routes(app: web.Application) -> None:
    from alertd import heartbeat_api, inputs, silence_api  # they reuse read_json from here

    app.router.add_post("/api/v1/results", post_results)
    inputs.add_routes(app)
    app[INGEST_SOURCES]["/api/v1/results"] = SOURCE
    silence_api.add_routes(app)
    heartbeat_api.add_routes(app)
    app.router.add_get("/api/v1/incidents", list_incidents)
    app.router.add_get("/api/v1/incidents/{id}", show_incident)
    app.router.add_post("/api/v1/incidents/{id}/ack", acknowledge)
    app.router.add_delete("/api/v1/incidents/{id}/ack", acknowledge)
    app.router.add_post("/api/v1/incidents/{id}/escalate", escalate)
    app.router.add_get("/api/v1/outbox", list_outbox)
    app.router.add_post("/api/v1/outbox/retry", retry_outbox)
    app.router.add_post("/api/v1/outbox/{id}/retry", retry_outbox)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON (lone surrogates replaced: `alertd.jsontext`), or InputError
    naming why it is not."""
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
        return jsontext.loads(body)
    except UnicodeDecodeError as exc:
        raise InputError(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise InputError(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except jsontext.Unsupported as exc:
        raise InputError(f"JSON not accepted: {exc}") from exc


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
        before_id=_int(q.get("before"), "before", default=None, low=1, high=MAX_ID),
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
    number = path_id(raw_id)
    incident = await store.get_incident(number) if number is not None else None
    if incident is None:
        raise NotFoundError(f"incident {request.match_info['id']}")
    body = codec.incident_json(incident, key_text=key_text(incident.key))
    body["events"] = [codec.event_json(e) for e in await store.events(incident.id)]
    link = await store.ticket_of(incident.id)
    helpdesk = request.app[LIVE].config.helpdesk
    body["ticket"] = None
    if link is not None and helpdesk is not None:
        url = f"{helpdesk.url}/a/tickets/{link.ticket_id}"
        body["ticket"] = {"id": link.ticket_id, "url": url}
    body["ticket_operations"] = [_op_json(op) for op in await store.ops_of(incident.id)]
    return web.json_response(body)


async def acknowledge(request: web.Request) -> web.Response:
    """POST: someone is on it (stops the escalation clock); DELETE: nobody is, after all."""
    incident = await _live_incident(request)
    ack = request.method == "POST"
    body = await read_json(request) if request.can_read_body else {}
    author, comment = _text_field(body, "author"), _text_field(body, "comment")
    sticky = body.get("sticky", False) if isinstance(body, dict) else False
    if not isinstance(sticky, bool):
        raise InputError("sticky: expected true or false")
    kind = NoticeKind.ACKNOWLEDGED if ack else NoticeKind.UNACKNOWLEDGED
    now = request.app[CLOCK].now()
    notice = Notice(kind, incident.host, incident.service, now, author, comment, sticky, "api")
    return await _after_notice(request, notice)


async def escalate(request: web.Request) -> web.Response:
    """Relationship or customer escalation by hand: the next level now, with the reason."""
    incident = await _live_incident(request)
    body = await read_json(request)
    reason = _text_field(body, "reason")
    if not reason:
        raise InputError("reason: required (why this incident is escalated by hand)")
    now = request.app[CLOCK].now()
    notice = Notice(NoticeKind.ESCALATE, incident.host, incident.service, now,
                    _text_field(body, "author"), reason, False, "api")  # fmt: skip
    return await _after_notice(request, notice)


async def _live_incident(request: web.Request) -> Incident:
    raw = request.match_info["id"]
    live, number = None, path_id(raw)
    if number is not None:
        stored = await request.app[STORE].get_incident(number)
        if stored is not None:
            live = request.app[ENGINE].cached(stored.key)
            if live is None or live.id != stored.id or live.status is Status.RESOLVED:
                raise Conflict(f"incident {raw} is {stored.status.value}: nothing to act on")
    if live is None:
        raise NotFoundError(f"incident {raw}")
    return live


async def _after_notice(request: web.Request, notice: Notice) -> web.Response:
    await request.app[ENGINE].submit([notice])
    incident = request.app[ENGINE].cached(notice.key)
    assert incident is not None  # live a moment ago, and notices never end an incident
    return web.json_response(codec.incident_json(incident, key_text=key_text(incident.key)))


def _text_field(body: Any, name: str, limit: int = 4096) -> str:
    if not isinstance(body, dict):
        raise InputError("body: expected a JSON object")
    value = body.get(name, "")
    if not isinstance(value, str):
        raise InputError(f"{name}: expected a string")
    if len(value) > limit:
        raise InputError(f"{name}: longer than {limit} characters")
    return value.strip()


OUTBOX_STATES = ("pending", "done", "dead")


async def list_outbox(request: web.Request) -> web.Response:
    """Ticket operations, newest first; `state=dead` lists the dead letters."""
    state = request.query.get("state") or None
    if state is not None and state not in OUTBOX_STATES:
        raise InputError(
            f"query parameter state: {state!r} is not one of {', '.join(OUTBOX_STATES)}"
        )
    limit = _int(request.query.get("limit"), "limit", default=100, low=1, high=MAX_PAGE)
    before = _int(request.query.get("before"), "before", default=None, low=1, high=MAX_ID)
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
        number = path_id(raw)
        op = await store.op(number) if number is not None else None
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
    requeued, skipped = [], []
    for op in ops:
        reason = await _superseded(store, op)
        if reason is None:
            requeued.append(op.id)
        else:
            skipped.append({"id": op.id, "reason": reason})
    await request.app[ENGINE].submit([Redrive(i) for i in requeued])
    return web.json_response({"requeued": requeued, "skipped": skipped})


async def _superseded(store: Store, op: OutboxRow) -> str | None:
    """Why sending `op` now would undo newer news, if it would: an update or note of an
    incident whose later operations were delivered since (e.g. an old "resolve" after the
    ticket was reopened). Creates are never superseded: nothing after them could go out."""
    if op.op == "create":
        return None
    later = [o for o in await store.ops_of(op.incident_id) if o.id > op.id and o.state == "done"]
    if later:
        return f"superseded: operation {later[-1].id} of the same incident was delivered after it"
    return None


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


def path_id(raw: str) -> int | None:
    """The id in a URL path (`/incidents/{id}`), or None if it cannot name a stored row."""
    # isdigit() alone is true for "²" and other digits int() refuses; ASCII digits only.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(MAX_ID)):
        return None
    number = int(raw)
    return number if number <= MAX_ID else None


def _int(value: str | None, name: str, *, default: int | None, low: int, high: int) -> Any:
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()):
        raise InputError(f"{name}: {value[:40]!r} is not a whole number")
    # Compared as text first: int() of a long enough string is itself an error.
    number = int(value) if len(value) <= len(str(high)) else high + 1
    if not low <= number <= high:
        raise InputError(f"{name}: {value[:40]} is out of range {low}-{high}")
    return number
