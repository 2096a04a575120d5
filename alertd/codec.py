"""Conversions between model objects and their stored / wire forms (timestamps, incident rows).

The store keeps queryable fields as columns and the rest of an incident as one JSON document;
this module is the only place that knows both shapes.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from alertd.gauges import GaugeKey
from alertd.model import (
    NO_LABELS,
    CheckState,
    Event,
    EventKind,
    Incident,
    IncidentKey,
    Level,
    Priority,
    PriorityReason,
    StateChange,
    StateType,
    Status,
)


def ts(value: datetime | None) -> str | None:
    """RFC 3339 UTC with a `Z` and fixed width (microseconds always), so stored times sort as
    text. orjson formats a datetime ~7x faster than isoformat, and this runs per timestamp."""
    if value is None:
        return None
    text = _ts_texts.get(value)
    if text is not None:
        # A request's results share its receipt time, and a commit its own `now`: a commit's
        # rows repeat a handful of times in several columns each, formatted once here. (Equal
        # aware datetimes are one instant, so one text; datetime caches its hash.)
        return text
    moment = value if value.tzinfo is UTC else value.astimezone(UTC)
    text = orjson.dumps(moment, option=orjson.OPT_UTC_Z)[1:-1].decode()
    text = text if moment.microsecond else f"{text[:-1]}.000000Z"
    if len(_ts_texts) >= _TS_CACHED:
        _ts_texts.clear()  # bounded; timers and reads bring times that never come again
    _ts_texts[value] = text  # a reader on another thread sees the whole entry or none
    return text


_TS_CACHED = 256
_ts_texts: dict[datetime, str] = {}


def parse_ts(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value)


def wire_time(value: object) -> datetime:
    """A time as clients send it: RFC 3339 with an offset, or epoch seconds; in UTC.

    Raises ValueError with a message for the client (what is wrong with the value).
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"epoch seconds out of range: {value}") from None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an RFC 3339 time") from None
        if moment.tzinfo is None:
            raise ValueError(f"{value!r} has no UTC offset (add Z or +00:00)")
        try:
            return moment.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T20:00-05:00: in UTC it is past year 9999
            raise ValueError(f"{value!r} is out of range in UTC") from None
    raise ValueError("expected an RFC 3339 string or epoch seconds")


def req_ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def dumps(value: Any) -> str:
    """Compact JSON for stored documents (orjson writes enums and datetimes natively)."""
    return orjson.dumps(value, option=orjson.OPT_UTC_Z).decode()


def loads(text: str | bytes) -> Any:
    return orjson.loads(text)


INCIDENT_COLUMNS = (
    "id",
    "host",
    "service",
    "status",
    "check_state",
    "priority",
    "impact",
    "urgency",
    "occurrences",
    "first_seen",
    "last_seen",
    "opened_at",
    "resolved_at",
    "due_at",
    "flapping",
    "suppressed",
    "last_output",
    "body",
    # What plain repeats changed in `body` since the last full write (`repeat_row`), or NULL.
    "hot",
    # What a start needs to index the incident without reading its body (`fold_row`).
    "fold",
)


# The body's fields, in the order `incident_row` writes them (a JSON array of values), as a
# start loads them too (the last element of `Folded.line`). A field added later is APPENDED here,
# never inserted or reordered: a body written before it is then shorter, and the readers
# (`_body_dict`, `folded_from_line`) take the missing tail as null. Bodies written before the
# positional form (a JSON object) are still read as they are.
BODY_FIELDS = (
    "state_type", "reason_rule", "reason_state", "attempt", "last_hard_state", "long_output",
    "perfdata", "labels", "recovering_since", "recovery_due", "reopen_until", "reopen_count",
    "percent_state_change", "flap_history", "suppressed_reason", "history", "acknowledged",
    "ack_author", "ack_comment", "ack_sticky", "ack_source", "ticket_requested", "summary_from",
    "summary_due", "summary_last_at", "ticket_due", "escalation_level", "escalation_since",
    "escalation_spent", "escalation_due", "update_due", "update_from", "interval", "stale",
    "agent_closed", "agent_closed_merged", "ticket_recovery", "stream_seen",
    "ticket_resolved", "source",
)  # fmt: skip


