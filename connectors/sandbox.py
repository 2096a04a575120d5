"""A local Freshdesk-compatible helpdesk (API v2) that rejects whatever the real one would reject.

Owns the fake's state (`Sandbox`), its HTTP face (`create_app`) and the `alertd sandbox` runner
(`serve`). alertd's tests, its demo and `alertd sandbox` talk to it over real HTTP. Each request
passes the checks in this order, and every answer, errors included, carries the rate-limit headers:

    injected fault -> rate limit (429) -> Basic auth (401) -> Accept (406) -> route (404/405)
    -> Content-Type (415) -> JSON (400 invalid_json) -> fields (400, all errors at once)

Facts come from protocols.md section 1. Behaviours tagged [U] there are options here
(`custom_statuses`, `required_fields`, `include_cost`), so tests can state which variant they
assume. Where the facts leave a choice, the fake takes the stricter one: list and search results
leave out the description, a 404 has an empty body, and search serves the ticket as it was when
indexed.

Time: one injectable clock returning POSIX seconds drives timestamps, the search-index lag, the
30-day list window and the rate-limit window. A test advances it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import html
import itertools
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from http import HTTPStatus
from typing import Any, Final, Literal

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

API: Final = "/api/v2"
STATUSES: Final = (2, 3, 4, 5)
PRIORITIES: Final = (1, 2, 3, 4)
SOURCES: Final = (1, 2, 3, 7, 9, 10)
SERVICE_LEVELS: Final = (1, 2, 3)  # Freshservice impact and urgency
REQUESTER_FIELDS: Final = (
    "requester_id",
    "email",
    "phone",
    "twitter_id",
    "facebook_id",
    "unique_external_id",
)
FLAVOURS: Final = ("freshdesk", "freshservice")
AGENT_ID: Final = 1  # owner of the API key: the default author of notes
WINDOW_SECONDS: Final = 60
LIST_DAYS: Final = 30
MAX_PER_PAGE: Final = 100
SEARCH_PAGE_SIZE: Final = 30
SEARCH_MAX_PAGE: Final = 10
SEARCH_MAX_QUERY: Final = 512
# SLA deadlines by priority (first response, resolution) in hours, for tickets that set none.
_SLA_HOURS: Final = {1: (24, 72), 2: (8, 48), 3: (4, 24), 4: (1, 4)}


@dataclass(slots=True)
class SandboxOptions:
    """How this fake account is configured; the defaults match a new Freshdesk account."""

    api_key: str = "sandbox-key"
    rate_limit_per_minute: int = 200
    ticket_types: tuple[str, ...] = ("Question", "Incident", "Problem", "Feature Request")
    custom_fields: tuple[str, ...] = ()
    flavour: str = "freshdesk"
    search_lag_seconds: float = 0.0
    groups: tuple[int, ...] = ()
    # [U] Accounts can add their own status ids beyond 2-5.
    custom_statuses: tuple[int, ...] = ()
    # [U] Accounts can make ticket fields mandatory. The default enforces alertd's own rule (always
    # send these five), so a client that leaves one out fails here. Use () to get the API's
    # documented defaults (status 2, priority 1, source 2) instead.
    required_fields: tuple[str, ...] = ("subject", "description", "status", "priority", "source")
    # [U] Extra credits for each `include=` item (sources say 1 or 2).
    include_cost: int = 1

    def __post_init__(self) -> None:
        if self.flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}, not {self.flavour!r}")
        if self.rate_limit_per_minute < 1:
            raise ValueError("rate_limit_per_minute must be at least 1")


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as received; `status` is None when the connection was dropped unanswered."""

    method: str
    path: str
    query: dict[str, str]
    status: int | None
    time: float
    body: Any = None  # decoded JSON when it parsed, else the raw text, else None


@dataclass(frozen=True, slots=True)
class _FieldError:
    field: str
    message: str
    code: str


@dataclass(frozen=True, slots=True)
class _Fault:
    status: int
    retry_after: int | None


