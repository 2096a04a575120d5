"""Turning request parts into values: the JSON or form body, ids in the path, query values.

Every failure is an `InputError` (or a subclass) naming the part and why; the middleware
answers it. Limits are enforced before a body is read whole.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from aiohttp import web

from alertd import jsontext
from alertd.errors import InputError, PayloadTooLarge, UnsupportedMedia
from alertd.http.keys import CONFIG

MAX_ID = 2**63 - 1  # SQLite's INTEGER: a larger Python int cannot even be bound to a query
JSON_TYPES = ("application/json",)
FORM = "application/x-www-form-urlencoded"

E = TypeVar("E", bound=Enum)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON (lone surrogates replaced: `alertd.jsontext`), or InputError
    naming why it is not."""
    # The plain header is compared first: parsing it (request.content_type) costs more than the
    # rest of this check, once per request, and nearly every client sends exactly this.
    plain = request.headers.get("Content-Type") == JSON_TYPES[0]
    if not plain and request.content_type not in JSON_TYPES:
        shown = request.content_type or "none"
        raise UnsupportedMedia(f"Content-Type must be application/json, got {shown}")
    limit = request.app[CONFIG].server.max_body_bytes
    length = request.content_length  # parsed from the header at each read: once
    if length is not None and length > limit:
        raise PayloadTooLarge(f"request body too large: limit is {limit} bytes")
    body = await read_body(request, limit)
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


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, at most `limit` bytes (PayloadTooLarge past it, counted as received:
    after decompression, and without a Content-Length too)."""
    content = request.content
    if content.is_eof():
        # All of it arrived with the head (a small request, nearly every one): take it without
        # `request.read()`'s two awaits and two copies. Read once; nothing reads it again.
        body = content.read_nowait()
    else:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise PayloadTooLarge(f"request body too large: limit is {limit} bytes") from exc
    if len(body) > limit:
        raise PayloadTooLarge(f"request body too large: limit is {limit} bytes")
    return body


async def read_form(request: web.Request) -> dict[str, str]:
    """A form body as UTF-8 whatever charset it declares, undecodable bytes replaced: plugin
    output in Latin-1 (or a bogus charset) must cost one character, not the notification."""
    body = await request.read()  # over max_body_bytes: the middleware answers 413
    # A repeated field: the last one wins. Percent-escapes that are not UTF-8 are replaced too.
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def path_id(raw: str) -> int | None:
    """The id in a URL path (`/incidents/{id}`), or None if it cannot name a stored row."""
    # isdigit() alone is true for "²" and other digits int() refuses; ASCII digits only.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(MAX_ID)):
        return None
    number = int(raw)
    return number if number <= MAX_ID else None


def query_enum(kind: type[E], value: str | None, name: str) -> E | None:
    """A query parameter naming a member of `kind` by value (any case); empty means none."""
    if value is None or value == "":
        return None
    try:
        return kind(value.lower())
    except ValueError:
        allowed = ", ".join(str(m.value) for m in kind)
        raise InputError(f"query parameter {name}: {value!r} is not one of {allowed}") from None


def query_int(value: str | None, name: str, *, default: int | None, low: int, high: int) -> Any:
    """A whole number in [low, high] from the query, or `default` when absent or empty."""
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()):
        raise InputError(f"{name}: {value[:40]!r} is not a whole number")
    # Compared as text first: int() of a long enough string is itself an error.
    number = int(value) if len(value) <= len(str(high)) else high + 1
    if not low <= number <= high:
        raise InputError(f"{name}: {value[:40]} is out of range {low}-{high}")
    return number


def text_field(body: Any, name: str, limit: int = 4096) -> str:
    """The string `name` of a JSON object body ("" when absent), stripped."""
    if not isinstance(body, dict):
        raise InputError("body: expected a JSON object")
    value = body.get(name, "")
    if not isinstance(value, str):
        raise InputError(f"{name}: expected a string")
    if len(value) > limit:
        raise InputError(f"{name}: longer than {limit} characters")
    return value.strip()
