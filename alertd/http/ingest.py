"""HTTP routes of every input: alertd's native results, NRDP, Nagios/Opsview macro sets and
Alertmanager webhooks.

Thin: decode -> parse (connectors) -> `engine.accept` (returns once durable: in the inbox) ->
answer in the peer's terms. NRDP lives outside `/api/`, so the bearer-token
middleware does not apply: it checks its own `token=` field against `[nrdp]` tokens.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from datetime import datetime

from aiohttp import web

from alertd.errors import NrdpRefusal, UnsupportedMedia
from alertd.http.answers import accepted
from alertd.http.decode import FORM, read_form, read_json
from alertd.http.keys import CLOCK, CONFIG, ENGINE, LIVE, METRICS
from alertd.http.middleware import token_matches
from alertd.model import CheckResult, Notice
from connectors import nrdp
from connectors.alertmanager import parse_webhook
from connectors.nagios import parse_payload
from connectors.native import parse_results

NATIVE = "api"  # the input name of the native JSON endpoint, in metrics and logs
NRDP_USAGE = "alertd NRDP endpoint: cmd=hello, cmd=submitcheck or cmd=submitcmd with token=\n"


# Refusals on these paths are counted per input (alertd_ingest_rejected_total).
SOURCES = {
    "/api/v1/results": NATIVE,
    "/nrdp": "nrdp",
    "/nrdp/": "nrdp",
    "/api/v1/nagios": "nagios",
    "/api/v1/alertmanager": "alertmanager",
}


async def post_results(request: web.Request) -> web.Response:
    payload = await read_json(request)
    app = request.app  # a property that walks the match info: read once per request
    now = app[CLOCK].now()
    results = parse_results(payload, now, app[CONFIG].server.max_results_per_request)
    await app[ENGINE].accept(results, received=now)
    app[METRICS].results_accepted(NATIVE, results)
    return accepted(len(results))


async def nrdp_request(request: web.Request) -> web.Response:
    """NRDP: the token is checked before the body is decoded, the number of fields is capped,
    and a large body is decoded and parsed in a worker thread, so no request (least of all one
    with a wrong token) holds the event loop for long."""
    body = await request.read() if request.method == "POST" else b""
    query = request.rel_url.raw_query_string
    head = nrdp.peek(query, body)
    fmt = nrdp.reply_format(head)
    cmd = nrdp.first(head, "cmd").lower()
    if not cmd:
        return web.Response(text=NRDP_USAGE, content_type="text/plain")
    if cmd == "hello":  # answered without a token, as NRDP does
        return _answer(nrdp.hello(fmt))
    _check_nrdp_token(request, nrdp.first(head, "token"), fmt)
    if cmd not in ("submitcheck", "submitcmd", "submitrawcmd"):
        return web.Response(
            text="No command specified or request handler", content_type="text/plain"
        )
    limit = request.app[CONFIG].server.max_results_per_request
    fields = nrdp.too_many_fields(query, body, limit)
    if fields is not None:
        code = "BAD COMMAND" if cmd != "submitcheck" else "BAD XML"
        raise NrdpRefusal(code, f"too many form fields: {fields}", fmt)
    now = request.app[CLOCK].now()
    parse = functools.partial(_parse_nrdp, cmd, query, body, now, limit)
    # Small bodies (the usual few checks) inline; a thread hop costs more than parsing them.
    items = parse() if len(body) <= INLINE_PARSE_BYTES else await asyncio.to_thread(parse)
    await request.app[ENGINE].accept(items, received=now)
    request.app[METRICS].results_accepted("nrdp", items)
    if cmd == "submitcheck":
        return _answer(nrdp.processed(fmt, len(items)))
    return _answer(nrdp.reply(fmt, 0, "OK"))


# NRDP bodies larger than this are decoded and parsed off the event loop.
INLINE_PARSE_BYTES = 64 * 1024


def _parse_nrdp(
    cmd: str, query: str, body: bytes, now: datetime, limit: int
) -> Sequence[CheckResult | Notice]:
    """The whole form, decoded and parsed (pure; runs in a thread for large bodies)."""
    # Undecodable bytes (a plugin printing Latin-1) must not cost the whole batch.
    form = nrdp.decode_form(query, body.decode("utf-8", "replace"))
    if cmd == "submitcheck":
        return nrdp.parse_submitcheck(form, now, limit)
    return nrdp.parse_submitcmd(form, now, limit)


def _check_nrdp_token(request: web.Request, token: str, fmt: str) -> None:
    """NRDP's order: a missing token first, then a server without tokens, then a wrong one."""
    if not token:
        raise NrdpRefusal("NO TOKEN", "", fmt)
    tokens = request.app[LIVE].config.nrdp.tokens  # a reload rotates them at once
    if not tokens:
        raise NrdpRefusal("NO TOKENS", "no NRDP tokens configured ([nrdp] in alertd's config)", fmt)
    if not token_matches(token, [t.encode() for t in tokens]):
        raise NrdpRefusal("BAD TOKEN", "", fmt)


def _answer(reply: tuple[str, str]) -> web.Response:
    body, content_type = reply
    return web.Response(text=body, content_type=content_type)


async def post_nagios(request: web.Request) -> web.Response:
    if request.content_type == FORM:
        payload: object = await read_form(request)
    elif request.content_type == "application/json":
        payload = await read_json(request)
    else:
        shown = request.content_type or "none"
        raise UnsupportedMedia(f"Content-Type must be application/json or {FORM}, got {shown}")
    config = request.app[CONFIG]
    now = request.app[CLOCK].now()
    items = parse_payload(payload, now, config.server.max_results_per_request)
    await request.app[ENGINE].accept(items, received=now)
    request.app[METRICS].results_accepted("nagios", items)
    return accepted(len(items))


async def post_alertmanager(request: web.Request) -> web.Response:
    """200 only once durable; Alertmanager retries 5xx (a failed commit) and drops 4xx."""
    payload = await read_json(request)
    config = request.app[LIVE].config  # the label mapping is reloadable
    now = request.app[CLOCK].now()
    results, ignored = parse_webhook(
        payload, config.alertmanager, now, config.server.max_results_per_request
    )
    await request.app[ENGINE].accept(results, received=now)
    request.app[METRICS].results_accepted("alertmanager", results)
    request.app[METRICS].alerts_ignored(ignored)
    return web.json_response({"accepted": len(results), "ignored": ignored})