def incident_row(incident: Incident, due: datetime | None) -> tuple[Any, ...]:
    """The incident as a row in `INCIDENT_COLUMNS` order.

    Runs once per changed incident per commit, so it leans on orjson (which writes enums and
    datetimes natively) rather than building an intermediate dict of strings.
    """
    # Positional, in `BODY_FIELDS` order (docs/architecture.md, "The store"): half the bytes
    # of a document with its keys, and a start reads it as it is, with no JSON work in SQLite.
    body = (
        incident.state_type,
        incident.reason.rule,
        incident.reason.state,
        incident.attempt,
        incident.last_hard_state,
        incident.long_output,
        incident.perfdata,
        incident.labels if type(incident.labels) is dict else dict(incident.labels),
        incident.recovering_since,
        incident.recovery_due,
        incident.reopen_until,
        incident.reopen_count,
        incident.percent_state_change,
        incident.flap_history,
        incident.suppressed_reason,
        [(h.at, h.state, h.state_type) for h in incident.history],
        incident.acknowledged,
        incident.ack_author,
        incident.ack_comment,
        incident.ack_sticky,
        incident.ack_source,
        incident.ticket_requested,
        incident.summary_from,
        incident.summary_due,
        incident.summary_last_at,
        incident.ticket_due,
        incident.escalation_level,
        incident.escalation_since,
        incident.escalation_spent.total_seconds(),
        incident.escalation_due,
        incident.update_due,
        incident.update_from,
        incident.interval,
        incident.stale,
        incident.agent_closed,
        incident.agent_closed_merged,
        incident.ticket_recovery,
        incident.stream_seen,
        incident.ticket_resolved,
        incident.source,
    )
    return (
        incident.id,
        incident.host,
        incident.service,
        # StrEnum members are str: sqlite3 stores them as their text, no `.value` lookup needed.
        incident.status,
        incident.check_state,
        incident.priority,
        incident.reason.impact,
        incident.reason.urgency,
        incident.occurrences,
        ts(incident.first_seen),
        ts(incident.last_seen),
        ts(incident.opened_at),
        ts(incident.resolved_at),
        ts(due),
        int(incident.flapping),
        int(incident.suppressed),
        incident.last_output,
        orjson.dumps(body, option=orjson.OPT_UTC_Z).decode(),
        None,  # the body is whole again: no repeat overlay
        fold_row(incident),
    )


def repeat_row(incident: Incident, due: datetime | None) -> tuple[Any, ...]:
    """A plain repeat's narrow row: occurrences, last_seen, last_output, due_at, hot, fold, id.

    A plain repeat (lifecycle `_repeat`) changes only these columns and the `body` fields in
    `hot`; writing them instead of the whole row skips the ~740-byte body and every index
    (none covers these columns). `incident_from_row` lays `hot` over the body."""
    hot = {
        "attempt": incident.attempt,
        "long_output": incident.long_output,
        "perfdata": incident.perfdata,
        "labels": incident.labels if type(incident.labels) is dict else dict(incident.labels),
        "stream_seen": incident.stream_seen,
        "interval": incident.interval,
        "flap_history": incident.flap_history,
        "percent_state_change": incident.percent_state_change,
    }
    return (
        incident.occurrences,
        ts(incident.last_seen),
        incident.last_output,
        ts(due),
        orjson.dumps(hot, option=orjson.OPT_UTC_Z).decode(),
        fold_row(incident),
        incident.id,
    )


