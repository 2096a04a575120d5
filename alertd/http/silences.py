"""HTTP routes for maintenance windows: `POST/GET /api/v1/silences`, `DELETE .../{id}`.

The body of a POST is validated whole; every problem is named by field, like the native
results API (400 with `details`). The engine stores the silence and applies it in the same
commit, so the answer comes after both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from alertd.codec import wire_time
from alertd.durations import parse_duration
from alertd.errors import InputError, ItemProblem, NotFoundError
from alertd.http.decode import path_id, read_json
from alertd.http.keys import CLOCK, ENGINE, STORE
from alertd.policy import Pattern
from alertd.silences import (
    DAYS,
    Silence,
    SilenceChange,
    SilenceExpire,
    Weekly,
    to_document,
    weekly,
)

FIELDS = ("host", "service", "labels", "starts_at", "ends_at", "duration", "author", "comment",
          "recurring")  # fmt: skip
RECURRING_FIELDS = ("days", "start", "duration", "timezone")
MAX_WINDOW = timedelta(days=7)
# Starts and ends at most this far ahead: later is a typo, and near year 9999 every date
# computation (the next weekly occurrence, an end from a duration) would overflow.
HORIZON = timedelta(days=36525)
_HORIZON_TEXT = "more than 100 years ahead"


async def post_silence(request: web.Request) -> web.Response:
    payload = await read_json(request)
    now = request.app[CLOCK].now()
    engine = request.app[ENGINE]
    silence = replace(parse_silence(payload, now, silence_id=0), id=engine.new_silence_id())
    await engine.submit([SilenceChange(silence)])
    return web.json_response(silence_json(silence, now), status=201)


async def list_silences(request: web.Request) -> web.Response:
    """Active and future silences, newest first; `all=1` adds the expired ones."""
    now = request.app[CLOCK].now()
    every = request.query.get("all", "") in ("1", "true", "yes")
    found = await request.app[STORE].list_silences(None if every else now)
    if not every:
        found = [s for s in found if not s.is_expired(now)]
    return web.json_response({"silences": [silence_json(s, now) for s in found]})


async def show_silence(request: web.Request) -> web.Response:
    silence = await _find(request)
    return web.json_response(silence_json(silence, request.app[CLOCK].now()))


async def expire_silence(request: web.Request) -> web.Response:
    """End a silence now (idempotent: an expired one is answered as it is)."""
    silence = await _find(request)
    engine = request.app[ENGINE]
    now = request.app[CLOCK].now()
    if engine.silence(silence.id) is not None:
        await engine.submit([SilenceExpire(silence.id)])
        silence = await _find(request)
    return web.json_response(silence_json(silence, now))


async def _find(request: web.Request) -> Silence:
    raw = request.match_info["id"]
    number = path_id(raw)
    silence = await request.app[STORE].get_silence(number) if number is not None else None
    if silence is None:
        raise NotFoundError(f"silence {raw}")
    return silence


def silence_json(silence: Silence, now: datetime) -> dict[str, Any]:
    change = silence.next_change(now)
    return {
        **to_document(silence),
        "state": silence.state(now),
        "next_change": None if change is None else change.isoformat().replace("+00:00", "Z"),
    }


# -- validation ----------------------------------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.items: list[ItemProblem] = []

    def add(self, name: str, message: str) -> None:
        self.items.append(ItemProblem(None, name, message))


def parse_silence(payload: Any, now: datetime, *, silence_id: int) -> Silence:
    """A Silence from a POST body, or InputError naming every bad field."""
    if not isinstance(payload, dict):
        raise InputError("a silence must be a JSON object")
    problems = _Problems()
    for name in payload:
        if name not in FIELDS:
            problems.add(name, f"unknown field; allowed: {', '.join(FIELDS)}")
    host = _pattern(payload.get("host"), "host", problems)
    service = _pattern(payload.get("service"), "service", problems)
    labels = _labels(payload, problems)
    if host is None and service is None and not labels and not problems.items:
        problems.add("host", "a silence needs at least one matcher (host, service or labels)")
    author = _text(payload, "author", problems, required=True)
    comment = _text(payload, "comment", problems, required=True)
    starts_at = _time(payload, "starts_at", problems, now) or now
    recurring = _recurring(payload.get("recurring"), problems)
    ends_at = _end(payload, starts_at, now, problems, required=recurring is None)
    if problems.items:
        count = len(problems.items)
        raise InputError(
            f"invalid silence ({count} problem{'' if count == 1 else 's'}); nothing was stored",
            problems.items,
        )
    return Silence(
        id=silence_id,
        starts_at=starts_at,
        ends_at=ends_at,
        author=author,
        comment=comment,
        created_at=now,
        host=host,
        service=service,
        labels=MappingProxyType(labels),
        recurring=recurring,
    )


def _pattern(value: Any, name: str, problems: _Problems) -> Pattern | None:
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add(name, 'expected a glob like "web-*"')
        return None
    if value.startswith("re:"):
        # Anyone with a token may add a silence, and the writer matches it against every
        # result: one backtracking regex ("re:(a+)+b") would freeze the daemon. Globs translate
        # to regexes that cannot backtrack catastrophically.
        problems.add(
            name, 'regular expressions are not accepted in silences; use a glob like "web-*"'
        )
        return None
    try:
        return Pattern.compile(value)
    except ValueError as exc:
        problems.add(name, str(exc))
        return None


def _labels(payload: Mapping[str, Any], problems: _Problems) -> dict[str, Pattern]:
    raw = payload.get("labels")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.add("labels", "expected an object of label name -> pattern")
        return {}
    labels = {}
    for name, value in raw.items():
        pattern = _pattern(value, f"labels.{name}", problems)
        if pattern is not None:
            labels[name] = pattern
    return labels


def _text(payload: Mapping[str, Any], name: str, problems: _Problems, *, required: bool) -> str:
    value = payload.get(name)
    if value is None or value == "":
        if required:
            problems.add(name, "required: who set the window and why, for the audit trail")
        return ""
    if not isinstance(value, str):
        problems.add(name, "expected a string")
        return ""
    return value.strip()


def _time(
    payload: Mapping[str, Any], name: str, problems: _Problems, now: datetime
) -> datetime | None:
    value = payload.get(name)
    if value is None:
        return None
    try:
        at = wire_time(value)
    except ValueError as exc:
        problems.add(name, str(exc))
        return None
    if at - now > HORIZON:
        problems.add(name, _HORIZON_TEXT)
        return None
    return at


def _end(
    payload: Mapping[str, Any],
    starts_at: datetime,
    now: datetime,
    problems: _Problems,
    *,
    required: bool,
) -> datetime | None:
    if "ends_at" in payload and "duration" in payload:
        problems.add("duration", "give ends_at or duration, not both")
        return None
    if "duration" in payload:
        span = _span(payload["duration"], "duration", problems)
        # Compared before adding: starts_at + "999999999d" would overflow.
        if span is not None and span > HORIZON - (starts_at - now):
            problems.add("duration", f"would end {_HORIZON_TEXT}")
            span = None
        ends_at = None if span is None else starts_at + span
    else:
        ends_at = _time(payload, "ends_at", problems, now)
        if ends_at is None and "ends_at" not in payload and required:
            problems.add("ends_at", "required: ends_at or duration (or a recurring schedule)")
    if ends_at is not None and ends_at <= max(starts_at, now):
        problems.add("ends_at", "must be after starts_at and in the future")
    return ends_at


def _span(value: Any, name: str, problems: _Problems) -> timedelta | None:
    if not isinstance(value, str):
        problems.add(name, 'expected a duration string like "2h" or "1h30m"')
        return None
    try:
        span = parse_duration(value)
    except ValueError as exc:
        problems.add(name, str(exc))
        return None
    if span <= timedelta(0):
        problems.add(name, "must be longer than 0s")
        return None
    return span


def _recurring(raw: Any, problems: _Problems) -> Weekly | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.add("recurring", "expected an object {days, start, duration, timezone}")
        return None
    bad = [k for k in raw if k not in RECURRING_FIELDS]
    if bad:
        allowed = ", ".join(RECURRING_FIELDS)
        problems.add(f"recurring.{bad[0]}", f"unknown field; allowed: {allowed}")
    days, start = raw.get("days"), raw.get("start")
    if not isinstance(days, list) or not days or not all(isinstance(d, str) for d in days):
        problems.add("recurring.days", 'expected a non-empty array like ["sat", "sun"]')
        return None
    if not isinstance(start, str):
        problems.add("recurring.start", 'expected a local time "HH:MM"')
        return None
    span = _span(raw.get("duration"), "recurring.duration", problems)
    if span is None:
        return None
    if span > MAX_WINDOW:
        problems.add("recurring.duration", "at most 7d (a weekly window)")
        return None
    timezone = raw.get("timezone", "UTC")
    try:
        ZoneInfo(str(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        problems.add("recurring.timezone", f"unknown time zone {timezone!r} (e.g. Europe/Berlin)")
        return None
    unknown = [d for d in days if d.lower() not in DAYS]
    if unknown:
        problems.add("recurring.days", f"unknown day {unknown[0]!r}; use {', '.join(DAYS)}")
        return None
    try:
        return weekly([d.lower() for d in days], start, raw["duration"], str(timezone))
    except ValueError:
        problems.add("recurring.start", f'expected a local time "HH:MM", got {start!r}')
    return None