class _Reject(Exception):
    """A non-success answer, raised below the middleware, which is the one place that sends it."""

    def __init__(
        self,
        status: int,
        body: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        if self.body is None:
            return web.Response(status=self.status, headers=self.headers)
        return web.json_response(self.body, status=self.status, headers=self.headers)


class _DropConnection(Exception):
    """Raised after a create was stored, to close the connection instead of answering."""


def _error(status: int, code: str, message: str) -> _Reject:
    return _Reject(status, {"code": code, "message": message})


def _invalid(errors: Sequence[_FieldError]) -> _Reject:
    return _Reject(400, {"description": "Validation failed", "errors": [asdict(e) for e in errors]})


def _not_found() -> _Reject:
    return _Reject(404)  # the real 404 may have no body: clients must not need one


# ------------------------------------------------------------------------------------------ state


def _steady_wall_clock() -> Callable[[], float]:
    """POSIX seconds that never step back: the wall clock at start, then advanced by monotonic."""
    wall, steady = time.time(), time.monotonic()
    return lambda: wall + (time.monotonic() - steady)


@dataclass(slots=True)
class _RateWindow:
    """A fixed one-minute budget that starts with the first request after the last one expired."""

    started: float = -math.inf
    used: int = 0

    def roll(self, now: float) -> None:
        if now >= self.started + WINDOW_SECONDS:
            self.started, self.used = now, 0

    def resets_in(self, now: float) -> int:
        return max(1, math.ceil(self.started + WINDOW_SECONDS - now))


class Sandbox:
    """The helpdesk's state. Tests inspect it and drive faults, agents and the clock through it."""

    def __init__(self, options: SandboxOptions | None = None) -> None:
        self.options = options if options is not None else SandboxOptions()
        self.tickets: dict[int, dict[str, Any]] = {}
        self.deleted: dict[int, dict[str, Any]] = {}  # deleted or archived: the API answers 404
        self.notes: dict[int, list[dict[str, Any]]] = {}
        self.contacts: dict[int, dict[str, Any]] = {}  # requesters, created from email/phone/...
        self.requests: list[RequestRecord] = []
        self._now: Callable[[], float] = _steady_wall_clock()
        self._faults: deque[_Fault] = deque()
        self._drops = 0
        self._stalls: deque[float] = deque()
        self._window = _RateWindow()
        self._ticket_ids = itertools.count(1)
        self._note_ids = itertools.count(1)
        self._contact_ids = itertools.count(9001)
        self._created: dict[int, float] = {}
        self._updated: dict[int, float] = {}
        self._stats: dict[int, dict[str, str | None]] = {}
        # Per ticket: (indexed at, snapshot or None once deleted). Search sees the newest entry
        # older than the lag, so a fresh change is invisible and a stale state is still served.
        self._history: dict[int, list[tuple[float, dict[str, Any] | None]]] = {}

    def now(self) -> float:
        """The sandbox's current time in POSIX seconds."""
        return self._now()

    def set_clock(self, now: Callable[[], float]) -> None:
        """Use `now()` (POSIX seconds) for timestamps, search lag and the rate-limit window."""
        self._now = now

    def fail_next(self, count: int, status: int = 503, *, retry_after: int | None = None) -> None:
        """Answer the next `count` requests with `status`, before auth and validation."""
        if count < 0 or not 400 <= status <= 599:
            raise ValueError(
                f"fail_next needs count >= 0 and an error status, got {count}, {status}"
            )
        self._faults.extend([_Fault(status, retry_after)] * count)

    def stall_after_create(self, seconds: float, count: int = 1) -> None:
        """The next `count` creates store the ticket, then wait `seconds` before answering (a
        slow helpdesk; long enough to kill the client between sending and hearing back)."""
        self._stalls.extend([seconds] * count)

    def drop_after_create(self, count: int = 1) -> None:
        """Let the next `count` valid creates store their ticket, then close without answering."""
        self._drops += count

    def delete(self, ticket_id: int) -> None:
        """Delete or archive a ticket as an agent would; the API then answers 404 for it."""
        self.deleted[ticket_id] = self.tickets.pop(ticket_id)
        self._index(ticket_id, None)

    def agent_update(self, ticket_id: int, **fields: Any) -> None:
        """Change a ticket by hand, with the API's field rules; this bumps `updated_at`."""
        ticket = self.tickets[ticket_id]
        errors = _ticket_errors(fields, self.options, creating=False)
        if errors:
            problems = "; ".join(f"{e.field}: {e.message}" for e in errors)
            raise ValueError(f"agent_update({ticket_id}) rejected: {problems}")
        self._change(ticket, fields)

    # The API's operations; they raise _Reject, which the middleware answers.

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        errors = _ticket_errors(body, self.options, creating=True) + self._reference_errors(body)
        if errors:
            raise _invalid(errors)
        now = self.now()
        ticket_id = next(self._ticket_ids)
        ticket = self._blank_ticket(ticket_id, now, body.get("priority", 1))
        self._created[ticket_id] = now
        self._stats[ticket_id] = {
            "status_updated_at": _iso(now),
            "pending_since": None,
            "resolved_at": None,
            "closed_at": None,
            "reopened_at": None,
            "first_responded_at": None,
            "agent_responded_at": None,
            "requester_responded_at": None,
        }
        self.tickets[ticket_id] = ticket
        self.notes[ticket_id] = []
        self._change(ticket, body)
        return ticket

    def _update(self, ticket_id: int, body: dict[str, Any]) -> dict[str, Any]:
        ticket = self._existing(ticket_id)
        errors = _ticket_errors(body, self.options, creating=False) + self._reference_errors(body)
        if errors:
            raise _invalid(errors)
        self._change(ticket, body)
        return ticket

    def _add_note(self, ticket_id: int, body: dict[str, Any]) -> dict[str, Any]:
        ticket = self._existing(ticket_id)
        errors = _note_errors(body)
        if errors:
            raise _invalid(errors)
        stamp = _iso(self.now())
        note = {
            "id": next(self._note_ids),
            "body": body["body"],
            "body_text": _text(body["body"]),
            "incoming": body.get("incoming", False),
            "private": body.get("private", True),
            "user_id": body.get("user_id", AGENT_ID),
            "support_email": None,
            "source": 2,  # 2 = note, 0 = reply
            "category": 2,
            "ticket_id": ticket_id,
            "to_emails": list(body.get("notify_emails", [])),
            "from_email": None,
            "cc_emails": [],
            "bcc_emails": [],
            "attachments": [],
            "created_at": stamp,
            "updated_at": stamp,
            "last_edited_at": None,
            "last_edited_user_id": None,
            "source_additional_info": None,
        }
        self.notes[ticket_id].append(note)
        self._change(ticket, {})  # a note is activity on the ticket: it moves updated_at
        return note

    def _existing(self, ticket_id: int) -> dict[str, Any]:
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            raise _not_found()
        return ticket

    def _take_fault(self) -> _Fault | None:
        return self._faults.popleft() if self._faults else None

    def _take_drop(self) -> bool:
        if self._drops <= 0:
            return False
        self._drops -= 1
        return True

    def _blank_ticket(self, ticket_id: int, now: float, priority: Any) -> dict[str, Any]:
        first, resolve = _SLA_HOURS.get(priority, _SLA_HOURS[1])
        ticket: dict[str, Any] = {
            "id": ticket_id,
            "subject": None,
            "description": None,
            "description_text": None,
            "status": 2,
            "priority": 1,
            "source": 2,
            "type": None,
            "requester_id": None,
            "responder_id": None,
            "group_id": None,
            "company_id": None,
            "product_id": None,
            "email_config_id": None,
            "cc_emails": [],
            "fwd_emails": [],
            "reply_cc_emails": [],
            "ticket_cc_emails": [],
            "to_emails": None,
            "fr_escalated": False,
            "is_escalated": False,
            "nr_escalated": False,
            "spam": False,
            "due_by": _iso(now + resolve * 3600),
            "fr_due_by": _iso(now + first * 3600),
            "nr_due_by": None,
            "created_at": _iso(now),
            "updated_at": _iso(now),
            "tags": [],
            "custom_fields": dict.fromkeys(self.options.custom_fields),
            "attachments": [],
            "association_type": None,
            "associated_tickets_count": None,
            "support_email": None,
            "source_additional_info": None,
            "form_id": None,
            "structured_description": None,
        }
        if self.options.flavour == "freshservice":
            ticket |= {
                "impact": 1,
                "urgency": 1,
                "category": None,
                "sub_category": None,
                "item_category": None,
                "department_id": None,
            }
        return ticket

    def _change(self, ticket: dict[str, Any], body: Mapping[str, Any]) -> None:
        """Apply already-validated fields, bump updated_at and queue the result for indexing."""
        now = self.now()
        ticket_id: int = ticket["id"]
        for name, value in body.items():
            if name in REQUESTER_FIELDS or name == "name":
                continue
            if name == "description":
                ticket["description_text"] = _text(value)
            elif name == "custom_fields":
                value = ticket["custom_fields"] | value  # partial, like the rest of an update
            elif name in ("due_by", "fr_due_by"):
                value = _iso(_parse_time(value) or now)
            elif name == "cc_emails":
                ticket["ticket_cc_emails"] = list(value)
            elif name == "parent_id":
                self._link_child(ticket, value)
                continue
            elif name == "status" and value != ticket["status"]:
                self._status_changed(ticket_id, ticket["status"], value, now)
            ticket[name] = copy.deepcopy(value)
        if any(name in body for name in REQUESTER_FIELDS):
            ticket["requester_id"] = self._requester(body)
        self._updated[ticket_id] = now
        ticket["updated_at"] = _iso(now)
        self._index(ticket_id, ticket)

    def _status_changed(self, ticket_id: int, old: int, new: int, now: float) -> None:
        stats = self._stats[ticket_id]
        stats["status_updated_at"] = _iso(now)
        if new == 3:
            stats["pending_since"] = _iso(now)
        elif new == 4:
            stats["resolved_at"] = _iso(now)
        elif new == 5:
            stats["closed_at"] = _iso(now)
        if old in (4, 5) and new not in (4, 5):
            stats["reopened_at"] = _iso(now)

    def _link_child(self, child: dict[str, Any], parent_id: int) -> None:
        parent = self.tickets[parent_id]
        parent["association_type"] = 1  # 1 = parent, 4 = child
        parent["associated_tickets_count"] = (parent["associated_tickets_count"] or 0) + 1
        child["association_type"] = 4

    def _reference_errors(self, body: Mapping[str, Any]) -> list[_FieldError]:
        """Errors that depend on stored data: references to tickets and contacts that must exist."""
        errors = []
        parent = body.get("parent_id")
        if _is_int(parent) and parent not in self.tickets:
            errors.append(
                _FieldError(
                    "parent_id", "There is no ticket matching the parent_id", "invalid_value"
                )
            )
        facebook = body.get("facebook_id")
        if isinstance(facebook, str) and self._find_contact("facebook_id", facebook) is None:
            errors.append(
                _FieldError(
                    "facebook_id", "There is no contact matching the facebook_id", "invalid_value"
                )
            )
        return errors

    def _requester(self, body: Mapping[str, Any]) -> int:
        """The requester's contact id: given, found by an identifier, or a new contact."""
        if "requester_id" in body:
            return int(body["requester_id"])
        kind = next(name for name in REQUESTER_FIELDS if name in body)
        value: str = body[kind]
        found = self._find_contact(kind, value)
        if found is not None:
            return found
        contact_id = next(self._contact_ids)
        contact: dict[str, Any] = {
            "id": contact_id,
            "name": body.get("name") or value.partition("@")[0],
            **dict.fromkeys(REQUESTER_FIELDS[1:]),
        }
        contact.update({k: body[k] for k in REQUESTER_FIELDS[1:] if k in body})
        self.contacts[contact_id] = contact
        return contact_id

    def _find_contact(self, kind: str, value: str) -> int | None:
        for contact in self.contacts.values():
            known = contact.get(kind)
            # Emails are case-insensitive; the other identifiers are compared exactly.
            if known is not None and (
                known.lower() == value.lower() if kind == "email" else known == value
            ):
                return int(contact["id"])
        return None

    def _index(self, ticket_id: int, ticket: dict[str, Any] | None) -> None:
        history = self._history.setdefault(ticket_id, [])
        history.append((self.now(), copy.deepcopy(ticket)))
        horizon = self.now() - self.options.search_lag_seconds
        while len(history) > 1 and history[1][0] <= horizon:
            history.pop(0)  # superseded by an entry that is already visible

    def _indexed(self) -> Iterator[dict[str, Any]]:
        """What search sees now: each ticket as it was `search_lag_seconds` ago, if it existed."""
        horizon = self.now() - self.options.search_lag_seconds
        for history in self._history.values():
            visible = None
            for indexed_at, snapshot in history:
                if indexed_at > horizon:
                    break
                visible = snapshot
            if visible is not None:
                yield visible

    def _render(self, ticket: dict[str, Any], includes: Collection[str]) -> dict[str, Any]:
        """A ticket as the API shows it, with the parts `include=` asks for."""
        shown = copy.deepcopy(ticket)
        if "stats" in includes:
            shown["stats"] = dict(self._stats.get(ticket["id"], {}))
        if "requester" in includes:
            requester_id = ticket["requester_id"]
            shown["requester"] = copy.deepcopy(
                self.contacts.get(requester_id, {"id": requester_id, "name": None})
            )
        if "company" in includes:
            shown["company"] = {"id": ticket["company_id"]} if ticket["company_id"] else {}
        if "conversations" in includes:
            shown["conversations"] = copy.deepcopy(self.notes.get(ticket["id"], [])[:10])
        return shown


# ------------------------------------------------------------------------------------- validation

_Kind = Literal["int", "id", "str", "bool", "strings", "email", "emails", "datetime", "object"]
_EXPECTED: Final[dict[_Kind, str]] = {
    "int": "Integer",
    "id": "Positive Integer",
    "str": "String",
    "bool": "Boolean",
    "strings": "Array",
    "email": "String",
    "emails": "Array",
    "datetime": "String",
    "object": "key/value pair",
}
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True, slots=True)
class _Spec:
    kind: _Kind
    nullable: bool = False
    # The allowed values under these options; an empty result means "any".
    choices: Callable[[SandboxOptions], Collection[Any]] | None = None