# Stored values to members by dict (an Enum call is ~10x slower, and a load at start decodes a
# dozen per incident, a million incidents over).
_new = tuple.__new__
_STATUS = {m.value: m for m in Status}
_STATE = {m.value: m for m in CheckState}
_TYPE = {m.value: m for m in StateType}
_PRIORITY = {m.value: m for m in Priority}
_LEVEL = {m.value: m for m in Level}


def incident_from_row(row: Any) -> Incident:
    """Inverse of `incident_row` for a row selected in `INCIDENT_COLUMNS` order."""
    (id_, host, service, status, check_state, priority, impact, urgency, occurrences,
     first_seen, last_seen, opened_at, resolved_at, _due, flapping, suppressed, last_output,
     body_text, hot, _fold) = row  # fmt: skip
    body = _body_dict(orjson.loads(body_text))
    if hot is not None:
        body.update(orjson.loads(hot))
    return _incident(
        id_, host, service, status, check_state, priority, impact, urgency, occurrences,
        first_seen, last_seen, opened_at, resolved_at, flapping, suppressed, last_output, body,
    )  # fmt: skip


def _body_dict(body: list[Any] | dict[str, Any]) -> dict[str, Any]:
    """A stored body by field name: positional (fields missing at its end absent), or a
    document as written before the positional form."""
    if isinstance(body, list):
        return dict(zip(BODY_FIELDS, body, strict=False))
    return body


def _incident(
    id_: int, host: str, service: str | None, status: str, check_state: str, priority: str,
    impact: str, urgency: str, occurrences: int, first_seen: str, last_seen: str,
    opened_at: str | None, resolved_at: str | None, flapping: int, suppressed: int,
    last_output: str, body: dict[str, Any],
) -> Incident:  # fmt: skip
    """The incident from its columns and its body (the `hot` overlay laid over already)."""
    last_hard = body["last_hard_state"]
    # One object for equal times (an incident opened by its first result has three): a
    # million cached incidents are 1.5 KB each, and each datetime is 48 bytes of it.
    first = req_ts(first_seen)
    last = first if last_seen == first_seen else req_ts(last_seen)
    opened = first if opened_at == first_seen else parse_ts(opened_at)
    # Positional, in `Incident._fields` order (keywords cost ~7 us of the ~17 us per
    # incident; a start decodes a million of them). tests/unit/test_codec.py checks the order.
    # Fields added to the body later default when missing (`or`: a folded body has them as
    # null, and none of these is ever stored as null or as another falsy value).
    return _new(Incident, (
        id_,  # id
        host,  # host
        service,  # service
        _STATUS[status],  # status
        _STATE[check_state],  # check_state
        _TYPE[body["state_type"]],  # state_type
        _PRIORITY[priority],  # priority
        PriorityReason(  # reason
            impact=_LEVEL[impact],
            urgency=_LEVEL[urgency],
            rule=body["reason_rule"],
            state=_STATE[body["reason_state"]],
        ),
        first,  # first_seen
        last,  # last_seen
        occurrences,  # occurrences
        body["attempt"],  # attempt
        _STATE[last_hard] if last_hard else None,  # last_hard_state
        last_output,  # last_output
        body["long_output"],  # long_output
        body["perfdata"],  # perfdata
        body["labels"] or NO_LABELS,  # labels (one shared empty mapping)
        opened,  # opened_at
        parse_ts(resolved_at),  # resolved_at
        parse_ts(body["recovering_since"]),  # recovering_since
        parse_ts(body["recovery_due"]),  # recovery_due
        parse_ts(body["reopen_until"]),  # reopen_until
        body["reopen_count"],  # reopen_count
        bool(flapping),  # flapping
        body["percent_state_change"],  # percent_state_change
        tuple([_STATE[s] for s in body["flap_history"]]),  # flap_history
        bool(suppressed),  # suppressed
        body["suppressed_reason"],  # suppressed_reason
        tuple(  # history
            StateChange(at=req_ts(at), state=_STATE[st], state_type=_TYPE[tp])
            for at, st, tp in body["history"]
        ),
        body.get("acknowledged") or False,  # acknowledged
        body.get("ack_author"),  # ack_author
        body.get("ack_comment"),  # ack_comment
        body.get("ack_sticky") or False,  # ack_sticky
        body.get("ack_source"),  # ack_source
        body.get("ticket_requested") or False,  # ticket_requested
        body.get("summary_from") or 0,  # summary_from
        parse_ts(body.get("summary_due")),  # summary_due
        parse_ts(body.get("summary_last_at")),  # summary_last_at
        parse_ts(body.get("ticket_due")),  # ticket_due
        body.get("escalation_level") or 0,  # escalation_level
        parse_ts(body.get("escalation_since")),  # escalation_since
        timedelta(seconds=body.get("escalation_spent") or 0.0),  # escalation_spent
        parse_ts(body.get("escalation_due")),  # escalation_due
        parse_ts(body.get("update_due")),  # update_due
        body.get("update_from") or 0,  # update_from
        body.get("interval"),  # interval
        body.get("stale") or False,  # stale
        body.get("agent_closed"),  # agent_closed
        body.get("agent_closed_merged"),  # agent_closed_merged
        body.get("ticket_recovery"),  # ticket_recovery
        parse_ts(body.get("stream_seen")),  # stream_seen
        body.get("ticket_resolved") or False,  # ticket_resolved
        body.get("source"),  # source
    ))


