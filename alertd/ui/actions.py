"""What people do from the console (POST, from a form carrying the session's CSRF token):
ack and unack, escalate, silence, expire a silence, re-drive a dead letter.

Each goes the way its JSON API goes, with the same checks: the same engine input (`Notice`,
`SilenceChange`, `SilenceExpire`, `Redrive`) through `Engine.submit`, so it is committed with
its audit trail before the answer, and the same validation (a silence form becomes the body
the API would get). The audit trail names the console as the source and the form's author.
Each answers with a redirect back to the page it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from aiohttp import web

from alertd.errors import InputError, NotFoundError
from alertd.http.decode import path_id
from alertd.http.incidents import live_incident
from alertd.http.keys import ENGINE, STORE
from alertd.http.outbox import superseded
from alertd.http.silences import parse_silence
from alertd.model import Notice, NoticeKind
from alertd.silences import SilenceChange, SilenceExpire
from alertd.store import OutboxState, Redrive
from alertd.ui.console import actor, now_of, page

SOURCE = "console"  # what the audit trail records as the acknowledgement's source
MAX_TEXT = 2000


def _back(fields: Mapping[str, str], default: str) -> web.HTTPSeeOther:
    target = fields.get("back", "")
    ok = target.startswith("/ui/") and not target.startswith("/ui//")
    return web.HTTPSeeOther(target if ok else default)


def _text(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name, "").strip()
    if len(value) > MAX_TEXT:
        raise InputError(f"{name}: at most {MAX_TEXT} characters")
    return value


@page
async def acknowledge(request: web.Request) -> web.StreamResponse:
    """`do=ack` acknowledges (stops the escalation clock), `do=unack` withdraws it."""
    _, fields = await actor(request)
    incident = await live_incident(request)
    do = fields.get("do", "ack")
    if do not in ("ack", "unack"):
        raise InputError("do: expected ack or unack")
    kind = NoticeKind.ACKNOWLEDGED if do == "ack" else NoticeKind.UNACKNOWLEDGED
    notice = Notice(kind, incident.host, incident.service, now_of(request),
                    _text(fields, "author"), _text(fields, "comment"), False, SOURCE,
                    incident_id=incident.id)  # fmt: skip
    await request.app[ENGINE].submit([notice])
    raise _back(fields, f"/ui/incidents/{incident.id}")


@page
async def escalate(request: web.Request) -> web.StreamResponse:
    """The next escalation level now, with the reason (required, as in the API)."""
    _, fields = await actor(request)
    incident = await live_incident(request)
    reason = _text(fields, "reason")
    if not reason:
        raise InputError("reason: required (why this incident is escalated by hand)")
    notice = Notice(NoticeKind.ESCALATE, incident.host, incident.service, now_of(request),
                    _text(fields, "author"), reason, False, SOURCE,
                    incident_id=incident.id)  # fmt: skip
    await request.app[ENGINE].submit([notice])
    raise _back(fields, f"/ui/incidents/{incident.id}")


def silence_body(fields: Mapping[str, str]) -> dict[str, Any]:
    """The JSON API's silence body from the form: empty fields left out, labels one
    `name=pattern` per line."""
    body: dict[str, Any] = {}
    for name in ("host", "service", "duration", "comment", "author", "ends_at", "starts_at"):
        value = _text(fields, name)
        if value:
            body[name] = value
    labels: dict[str, str] = {}
    for n, line in enumerate(_text(fields, "labels").splitlines(), 1):
        if not line.strip():
            continue
        name, sep, pattern = line.partition("=")
        if not sep or not name.strip():
            raise InputError(f"labels, line {n}: expected name=pattern")
        labels[name.strip()] = pattern.strip()
    if labels:
        body["labels"] = labels
    return body


@page
async def create_silence(request: web.Request) -> web.StreamResponse:
    _, fields = await actor(request)
    now = now_of(request)
    engine = request.app[ENGINE]
    silence = parse_silence(silence_body(fields), now, silence_id=0)
    silence = replace(silence, id=engine.new_silence_id())  # no await since: ids never collide
    await engine.submit([SilenceChange(silence)])
    raise _back(fields, "/ui/silences")


@page
async def expire_silence(request: web.Request) -> web.StreamResponse:
    _, fields = await actor(request)
    raw = request.match_info["id"]
    number = path_id(raw)
    found = await request.app[STORE].get_silence(number) if number is not None else None
    if found is None:
        raise NotFoundError(f"silence {raw}")
    engine = request.app[ENGINE]
    if engine.silence(found.id) is not None:  # already over: nothing to do, as in the API
        await engine.submit([SilenceExpire(found.id)])
    raise _back(fields, "/ui/silences")


@page
async def redrive(request: web.Request) -> web.StreamResponse:
    """Send one dead letter again, unless newer news of its incident went out since."""
    _, fields = await actor(request)
    raw = request.match_info["id"]
    number = path_id(raw)
    store = request.app[STORE]
    op = await store.op(number) if number is not None else None
    if op is None or op.state is not OutboxState.DEAD:
        raise NotFoundError(f"dead-lettered operation {raw}")
    reason = await superseded(store, op)
    if reason is not None:
        raise InputError(f"operation {op.id} not re-driven: {reason}")
    await request.app[ENGINE].submit([Redrive(op.id)])
    raise _back(fields, f"/ui/incidents/{op.incident_id}")