_TICKET_FIELDS: Final[dict[str, _Spec]] = {
    "requester_id": _Spec("id"),
    "email": _Spec("email"),
    "phone": _Spec("str"),
    "twitter_id": _Spec("str"),
    "facebook_id": _Spec("str"),
    "unique_external_id": _Spec("str"),
    "name": _Spec("str"),
    "subject": _Spec("str"),
    "description": _Spec("str"),
    "status": _Spec("int", choices=lambda o: (*STATUSES, *o.custom_statuses)),
    "priority": _Spec("int", choices=lambda o: PRIORITIES),
    "source": _Spec("int", choices=lambda o: SOURCES),
    "type": _Spec("str", choices=lambda o: o.ticket_types),
    "tags": _Spec("strings"),
    "group_id": _Spec("id", nullable=True, choices=lambda o: o.groups),
    "responder_id": _Spec("id", nullable=True),  # null unassigns
    "company_id": _Spec("id", nullable=True),
    "product_id": _Spec("id", nullable=True),
    "email_config_id": _Spec("id"),
    "cc_emails": _Spec("emails"),
    "due_by": _Spec("datetime"),
    "fr_due_by": _Spec("datetime"),
    "custom_fields": _Spec("object"),
    "parent_id": _Spec("id"),
}
_SERVICE_FIELDS: Final[dict[str, _Spec]] = {
    "impact": _Spec("int", choices=lambda o: SERVICE_LEVELS),
    "urgency": _Spec("int", choices=lambda o: SERVICE_LEVELS),
}
_CREATE_ONLY: Final = frozenset({"parent_id"})
_NOTE_FIELDS: Final[dict[str, _Spec]] = {
    "body": _Spec("str"),
    "private": _Spec("bool"),
    "incoming": _Spec("bool"),
    "notify_emails": _Spec("emails"),
    "user_id": _Spec("id"),
}