# -- folded incidents: what a start loads --------------------------------------------------------
#
# A start with a million open incidents cannot afford to decode each one's JSON body (~5 us) and
# build its 53-field `Incident` (~5 us), nor to keep it decoded (~1.1 KB each) when most are
# never touched again before they resolve. The store reads each incident as one line of JSON
# (`FOLDED_COLUMNS`, then the body's array of values as stored), built by SQLite by plain text
# concatenation, a page of lines in one step on the store's thread (alertd.store, `_FOLD`).
# `folded_from_line` reads what the writer's indexes need (key, id, what the gauges count, held
# or not, the due time, the stale watch's inputs) and keeps the line; `unfold` makes the
# `Incident` when the writer first touches it; alertd.cache keeps either form.

# The columns of a folded line, in this order, then the body's array, then the `hot` overlay
# (an object, or null).
FOLDED_COLUMNS = (
    "status", "check_state", "priority", "impact", "urgency", "occurrences", "first_seen",
    "last_seen", "opened_at", "resolved_at", "flapping", "suppressed", "last_output",
)  # fmt: skip
# The ticket planner's timers (TicketPlanner.timers): a due time stored by a daemon without a
# helpdesk leaves them out, so the load takes the earliest of them too.
TICKET_TIMERS = ("ticket_due", "summary_due", "escalation_due", "update_due")


class Folded:
    """An incident as loaded at start, not decoded yet (see `unfold`).

    `gauge` is what it adds to the incident gauges (None: resolved), `due` the earliest time
    the writer may have to look at it (early is harmless: it is unfolded then and its own timers
    decide), `until` the end of a resolved one's reopen window, `stream` the stale watch's
    inputs (last_seen, interval) of an open one that a stream fed, not stale yet, `line` the
    rest of the incident as loaded (`FOLDED_COLUMNS`, the body, the overlay).
    """

    __slots__ = ("due", "gauge", "id", "key", "line", "stream", "suppressed", "until")

    def __init__(
        self, id_: int, key: IncidentKey, gauge: GaugeKey | None, suppressed: bool,
        due: datetime | None, until: datetime | None,
        stream: tuple[datetime, float | None] | None, line: str,
    ) -> None:  # fmt: skip
        self.id = id_
        self.key = key
        self.gauge = gauge
        self.suppressed = suppressed
        self.due = due
        self.until = until
        self.stream = stream
        self.line = line

    def active(self, now: datetime) -> bool:
        """`lifecycle.is_active` of the incident it holds."""
        return self.gauge is not None or (self.until is not None and now < self.until)


