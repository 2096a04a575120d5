"""HTTP routes for heartbeats: `POST /api/v1/heartbeats/{name}` (a beat), `GET` the list,
`DELETE /api/v1/heartbeats/{name}` (retire one, so it is not missed any more)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from aiohttp import web

from alertd import codec
from alertd.durations import format_duration, parse_duration
from alertd.errors import InputError, NotFoundError
from alertd.heartbeats import HOST, Beat, Heartbeat, HeartbeatRemove
from alertd.http.decode import read_json
from alertd.http.keys import CLOCK, ENGINE, STORE

# The name becomes the service of the incident a miss opens: keep it readable on a ticket.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
MIN_INTERVAL = timedelta(seconds=10)
# A job that runs less than yearly is no heartbeat; the cap also keeps due times in range.
MAX_INTERVAL = timedelta(days=365)


async def post_beat(request: web.Request) -> web.Response:
    """A beat; the interval comes from the body `{"interval": "5m"}` or `?interval=5m`, and
    may be left out after the first beat."""
    name = request.match_info["name"]
    if not NAME.fullmatch(name):
        raise InputError(f"heartbeat name {name!r}: use letters, digits, '_', '.', ':', '-'")
    raw = request.query.get("interval")
    if raw is None and request.can_read_body:
        body = await read_json(request)
        if not isinstance(body, dict) or set(body) - {"interval"}:
            raise InputError('the body must be {"interval": "<duration>"} (or empty)')
        raw = body.get("interval")
    interval = _interval(raw)
    engine = request.app[ENGINE]
    if interval is None and engine.heartbeat(name) is None:
        raise InputError(f"heartbeat {name}: the first beat must give an interval, e.g. 5m")
    await engine.submit([Beat(name, interval, request.app[CLOCK].now())])
    beat = engine.heartbeat(name)
    if beat is None:  # a DELETE came first, or right after the beat, in the writer's order
        raise NotFoundError(f"heartbeat {name} (deleted while this beat was committed)")
    return web.json_response(heartbeat_json(beat))


async def list_heartbeats(request: web.Request) -> web.Response:
    found = await request.app[STORE].list_heartbeats()
    return web.json_response({"heartbeats": [heartbeat_json(h) for h in found]})


async def delete_heartbeat(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    engine = request.app[ENGINE]
    if engine.heartbeat(name) is None:
        raise NotFoundError(f"heartbeat {name}")
    await engine.submit([HeartbeatRemove(name)])
    return web.json_response({"deleted": name})


def heartbeat_json(heartbeat: Heartbeat) -> dict[str, Any]:
    return {
        "name": heartbeat.name,
        "key": f"{HOST}/{heartbeat.name}",
        "interval": format_duration(heartbeat.interval),
        "last_beat": codec.ts(heartbeat.last_beat),
        "due": codec.ts(heartbeat.due),
        "missed": heartbeat.missed,
    }


def _interval(raw: Any) -> timedelta | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InputError('interval: expected a duration string like "5m"')
    try:
        interval = parse_duration(raw)
    except ValueError as exc:
        raise InputError(f"interval: {exc}") from exc
    if interval < MIN_INTERVAL:
        raise InputError(f"interval: at least {format_duration(MIN_INTERVAL)}, got {raw!r}")
    if interval > MAX_INTERVAL:
        raise InputError(f"interval: at most {format_duration(MAX_INTERVAL)}, got {raw!r}")
    return interval
