"""HTTP routes of the outbox: ticket operations waiting, sent or dead-lettered, and the
re-drive of dead letters (`POST /api/v1/outbox/retry`) or of one dead or waiting operation
(`POST /api/v1/outbox/{id}/retry`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from alertd import codec
from alertd.errors import NotFoundError
from alertd.http.decode import MAX_ID, path_id, query_enum, query_int
from alertd.http.keys import ENGINE, STORE
from alertd.store import OutboxRow, OutboxState, Redrive, Store

MAX_PAGE = 1000


async def list_outbox(request: web.Request) -> web.Response:
    """Ticket operations, newest first; `state=dead` lists the dead letters."""
    state = query_enum(OutboxState, request.query.get("state"), "state")
    limit = query_int(request.query.get("limit"), "limit", default=100, low=1, high=MAX_PAGE)
    before = query_int(request.query.get("before"), "before", default=None, low=1, high=MAX_ID)
    store = request.app[STORE]
    ops = await store.ops(state, limit, before)
    stats = await store.outbox_stats()
    return web.json_response(
        {
            "operations": [op_json(op) for op in ops],
            "next_before": ops[-1].id if len(ops) == limit else None,
            "counts": {s.value: stats[s.value] for s in OutboxState},
        }
    )


async def retry_outbox(request: web.Request) -> web.Response:
    """Send again now: one dead or pending operation (`/outbox/{id}/retry`) or every dead
    letter (`/outbox/retry`)."""
    store = request.app[STORE]
    if "id" in request.match_info:
        raw = request.match_info["id"]
        number = path_id(raw)
        op = await store.op(number) if number is not None else None
        # A pending one may be waiting out its backoff after the cause was fixed: now, then.
        if op is None or op.state not in (OutboxState.DEAD, OutboxState.PENDING):
            raise NotFoundError(f"dead-lettered or pending operation {raw}")
        ops = [op]
    else:
        ops, before = [], None
        while True:  # every dead letter, a page at a time
            page = await store.ops(OutboxState.DEAD, MAX_PAGE, before)
            ops += page
            if len(page) < MAX_PAGE:
                break
            before = page[-1].id
    requeued, skipped = [], []
    for op in ops:
        reason = await superseded(store, op)
        if reason is None:
            requeued.append(op.id)
        else:
            skipped.append({"id": op.id, "reason": reason})
    await request.app[ENGINE].submit([Redrive(i) for i in requeued])
    return web.json_response({"requeued": requeued, "skipped": skipped})


async def superseded(store: Store, op: OutboxRow) -> str | None:
    """Why sending `op` now would undo newer news, if it would: an update or note of an
    incident whose later operations were delivered since (e.g. an old "resolve" after the
    ticket was reopened). Creates are never superseded: nothing after them could go out."""
    if op.op == "create":
        return None
    done = OutboxState.DONE
    later = [o for o in await store.ops_of(op.incident_id) if o.id > op.id and o.state is done]
    if later:
        return f"superseded: operation {later[-1].id} of the same incident was delivered after it"
    return None


def op_json(op: OutboxRow) -> dict[str, Any]:
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