# What a start reads of each incident besides its line (`fold`): `FOLD_COLUMNS`, then the
# `fold` column's values (`fold_row`: written with every write of the incident, so the start
# never parses a body to index it).
FOLD_COLUMNS = ("id", "host", "service", "due_at", "suppressed")
_NO_FOLD = len(FOLD_COLUMNS) + 1  # the columns, then null for a missing `fold`

# Few distinct gauge keys exist: a million folded incidents share a handful of tuples.
_gauges: dict[str, GaugeKey] = {}


def fold_row(incident: Incident) -> str:
    """The `fold` column: [gauge code (`gauge_code`, null if resolved), end of a resolved
    one's reopen window, last_seen of an open one a stream feeds (not stale), its interval,
    then the ticket planner's timers `TICKET_TIMERS`]; times as `ts` writes them."""
    status = incident.status
    resolved = status is Status.RESOLVED
    streamed = status is Status.OPEN and not incident.stale and incident.stream_seen is not None
    return orjson.dumps([
        None if resolved else gauge_code(incident),
        ts(incident.reopen_until) if resolved else None,
        ts(incident.last_seen) if streamed else None,
        incident.interval if streamed else None,
        ts(incident.ticket_due), ts(incident.summary_due), ts(incident.escalation_due),
        ts(incident.update_due),
    ]).decode()  # fmt: skip


def gauge_code(incident: Incident) -> str:
    """`gauges.gauge_key` of an unresolved incident as text: status|priority|flapping|
    suppressed|acknowledged|stale, the flags as 0 or 1 (store.py's migration 10 writes the
    same from SQL). Runs with every write of an incident: a handful of keys exist, each made
    into text once."""
    key = (incident.status, incident.priority, incident.flapping, incident.suppressed,
           incident.acknowledged, incident.stale)  # fmt: skip
    code = _codes.get(key)
    if code is None:
        status, priority, *flags = key
        code = _codes[key] = "|".join([status.value, priority.value, *(str(int(f)) for f in flags)])
    return code


_codes: dict[tuple[Status, Priority, bool, bool, bool, bool], str] = {}


def _gauge(code: str) -> GaugeKey:
    gauge = _gauges.get(code)
    if gauge is None:
        status, priority, flapping, suppressed, acknowledged, stale = code.split("|")
        gauge = _gauges[code] = (_STATUS[status], _PRIORITY[priority], flapping == "1",
                                 suppressed == "1", acknowledged == "1", stale == "1")  # fmt: skip
    return gauge


def fold(index: list[Any], line: str, names: dict[str, str]) -> Folded:
    """An incident as a start loads it (alertd.store, `_FOLD`): `index` (`FOLD_COLUMNS`, then
    the `fold` column's values) says what the writer's indexes need; `line` (`FOLDED_COLUMNS`,
    the body, the overlay) is kept, not parsed, until the incident is first touched. `names`
    (one per load) makes equal host and service names one string: a host's services, and a
    service checked on every host, repeat them (~50 bytes each)."""
    if len(index) == _NO_FOLD:  # a row written without its `fold` (by hand, or a tool)
        bare = Folded(index[0], (index[1], index[2]), None, False, None, None, None, line)
        index = [*index[:-1], *orjson.loads(fold_row(unfold(bare)))]
    (id_, host, service, due_at, suppressed, gauge, until, stream_at, interval,
     *timers) = index  # fmt: skip
    host = names.setdefault(host, host)
    if service is not None:
        service = names.setdefault(service, service)
    due = None if due_at is None else req_ts(due_at)
    for timer in timers:
        if timer is not None:
            at = req_ts(timer)
            if due is None or at < due:
                due = at
    return Folded(
        id_, (host, service), None if gauge is None else _gauge(gauge), bool(suppressed), due,
        None if until is None else req_ts(until),
        None if stream_at is None else (req_ts(stream_at), interval), line,
    )  # fmt: skip


