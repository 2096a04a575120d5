"""alertd's own JSON ingestion format (`POST /api/v1/results`) -> validated `CheckResult`s.

Pure: takes the decoded JSON and the receive time, returns results or raises `InputError`
naming every bad item and field, so a client can fix a whole batch from one answer.

A result is a change report unless the client says otherwise (`Reporting`): `"reporting":
"stream"` for a client that sends every check, and an `interval` (which implies a stream) when
it knows how often.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from alertd.codec import wire_time
from alertd.durations import parse_duration
from alertd.errors import InputError, ItemProblem
from alertd.model import (
    HOST_STATES,
    SERVICE_STATES,
    CheckResult,
    CheckState,
    Reporting,
    StateType,
)

MAX_NAME = 255
MAX_TEXT = 65_536
MAX_LABELS = 64
MIN_INTERVAL = timedelta(seconds=1)
MAX_INTERVAL = timedelta(days=365)

FIELDS = frozenset(
    {
        "host",
        "service",
        "state",
        "output",
        "long_output",
        "perfdata",
        "state_type",
        "attempt",
        "max_attempts",
        "timestamp",
        "labels",
        "reporting",
        "interval",
    }
)
# Fields the fast path handles; an item with any other goes through the full parser.
_FAST_FIELDS = frozenset({"host", "service", "state", "output", "long_output", "perfdata"})
_SERVICE_BY_NAME = {s.value: s for s in SERVICE_STATES}
_HOST_BY_NAME = {s.value: s for s in HOST_STATES}


class _Bad(Exception):
    """One field problem inside one item; collected, never escapes this module."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message


def parse_results(payload: Any, now: datetime, max_items: int) -> list[CheckResult]:
    """Validate one result object or an array of them; all-or-nothing."""
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        raise InputError("empty batch: send one result object or a non-empty array")
    if len(items) > max_items:
        raise InputError(f"too many results in one request: {len(items)} > {max_items}")
    results: list[CheckResult] = []
    problems: list[ItemProblem] = []
    for index, item in enumerate(items):
        fast = _fast_item(item, now)
        if fast is not None:
            results.append(fast)
            continue
        try:
            results.append(_parse_item(item, now))
        except _Bad as bad:
            problems.append(ItemProblem(index, bad.field, bad.message))
        except _Many as many:
            problems.extend(ItemProblem(index, b.field, b.message) for b in many.problems)
    if problems:
        invalid = len({p.index for p in problems})
        noun = "result" if invalid == 1 else "results"
        raise InputError(f"{invalid} invalid {noun}; nothing was stored", problems)
    return results


class _Many(Exception):
    def __init__(self, problems: list[_Bad]) -> None:
        self.problems = problems


def _fast_item(item: Any, now: datetime) -> CheckResult | None:
    """The common, plainly valid item, checked in one pass; None sends it to `_parse_item`.

    Validation is on the ingest hot path (100k results/s): this accepts only what the full
    parser would accept unchanged, and leaves everything unusual (and every error) to it.
    """
    if type(item) is not dict or not item.keys() <= _FAST_FIELDS:
        return None
    host = item.get("host")
    service = item.get("service")
    raw_state = item.get("state")
    if type(raw_state) is not str:  # numbers, and lists or objects that cannot even be looked up
        return None
    by_name = _HOST_BY_NAME if service is None else _SERVICE_BY_NAME
    check_state = by_name.get(raw_state)
    if (
        check_state is None
        or type(host) is not str
        or not 0 < len(host) <= MAX_NAME
        or host[0].isspace()
        or host[-1].isspace()
        or (service is not None and (type(service) is not str or not _plain_name(service)))
    ):
        return None
    output = item.get("output", "")
    long_output = item.get("long_output", "")
    perfdata = item.get("perfdata", "")
    if not (_short_text(output) and _short_text(long_output) and _short_text(perfdata)):
        return None
    # Positional, in field order (host, service, state, timestamp, output, long_output,
    # perfdata): keywords bind in twice the time (0.9 vs 0.5 us), once per ingested result.
    return CheckResult(host, service, check_state, now, output, long_output, perfdata)


def _plain_name(value: str) -> bool:
    return 0 < len(value) <= MAX_NAME and not value[0].isspace() and not value[-1].isspace()


def _short_text(value: object) -> bool:
    return type(value) is str and len(value) <= MAX_TEXT


def _parse_item(item: Any, now: datetime) -> CheckResult:
    if not isinstance(item, dict):
        raise _Bad("", f"expected a JSON object, got {_kind(item)}")
    problems: list[_Bad] = [_Bad(k, "unknown field") for k in item if k not in FIELDS]
    values: dict[str, Any] = {}
    for name, parse in _PARSERS:
        try:
            values[name] = parse(item, now)
        except _Bad as bad:
            problems.append(bad)
    if "service" in values:  # the state's vocabulary depends on whether this is a host check
        try:
            values["state"] = _state(item, values["service"])
        except _Bad as bad:
            problems.append(bad)
    if problems:
        raise _Many(problems)
    attempt, max_attempts = values["attempt"], values["max_attempts"]
    if attempt is not None and max_attempts is not None and attempt > max_attempts:
        raise _Bad("attempt", f"attempt {attempt} is greater than max_attempts {max_attempts}")
    if values["interval"] is not None:
        if values["reporting"] is Reporting.CHANGE:
            raise _Bad("interval", 'an interval is for a stream; drop it or "reporting"')
        values["reporting"] = Reporting.STREAM
    elif values["reporting"] is None:
        values["reporting"] = Reporting.CHANGE
    return CheckResult(**values)