def _ticket_errors(
    body: Mapping[str, Any], options: SandboxOptions, *, creating: bool
) -> list[_FieldError]:
    """Every problem with a create or update body that needs no stored data, in body order."""
    known = _TICKET_FIELDS | (_SERVICE_FIELDS if options.flavour == "freshservice" else {})
    errors: list[_FieldError] = []
    for name, value in body.items():
        spec = known.get(name)
        if spec is None or (name in _CREATE_ONLY and not creating):
            errors.append(_unexpected(name))
        elif name == "custom_fields" and isinstance(value, dict):
            errors.extend(_custom_field_errors(value, options))
        else:
            errors.extend(_value_errors(name, value, spec, options))
    if creating:
        errors.extend(_create_errors(body, options))
    return errors


def _create_errors(body: Mapping[str, Any], options: SandboxOptions) -> list[_FieldError]:
    errors = []
    if not any(name in body for name in REQUESTER_FIELDS):
        fields = ", ".join(REQUESTER_FIELDS)
        errors.append(
            _FieldError(
                "requester_id", f"Please fill at least 1 of {fields} fields", "missing_field"
            )
        )
    if "phone" in body and "email" not in body and "name" not in body:
        errors.append(_FieldError("name", "It is required when phone is given", "missing_field"))
    for name in options.required_fields:
        value = body.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            errors.append(_FieldError(name, "It should not be blank", "missing_field"))
    return errors


def _note_errors(body: Mapping[str, Any]) -> list[_FieldError]:
    errors: list[_FieldError] = []
    for name, value in body.items():
        spec = _NOTE_FIELDS.get(name)
        if spec is None:
            errors.append(_unexpected(name))
        else:
            errors.extend(_value_errors(name, value, spec, None))
    text = body.get("body")
    if text is None or (isinstance(text, str) and not text.strip()):
        errors.append(_FieldError("body", "It should not be blank", "missing_field"))
    return errors


def _custom_field_errors(values: Mapping[str, Any], options: SandboxOptions) -> list[_FieldError]:
    errors = []
    for name, value in values.items():
        field = f"custom_fields.{name}"
        if name not in options.custom_fields:
            errors.append(_unexpected(field))
        elif isinstance(value, list | dict):
            errors.append(_mismatch(field, value, "String, Number, Boolean or null"))
    return errors