def fold_page(lines: str, indexes: str, names: dict[str, str]) -> list[Folded]:
    """A page of a start's load, as both stores read it: `lines` (one per incident, split on
    the ASCII record separator: valid JSON never holds a raw control character but as
    whitespace, which is never this one) and `indexes` (one JSON array of their `fold`
    indexes), in the same order."""
    folded = [
        fold(index, line, names)
        for index, line in zip(orjson.loads(indexes), lines.split("\x1e"), strict=True)
    ]
    # The newest row of a key must come last (SQLite's group_concat keeps the order in
    # practice without promising it).
    if any(a.id > b.id for a, b in itertools.pairwise(folded)):
        folded.sort(key=_by_id)
    return folded


def _by_id(folded: Folded) -> int:
    return folded.id


def unfold(folded: Folded) -> Incident:
    """The `Incident` a folded one holds: equal to `incident_from_row` of the same row."""
    (status, check_state, priority, impact, urgency, occurrences, first_seen, last_seen,
     opened_at, resolved_at, flapping, suppressed, last_output, packed_body,
     hot) = orjson.loads(folded.line)  # fmt: skip
    body = _body_dict(packed_body)
    if hot is not None:
        body.update(hot)
    host, service = folded.key
    return _incident(
        folded.id, host, service, status, check_state, priority, impact, urgency, occurrences,
        first_seen, last_seen, opened_at, resolved_at, flapping, suppressed, last_output, body,
    )  # fmt: skip


def event_row(incident_id: int, event: Event) -> tuple[int, str | None, str, str]:
    return (
        incident_id,
        ts(event.at),
        event.kind,
        orjson.dumps(event.detail).decode(),
    )


def event_from_row(at: str, kind: str, detail: str) -> Event:
    return Event(kind=EventKind(kind), at=req_ts(at), detail=orjson.loads(detail))


def incident_json(incident: Incident, *, key_text: str) -> dict[str, Any]:
    """The public API shape of an incident (README, "Read API")."""
    return {
        "id": incident.id,
        "key": key_text,
        "host": incident.host,
        "service": incident.service,
        "status": incident.status.value,
        "check_state": incident.check_state.value,
        "state_type": incident.state_type.value,
        "priority": incident.priority.value,
        "impact": incident.reason.impact.value,
        "urgency": incident.reason.urgency.value,
        "priority_rule": incident.reason.rule,
        "occurrences": incident.occurrences,
        "first_seen": ts(incident.first_seen),
        "last_seen": ts(incident.last_seen),
        "opened_at": ts(incident.opened_at),
        "resolved_at": ts(incident.resolved_at),
        "recovery_due": ts(incident.recovery_due),
        "reopen_until": ts(incident.reopen_until),
        "reopen_count": incident.reopen_count,
        "flapping": incident.flapping,
        "percent_state_change": round(incident.percent_state_change, 2),
        "suppressed": incident.suppressed,
        "suppressed_reason": incident.suppressed_reason,
        "stale": incident.stale,
        "ticket_closed_by_agent": incident.agent_closed,
        "interval_seconds": None if incident.interval is None else round(incident.interval, 1),
        "reporting": "stream" if incident.fed_by_stream else "change",
        "acknowledged": incident.acknowledged,
        "ack_author": incident.ack_author,
        "ack_comment": incident.ack_comment,
        "escalation_level": incident.escalation_level,
        "next_escalation_at": ts(incident.escalation_due),
        "next_update_at": ts(incident.update_due),
        "last_output": incident.last_output,
        "long_output": incident.long_output,
        "perfdata": incident.perfdata,
        "labels": dict(incident.labels),
        "source": incident.source,
    }


def event_json(event: Event) -> dict[str, Any]:
    return {"kind": event.kind.value, "at": ts(event.at), "detail": dict(event.detail)}