def _host(item: Mapping[str, Any], _now: datetime) -> str:
    if "host" not in item:
        raise _Bad("host", "required")
    return _name(item["host"], "host")


def _service(item: Mapping[str, Any], _now: datetime) -> str | None:
    value = item.get("service")
    return None if value is None else _name(value, "service")


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise _Bad(field, f"expected a string, got {_kind(value)}")
    stripped = value.strip()
    if not stripped:
        raise _Bad(field, "must not be empty")
    if len(stripped) > MAX_NAME:
        raise _Bad(field, f"longer than {MAX_NAME} characters")
    return stripped


def _state(item: Mapping[str, Any], service: str | None) -> CheckState:
    if "state" not in item:
        raise _Bad("state", "required")
    value = item["state"]
    names, kind = (_HOST_BY_NAME, "host") if service is None else (_SERVICE_BY_NAME, "service")
    ordered = list(names.values())
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(ordered):
            return ordered[value]
    elif isinstance(value, str) and value.strip().upper() in names:
        return names[value.strip().upper()]
    allowed = ", ".join(names) + f" or 0-{len(ordered) - 1}"
    # A list or object is named by its kind: its repr could be megabytes long.
    shown = repr(value[:40]) if isinstance(value, str) else _kind(value)
    if isinstance(value, int):
        shown = repr(value)
    raise _Bad("state", f"{shown} is not a {kind} state; expected {allowed}")


def _text(field: str) -> Any:
    def parse(item: Mapping[str, Any], _now: datetime) -> str:
        value = item.get(field)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise _Bad(field, f"expected a string, got {_kind(value)}")
        if len(value) > MAX_TEXT:
            raise _Bad(field, f"longer than {MAX_TEXT} characters")
        return value

    return parse


def _state_type(item: Mapping[str, Any], _now: datetime) -> StateType | None:
    value = item.get("state_type")
    if value is None:
        return None
    if isinstance(value, str) and value.upper() in ("SOFT", "HARD"):
        return StateType(value.upper())
    raise _Bad("state_type", f"{value!r} is not SOFT or HARD")


def _count(field: str) -> Any:
    def parse(item: Mapping[str, Any], _now: datetime) -> int | None:
        value = item.get(field)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Bad(field, f"expected an integer, got {_kind(value)}")
        if not 1 <= value <= 1000:
            raise _Bad(field, f"{value} is out of range 1-1000")
        return value

    return parse


def _timestamp(item: Mapping[str, Any], now: datetime) -> datetime:
    value = item.get("timestamp")
    if value is None:
        return now
    try:
        at = wire_time(value)
    except ValueError as exc:
        raise _Bad("timestamp", str(exc)) from exc
    # A check result from the future is a wrong clock, not news: taken as received now (as
    # Nagios's TIMET is), it can neither outrank later results nor push deadlines past 9999.
    return min(at, now)


def _reporting(item: Mapping[str, Any], _now: datetime) -> Reporting | None:
    value = item.get("reporting")
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in ("stream", "change"):
        return Reporting(value.strip().lower())
    raise _Bad("reporting", f"{value!r} is not stream or change")


def _interval(item: Mapping[str, Any], _now: datetime) -> timedelta | None:
    value = item.get("interval")
    if value is None:
        return None
    if isinstance(value, str):
        try:
            interval = parse_duration(value.strip())
        except ValueError as exc:
            raise _Bad("interval", str(exc)) from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not MIN_INTERVAL.total_seconds() <= value <= MAX_INTERVAL.total_seconds():
            raise _Bad("interval", f"{value} seconds is out of range 1s-365d")
        interval = timedelta(seconds=value)
    else:
        raise _Bad("interval", f'expected a duration like "5m" or seconds, got {_kind(value)}')
    if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        raise _Bad("interval", f"{value!r} is out of range 1s-365d")
    return interval


def _labels(item: Mapping[str, Any], _now: datetime) -> Mapping[str, str]:
    value = item.get("labels")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Bad("labels", f"expected an object of strings, got {_kind(value)}")
    if len(value) > MAX_LABELS:
        raise _Bad("labels", f"more than {MAX_LABELS} labels")
    for name, label in value.items():
        if not isinstance(label, str):
            raise _Bad(f"labels.{name}", f"expected a string, got {_kind(label)}")
        if len(label) > MAX_TEXT:
            raise _Bad(f"labels.{name}", f"longer than {MAX_TEXT} characters")
    return value


_PARSERS: tuple[tuple[str, Any], ...] = (
    ("host", _host),
    ("service", _service),
    ("output", _text("output")),
    ("long_output", _text("long_output")),
    ("perfdata", _text("perfdata")),
    ("state_type", _state_type),
    ("attempt", _count("attempt")),
    ("max_attempts", _count("max_attempts")),
    ("timestamp", _timestamp),
    ("labels", _labels),
    ("reporting", _reporting),
    ("interval", _interval),
)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)  # fmt: skip