def _value_errors(
    name: str, value: Any, spec: _Spec, options: SandboxOptions | None
) -> list[_FieldError]:
    if value is None:
        return [] if spec.nullable else [_mismatch(name, value, _EXPECTED[spec.kind])]
    if not _has_type(value, spec.kind):
        return [_mismatch(name, value, _EXPECTED[spec.kind])]
    if spec.kind in ("strings", "emails") and not all(isinstance(v, str) for v in value):
        return [
            _FieldError(name, "It should contain elements of type String only", "datatype_mismatch")
        ]
    emails = [value] if spec.kind == "email" else value if spec.kind == "emails" else []
    if any(_EMAIL.fullmatch(e) is None for e in emails):
        return [
            _FieldError(name, "It should be in the 'valid email address' format", "invalid_value")
        ]
    if spec.kind == "datetime" and _parse_time(value) is None:
        return [_FieldError(name, "It should be in the 'valid date-time' format", "invalid_value")]
    allowed = spec.choices(options) if spec.choices is not None and options is not None else ()
    if allowed and value not in allowed:
        listed = ",".join(str(choice) for choice in allowed)
        return [_FieldError(name, f"It should be one of these values: '{listed}'", "invalid_value")]
    return []


def _has_type(value: Any, kind: _Kind) -> bool:
    if kind == "int":
        return _is_int(value)
    if kind == "id":
        return _is_int(value) and value > 0
    if kind == "bool":
        return isinstance(value, bool)
    if kind in ("strings", "emails"):
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return isinstance(value, str)


def _is_int(value: Any) -> bool:
    # JSON true/false decode to bool, a subclass of int; the API calls those a type mismatch.
    return isinstance(value, int) and not isinstance(value, bool)


def _unexpected(field: str) -> _FieldError:
    return _FieldError(field, "Unexpected/invalid field in request", "invalid_field")


def _mismatch(field: str, value: Any, expected: str) -> _FieldError:
    got = _json_type(value)
    return _FieldError(
        field, f"Value set is of type {got}.It should be a/an {expected}", "datatype_mismatch"
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Number"
    if isinstance(value, str):
        return "String"
    return "Array" if isinstance(value, list) else "key/value pair"


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _iso(moment: float | datetime) -> str:
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_BREAKS: Final = re.compile(r"<\s*(?:br\s*/?|/p|/div|/li)\s*>", re.IGNORECASE)
_TAGS: Final = re.compile(r"<[^>]*>")


def _text(markup: str) -> str:
    """The plain text of an HTML body, as in `description_text` and `body_text`."""
    return html.unescape(_TAGS.sub("", _BREAKS.sub("\n", markup))).strip()


class _Params:
    """A query-string reader that collects every problem, as body validation does."""

    def __init__(self, request: web.Request, allowed: Collection[str]) -> None:
        self._query = request.query
        self.errors = [_unexpected(name) for name in self._query if name not in allowed]

    def number(self, name: str, default: int, high: int | None = None) -> int:
        value = self.optional_number(name)
        if value is None:
            return default
        if high is not None and value > high:
            self.errors.append(
                _FieldError(name, f"It should be between 1 and {high}", "invalid_value")
            )
            return default
        return value

    def optional_number(self, name: str) -> int | None:
        raw = self._query.get(name)
        if raw is None:
            return None
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
            self.errors.append(
                _FieldError(
                    name,
                    f"Value set is {raw!r}.It should be a/an Positive Integer",
                    "datatype_mismatch",
                )
            )
            return None
        return int(raw)

    def choice(self, name: str, default: str, choices: Sequence[str]) -> str:
        raw = self._query.get(name, default)
        if raw not in choices:
            self.errors.append(_choice_error(name, choices))
            return default
        return raw

    def since(self, name: str) -> datetime | None:
        raw = self._query.get(name)
        if raw is None:
            return None
        parsed = _parse_time(raw)
        if parsed is None:
            self.errors.append(
                _FieldError(name, "It should be in the 'valid date-time' format", "invalid_value")
            )
        return parsed

    def includes(self, choices: Sequence[str]) -> set[str]:
        wanted = set(_include_items(self._query.get("include")))
        if not wanted <= set(choices):
            self.errors.append(_choice_error("include", choices))
        return wanted

    def done(self) -> None:
        if self.errors:
            raise _invalid(self.errors)


def _choice_error(name: str, choices: Sequence[str]) -> _FieldError:
    return _FieldError(
        name, f"It should be one of these values: '{','.join(choices)}'", "invalid_value"
    )


def _include_items(raw: str | None) -> list[str]:
    return [item.strip() for item in raw.split(",")] if raw else []


# ----------------------------------------------------------------------------------------- search

_Predicate = Callable[[Mapping[str, Any]], bool]
_SEARCH_TOKEN: Final = re.compile(
    r"\s*(?:(?P<open>\()|(?P<close>\))|(?P<join>AND|OR)(?=[\s()]|$)"
    r"|(?P<field>[A-Za-z_]\w*):(?P<op>[<>]?)(?P<value>'[^']*'|-?\d+|null|true|false)(?=[\s()]|$))"
)
_SEARCH_NUMBERS: Final = frozenset({"status", "priority", "group_id", "agent_id"})
_SEARCH_DATES: Final = frozenset({"created_at", "updated_at", "due_by", "fr_due_by"})


class _QueryError(Exception):
    """The search query does not parse or names something that cannot be searched."""


def _compile_query(query: str, options: SandboxOptions) -> _Predicate:
    """A predicate over ticket snapshots for one query: `field:value`, AND over OR, parentheses."""
    tokens: list[re.Match[str]] = []
    position = 0
    while query[position:].strip():
        match = _SEARCH_TOKEN.match(query, position)
        if match is None:
            raise _QueryError(f"cannot parse the query at character {position + 1}")
        tokens.append(match)
        position = match.end()
    if not tokens:
        raise _QueryError("the query is empty")
    parser = _QueryParser(tokens, options)
    predicate = parser.either()
    if parser.position != len(tokens):
        raise _QueryError(f"unexpected {tokens[parser.position].group().strip()!r}")
    return predicate


class _QueryParser:
    """Recursive descent over the tokens; AND binds tighter than OR, as usual."""

    def __init__(self, tokens: list[re.Match[str]], options: SandboxOptions) -> None:
        self.tokens = tokens
        self.position = 0
        self.options = options

    def either(self) -> _Predicate:
        left = self.both()
        while self._peek("join") == "OR":
            self.position += 1
            left = _any_of(left, self.both())
        return left

    def both(self) -> _Predicate:
        left = self.atom()
        while self._peek("join") == "AND":
            self.position += 1
            left = _all_of(left, self.atom())
        return left

    def atom(self) -> _Predicate:
        if self.position >= len(self.tokens):
            raise _QueryError("the query ends where a condition was expected")
        token = self.tokens[self.position]
        self.position += 1
        if token["open"]:
            inner = self.either()
            if self._peek("close") is None:
                raise _QueryError("a parenthesis is not closed")
            self.position += 1
            return inner
        if token["field"]:
            return _condition(token["field"], token["op"], token["value"], self.options)
        raise _QueryError(f"unexpected {token.group().strip()!r}")

    def _peek(self, group: str) -> str | None:
        if self.position >= len(self.tokens):
            return None
        found: str | None = self.tokens[self.position][group]
        return found


def _any_of(left: _Predicate, right: _Predicate) -> _Predicate:
    return lambda ticket: left(ticket) or right(ticket)


def _all_of(left: _Predicate, right: _Predicate) -> _Predicate:
    return lambda ticket: left(ticket) and right(ticket)


def _condition(field: str, op: str, raw: str, options: SandboxOptions) -> _Predicate:
    value = _search_value(raw)
    numbers = _SEARCH_NUMBERS | (
        {"impact", "urgency"} if options.flavour == "freshservice" else set()
    )
    if value is None and op:
        raise _QueryError(f"{field}:{op}null compares with nothing")
    if field in numbers:
        if not (value is None or _is_int(value)):
            raise _QueryError(f"{field} takes a number or null, not {raw}")
        key = "responder_id" if field == "agent_id" else field
        return _comparison(lambda t: t.get(key), op, value)
    if field in ("type", "tag"):
        if op or not (value is None or isinstance(value, str)):
            raise _QueryError(f"{field} takes a 'quoted string' or null")
        if field == "type":
            return _comparison(lambda t: t.get("type"), "", value)
        if value is None:
            return lambda t: not t["tags"]
        return lambda t: any(_same(tag, value) for tag in t["tags"])
    if field in _SEARCH_DATES:
        if value is not None and not (isinstance(value, str) and _is_day(value)):
            raise _QueryError(f"{field} takes a 'YYYY-MM-DD' date or null")
        return _comparison(lambda t: t[field] and t[field][:10], op, value)
    if field in options.custom_fields:
        if op and not _is_int(value):
            raise _QueryError(f"{field}:{op} needs a number")
        return _comparison(lambda t: t["custom_fields"].get(field), op, value)
    raise _QueryError(f"'{field}' is not a searchable field")


def _search_value(raw: str) -> Any:
    # The token pattern admits only 'quoted', an integer, null, true and false here.
    if raw.startswith("'"):
        return raw[1:-1]
    constants = {"null": None, "true": True, "false": False}
    return constants[raw] if raw in constants else int(raw)


def _comparison(get: Callable[[Mapping[str, Any]], Any], op: str, value: Any) -> _Predicate:
    """`:` is equality, `:>` is at least and `:<` is at most; null matches an empty field."""

    def matches(ticket: Mapping[str, Any]) -> bool:
        actual = get(ticket)
        if value is None or actual is None:
            return value is None and actual in (None, "")
        if not op:
            return _same(actual, value)
        if type(actual) is not type(value):
            return False
        return bool(actual >= value if op == ">" else actual <= value)

    return matches


def _same(actual: Any, value: Any) -> bool:
    # String values match without regard to case, as the search index does.
    if isinstance(actual, str) and isinstance(value, str):
        return actual.casefold() == value.casefold()
    return bool(type(actual) is type(value) and actual == value)


def _is_day(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


# ------------------------------------------------------------------------------------------- HTTP

SANDBOX: Final = web.AppKey("sandbox", Sandbox)


@web.middleware
async def _front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record every request and answer it, or drop its connection when a handler asks to."""
    sandbox = request.app[SANDBOX]
    arrived = sandbox.now()
    status: int | None = None
    try:
        response = await _guarded(sandbox, request, handler)
        status = response.status
        return response
    except _DropConnection:
        # Closed before a byte of the answer is written: the client sees the server go away.
        # aiohttp then fails to write the placeholder below and ignores that as a disconnect.
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=500)
    finally:
        body = await _body_for_record(request)
        sandbox.requests.append(
            RequestRecord(request.method, request.path, dict(request.query), status, arrived, body)
        )


async def _guarded(sandbox: Sandbox, request: web.Request, handler: Handler) -> web.StreamResponse:
    """Faults, then the rate limit, then the transport rules, then the endpoint."""
    options = sandbox.options
    window = sandbox._window
    now = sandbox.now()
    window.roll(now)
    cost = 1 + options.include_cost * len(_include_items(request.query.get("include")))
    limit = options.rate_limit_per_minute
    fault = sandbox._take_fault()
    response: web.StreamResponse
    if fault is not None:
        # A failed request still spends credits, as on the real service.
        charged = min(cost, limit - window.used)
        window.used += charged
        response = _fault_response(fault.status)
        if fault.retry_after is not None or fault.status == 429:
            retry = fault.retry_after if fault.retry_after is not None else window.resets_in(now)
            response.headers[hdrs.RETRY_AFTER] = str(retry)
    elif window.used + cost > limit:
        charged = 0
        response = _error(
            429, "rate_limit_exceeded", "You have exceeded the limit of requests per minute"
        ).response()
        response.headers[hdrs.RETRY_AFTER] = str(window.resets_in(now))
    else:
        charged = cost
        window.used += cost
        response = await _endpoint(options, request, handler)
    response.headers["X-RateLimit-Total"] = str(limit)
    response.headers["X-RateLimit-Remaining"] = str(max(0, limit - window.used))
    response.headers["X-RateLimit-Used-CurrentRequest"] = str(charged)
    return response


def _fault_response(status: int) -> web.Response:
    phrase = HTTPStatus(status).phrase
    if status >= 500:
        # A gateway in front of the API answers 5xx with a page, not JSON; clients must cope.
        page = f"<html><body><h1>{status} {phrase}</h1></body></html>"
        return web.Response(status=status, text=page, content_type="text/html")
    return _error(status, phrase.lower().replace(" ", "_"), phrase).response()


async def _endpoint(
    options: SandboxOptions, request: web.Request, handler: Handler
) -> web.StreamResponse:
    try:
        _check_transport(options, request)
        return await handler(request)
    except _Reject as rejected:
        return rejected.response()
    except web.HTTPException as exc:
        return _from_http_exception(exc)


def _check_transport(options: SandboxOptions, request: web.Request) -> None:
    if not _authorised(request.headers.get(hdrs.AUTHORIZATION), options.api_key):
        raise _error(401, "invalid_credentials", "You have to be logged in to perform this action.")
    accept = request.headers.get(hdrs.ACCEPT)
    if accept is not None and not _accepts_json(accept):
        raise _error(406, "invalid_accept_header", "This request only supports application/json")
    route_problem = request.match_info.http_exception
    if route_problem is not None:
        raise route_problem
    if (
        request.method in (hdrs.METH_POST, hdrs.METH_PUT)
        and request.content_type != "application/json"
    ):
        raise _error(
            415,
            "invalid_content_type",
            f"Content-Type is {request.content_type}. It should be application/json",
        )


def _authorised(header: str | None, api_key: str) -> bool:
    # Decoded by hand: aiohttp 3.14 deprecates BasicAuth, and warnings are errors in our tests.
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    login, colon, _password = decoded.partition(":")
    return bool(colon) and login == api_key  # the password is ignored, as on the real service


def _accepts_json(accept: str) -> bool:
    types = [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]
    return not types or any(t in ("application/json", "*/*") for t in types)


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    if exc.status == 404:
        return _not_found().response()
    headers: dict[str, str] = {}
    if hdrs.ALLOW in exc.headers:
        headers[hdrs.ALLOW] = exc.headers[hdrs.ALLOW]
    code = HTTPStatus(exc.status).phrase.lower().replace(" ", "_")
    return _Reject(exc.status, {"code": code, "message": exc.reason}, headers).response()


async def _body_for_record(request: web.Request) -> Any:
    if not request.body_exists:
        return None
    try:
        raw = await request.read()  # cached if the handler read it already
    except (web.HTTPException, ConnectionError):
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except ValueError as exc:
        raise _error(400, "invalid_json", f"Request body has invalid json format: {exc}") from exc
    if not isinstance(value, dict):
        raise _error(400, "invalid_json", "Request body must be a JSON object")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _ticket_id(request: web.Request) -> int:
    return int(request.match_info["ticket_id"])


def _next_link(request: web.Request, page: int) -> dict[str, str]:
    url = request.url.update_query(page=str(page + 1))
    return {hdrs.LINK: f'<{url}>; rel="next"'}


async def _create_ticket(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    _Params(request, ()).done()
    ticket = sandbox._create(await _json_object(request))
    if sandbox._stalls:
        await asyncio.sleep(sandbox._stalls.popleft())
    if sandbox._take_drop():
        raise _DropConnection
    return web.json_response(sandbox._render(ticket, ()), status=201)


async def _view_ticket(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    ticket = sandbox._existing(_ticket_id(request))
    params = _Params(request, ("include",))
    includes = params.includes(("stats", "requester", "company", "conversations"))
    params.done()
    return web.json_response(sandbox._render(ticket, includes))


async def _update_ticket(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    _Params(request, ()).done()
    ticket = sandbox._update(_ticket_id(request), await _json_object(request))
    return web.json_response(sandbox._render(ticket, ()))


async def _delete_ticket(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    ticket_id = _ticket_id(request)
    sandbox._existing(ticket_id)
    sandbox.delete(ticket_id)
    return web.Response(status=204)


async def _add_note(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    ticket_id = _ticket_id(request)
    sandbox._existing(ticket_id)  # an unknown ticket is a 404 even when the body is also bad
    _Params(request, ()).done()
    note = sandbox._add_note(ticket_id, await _json_object(request))
    return web.json_response(note, status=201)


async def _conversations(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    ticket_id = _ticket_id(request)
    sandbox._existing(ticket_id)
    params = _Params(request, ("page", "per_page"))
    page = params.number("page", 1)
    per_page = params.number("per_page", 30, high=MAX_PER_PAGE)
    params.done()
    notes = sandbox.notes[ticket_id]
    start = (page - 1) * per_page
    more = len(notes) > start + per_page
    headers = _next_link(request, page) if more else {}
    return web.json_response(notes[start : start + per_page], headers=headers)


_LIST_PARAMS: Final = (
    "filter",
    "requester_id",
    "email",
    "unique_external_id",
    "company_id",
    "updated_since",
    "order_by",
    "order_type",
    "page",
    "per_page",
    "include",
)


async def _list_tickets(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    params = _Params(request, _LIST_PARAMS)
    view = params.choice("filter", "", ("", "new_and_my_open", "watching", "spam", "deleted"))
    requester_id = params.optional_number("requester_id")
    company_id = params.optional_number("company_id")
    since = params.since("updated_since")
    order_by = params.choice(
        "order_by", "created_at", ("created_at", "due_by", "updated_at", "status")
    )
    descending = params.choice("order_type", "desc", ("asc", "desc")) == "desc"
    page = params.number("page", 1)
    per_page = params.number("per_page", 30, high=MAX_PER_PAGE)
    includes = params.includes(("description", "requester", "stats"))
    params.done()

    email, external = request.query.get("email"), request.query.get("unique_external_id")
    if email is not None:
        requester_id = sandbox._find_contact("email", email) or -1
    elif external is not None:
        requester_id = sandbox._find_contact("unique_external_id", external) or -1
    now = sandbox.now()
    pool = sandbox.deleted if view == "deleted" else sandbox.tickets

    def wanted(ticket: dict[str, Any]) -> bool:
        ticket_id = ticket["id"]
        if since is not None:
            # Compare whole seconds: the client only ever saw updated_at to the second.
            fresh = math.floor(sandbox._updated[ticket_id]) >= since.timestamp()
        else:
            fresh = sandbox._created[ticket_id] >= now - LIST_DAYS * 86400
        return (
            fresh
            and (requester_id is None or ticket["requester_id"] == requester_id)
            and (company_id is None or ticket["company_id"] == company_id)
            and (view != "spam" or ticket["spam"])
            and (
                view != "new_and_my_open"
                or (ticket["status"] == 2 and ticket["responder_id"] in (None, AGENT_ID))
            )
            and view != "watching"  # nobody watches anything here
        )

    def sort_key(ticket: dict[str, Any]) -> tuple[Any, int]:
        ticket_id: int = ticket["id"]
        if order_by == "created_at":
            return (sandbox._created[ticket_id], ticket_id)
        if order_by == "updated_at":
            return (sandbox._updated[ticket_id], ticket_id)
        return (ticket[order_by] or "", ticket_id)

    found = sorted(filter(wanted, pool.values()), key=sort_key, reverse=descending)
    start = (page - 1) * per_page
    shown = [
        _listed(sandbox._render(t, includes), includes) for t in found[start : start + per_page]
    ]
    headers = _next_link(request, page) if len(found) > start + per_page else {}
    return web.json_response(shown, headers=headers)


def _listed(ticket: dict[str, Any], includes: Collection[str]) -> dict[str, Any]:
    # Accounts created after 2018-11-30 list tickets without the description unless asked for.
    if "description" not in includes:
        del ticket["description"], ticket["description_text"]
    return ticket


async def _search_tickets(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    params = _Params(request, ("query", "page", "per_page"))  # per_page is accepted and ignored
    page = params.number("page", 1, high=SEARCH_MAX_PAGE)
    raw = request.query.get("query")
    predicate: _Predicate | None = None
    if raw is None:
        params.errors.append(_FieldError("query", "It should be a/an String", "missing_field"))
    elif len(raw) < 2 or not (raw.startswith('"') and raw.endswith('"')):
        params.errors.append(
            _FieldError("query", "The query should be wrapped in double quotes", "invalid_value")
        )
    elif len(raw) - 2 > SEARCH_MAX_QUERY:
        params.errors.append(
            _FieldError(
                "query", f"It should be at most {SEARCH_MAX_QUERY} characters", "invalid_value"
            )
        )
    else:
        try:
            predicate = _compile_query(raw[1:-1], sandbox.options)
        except _QueryError as exc:
            params.errors.append(_FieldError("query", str(exc), "invalid_value"))
    params.done()
    assert predicate is not None  # every path that leaves it None added an error above
    found = sorted(
        filter(predicate, sandbox._indexed()),
        key=lambda t: (t["created_at"], t["id"]),
        reverse=True,
    )
    start = (page - 1) * SEARCH_PAGE_SIZE
    results = [_listed(copy.deepcopy(t), ()) for t in found[start : start + SEARCH_PAGE_SIZE]]
    return web.json_response({"total": len(found), "results": results})


def create_app(options: SandboxOptions | None = None) -> web.Application:
    """The sandbox as an aiohttp app; `app[SANDBOX]` is its state."""
    app = web.Application(middlewares=[_front_door])
    app[SANDBOX] = Sandbox(options)
    one = API + r"/tickets/{ticket_id:\d+}"
    app.router.add_post(f"{API}/tickets", _create_ticket)
    app.router.add_get(f"{API}/tickets", _list_tickets)
    app.router.add_get(one, _view_ticket)
    app.router.add_put(one, _update_ticket)
    app.router.add_delete(one, _delete_ticket)
    app.router.add_post(f"{one}/notes", _add_note)
    app.router.add_get(f"{one}/conversations", _conversations)
    app.router.add_get(f"{API}/search/tickets", _search_tickets)
    return app


async def serve(host: str, port: int, options: SandboxOptions) -> None:
    """Serve the sandbox until cancelled; print where it listens (port 0 picks a free one)."""
    runner = web.AppRunner(create_app(options))
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        for address in runner.addresses:
            where = f"[{address[0]}]" if ":" in address[0] else address[0]
            print(
                f"sandbox: Freshdesk API v2 at http://{where}:{address[1]}{API}/"
                f" (Basic auth, user {options.api_key!r}, any password)",
                flush=True,
            )
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
