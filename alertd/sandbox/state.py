"""The helpdesk's state (`Sandbox`): tickets (live, in the trash, archived), notes, contacts, the
request log, injected faults, the clock, the rate-limit windows and the search index with its lag;
the API's operations on that state; and the app key (`SANDBOX`) under which an app holds it."""

from __future__ import annotations

import asyncio
import copy
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from alertd.sandbox.account import AGENT_ID, REQUESTER_FIELDS, WINDOW_SECONDS, SandboxOptions
from alertd.sandbox.errors import _error, _FieldError, _invalid, _not_found
from alertd.sandbox.formats import _iso, _parse_time, _text
from alertd.sandbox.validation import _is_int, _note_errors, _ticket_errors

# SLA deadlines by priority (first response, resolution) in hours, for tickets that set none.
_SLA_HOURS: Final = {1: (24, 72), 2: (8, 48), 3: (4, 24), 4: (1, 4)}
# Freshdesk's ticket fields that Freshservice's ticket does not have.
_DESK_ONLY: Final = (
    "product_id", "company_id", "association_type", "associated_tickets_count", "support_email",
    "source_additional_info", "structured_description", "nr_due_by", "nr_escalated", "form_id",
)  # fmt: skip


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
class Applied:
    """One write as it took effect (which, on a helpdesk that acts late, is not when it came):
    `kind` is "create", "update" or "note"; `body` is what the client sent."""

    kind: str
    ticket_id: int
    body: dict[str, Any]
    time: float


@dataclass(frozen=True, slots=True)
class _Fault:
    status: int
    retry_after: int | None
    # A 2xx whose body is not what the API sends: "html", "no_id" or "charset".
    garble: str | None = None


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
        # In the trash: still viewable (`deleted: true`), but an update or a note answers 405.
        self.deleted: dict[int, dict[str, Any]] = {}
        # Archived (closed, inactive for months): 404 on the ticket paths, readable only under
        # /tickets/archived/{id}, never in list or search.
        self.archived: dict[int, dict[str, Any]] = {}
        self.merged: dict[int, int] = {}  # secondary -> primary; the API itself shows no such field
        self.notes: dict[int, list[dict[str, Any]]] = {}
        self.contacts: dict[int, dict[str, Any]] = {}  # requesters, created from email/phone/...
        self.requests: list[RequestRecord] = []
        # Every create, update and note in the order they took effect, for tests that check
        # the order a client's operations landed in.
        self.applied: list[Applied] = []
        self._now: Callable[[], float] = _steady_wall_clock()
        self._faults: deque[_Fault] = deque()
        self._drops = 0
        self._stalls: deque[float] = deque()
        self._late: dict[str, deque[float]] = {k: deque() for k in ("create", "update", "note")}
        self._acting: set[asyncio.Task[dict[str, Any]]] = set()
        self._window = _RateWindow()
        self._class_windows: dict[str, _RateWindow] = {}
        self._ticket_ids = itertools.count(self.options.first_ticket_id)
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

    def act_late(self, seconds: float, count: int = 1, *, kind: str = "create") -> None:
        """The next `count` writes of `kind` ("create", "update" or "note") wait `seconds`
        before they take effect, then answer (a slow helpdesk: a client that gave up, or died,
        has not seen the effect yet, and nor has anyone who looks for it meanwhile).
        `SandboxOptions.act_late` does this to every write."""
        if kind not in self._late:
            raise ValueError(f"act_late takes create, update or note, not {kind!r}")
        self._late[kind].extend([seconds] * count)

    def _lateness(self, kind: str) -> float:
        """How late this write acts: a one-off `act_late` of its kind, else the option."""
        if self._late[kind]:
            return self._late[kind].popleft()
        return self.options.act_late

    async def _act(self, kind: str, act: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run the write `act` now, or after its lateness; a late one runs whatever becomes of
        the client meanwhile: a client that gives up or dies does not stop a server that has
        the request (aiohttp cancels the handler when the connection goes; the shielded task
        goes on)."""
        seconds = self._lateness(kind)
        if seconds <= 0:
            return act()

        async def later() -> dict[str, Any]:
            await asyncio.sleep(seconds)
            return act()

        task = asyncio.create_task(later())
        self._acting.add(task)  # a strong reference until it is done
        task.add_done_callback(self._acting.discard)
        # A refusal nobody is left to hear is still the answer: retrieved, not warned about.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.shield(task)

    def drop_after_create(self, count: int = 1) -> None:
        """Let the next `count` valid creates store their ticket, then close without answering."""
        self._drops += count

    def answer_oddly_next(self, garble: str, count: int = 1) -> None:
        """Answer the next `count` requests with a 2xx whose body is not the API's: an HTML page
        ("html"), a JSON object without an id ("no_id"), or bytes not in the declared charset
        ("charset"). Like `fail_next`, before auth and validation: nothing is stored."""
        if garble not in ("html", "no_id", "charset"):
            raise ValueError(f"answer_oddly_next takes html, no_id or charset, not {garble!r}")
        self._faults.extend([_Fault(200, None, garble)] * count)

    def delete(self, ticket_id: int) -> None:
        """Move a ticket to the trash as an agent would: it can still be viewed (`deleted:
        true`), but an update or a note answers 405 until it is restored."""
        self.deleted[ticket_id] = self.tickets.pop(ticket_id)
        self._index(ticket_id, None)

    def mark_spam(self, ticket_id: int) -> None:
        """Mark a ticket as spam as an agent would: an update or a note then answers 405."""
        self.tickets[ticket_id]["spam"] = True
        self._change(self.tickets[ticket_id], {})

    def archive(self, ticket_id: int) -> None:
        """Archive a closed ticket as the helpdesk does after months without activity."""
        ticket = self.tickets.pop(ticket_id)
        if ticket["status"] != 5:
            self.tickets[ticket_id] = ticket
            raise ValueError(f"archive({ticket_id}): only closed tickets are archived")
        self.archived[ticket_id] = ticket
        self._index(ticket_id, None)

    def merge(self, primary_id: int, secondary_ids: Collection[int]) -> None:
        """Merge tickets into `primary_id` as an agent would (`PUT /tickets/merge`): each secondary
        is closed and gets a private note naming the primary."""
        self._merge({"primary_id": primary_id, "ticket_ids": list(secondary_ids)})

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
        self.applied.append(Applied("create", ticket_id, body, now))
        return ticket

    def _update(self, ticket_id: int, body: dict[str, Any]) -> dict[str, Any]:
        ticket = self._writable(ticket_id)
        errors = _ticket_errors(body, self.options, creating=False) + self._reference_errors(body)
        if not errors and body.get("status") in (4, 5) and not body.get("bypass_mandatory"):
            errors = self._closure_errors(ticket, body)
        if errors:
            raise _invalid(errors)
        self._change(ticket, body)
        self.applied.append(Applied("update", ticket_id, body, self.now()))
        return ticket

    def _closure_errors(
        self, ticket: Mapping[str, Any], body: Mapping[str, Any]
    ) -> list[_FieldError]:
        """Fields the account requires to resolve or close, still empty after this update."""
        errors = []
        for name in self.options.required_for_closure:
            custom = name.removeprefix("custom_fields.")
            if custom != name:
                value = body.get("custom_fields", {}).get(
                    custom, ticket["custom_fields"].get(custom)
                )
            else:
                value = body.get(name, ticket.get(name))
            if value in (None, ""):
                errors.append(_FieldError(name, "It should not be blank", "missing_field"))
        return errors

    def _restore(self, ticket_id: int) -> None:
        if ticket_id not in self.deleted:
            raise (
                _not_found()
                if ticket_id not in self.tickets
                else _error(400, "invalid_value", "The ticket is not deleted")
            )
        ticket = self.deleted.pop(ticket_id)
        self.tickets[ticket_id] = ticket
        self._change(ticket, {})

    def _merge(self, body: Mapping[str, Any]) -> None:
        primary: Any = body.get("primary_id")
        secondaries = body.get("ticket_ids")
        if not _is_int(primary) or not isinstance(secondaries, list) or not secondaries:
            raise _invalid(
                [
                    _FieldError(
                        "ticket_ids", "primary_id and ticket_ids are required", "missing_field"
                    )
                ]
            )
        for ticket_id in (primary, *secondaries):
            if not _is_int(ticket_id) or ticket_id not in self.tickets:
                raise _invalid(
                    [_FieldError("ticket_ids", f"There is no ticket {ticket_id}", "invalid_value")]
                )
        for ticket_id in secondaries:
            if ticket_id == primary:
                continue
            self._add_note(
                ticket_id,
                {"body": f"<p>This ticket is closed and merged into ticket {primary}</p>"},
            )
            self.merged[ticket_id] = primary
            self._change(self.tickets[ticket_id], {"status": 5})

    def _add_note(self, ticket_id: int, body: dict[str, Any]) -> dict[str, Any]:
        ticket = self._writable(ticket_id)
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
        self.applied.append(Applied("note", ticket_id, body, self.now()))
        return note

    def _existing(self, ticket_id: int) -> dict[str, Any]:
        """A ticket to read: a live one or one in the trash; archived ones are not here."""
        ticket = self.tickets.get(ticket_id) or self.deleted.get(ticket_id)
        if ticket is None:
            raise _not_found()
        return ticket

    def _writable(self, ticket_id: int) -> dict[str, Any]:
        """A ticket to change: spam and trashed tickets refuse with 405 (docs/protocols.md 1.4)."""
        ticket = self._existing(ticket_id)
        if ticket_id in self.deleted or ticket["spam"]:
            raise _error(405, "method_not_allowed", "This action is not allowed on this ticket")
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
        if self.options.service:
            for name in _DESK_ONLY:
                del ticket[name]
            ticket |= {
                "impact": 1,
                "urgency": 1,
                "category": None,
                "sub_category": None,
                "item_category": None,
                "department_id": None,
                "requested_for_id": None,
                "workspace_id": self.options.workspaces[0],
                "deleted": False,
            }
        return ticket

    def _change(self, ticket: dict[str, Any], body: Mapping[str, Any]) -> None:
        """Apply already-validated fields, bump updated_at and queue the result for indexing."""
        now = self.now()
        ticket_id: int = ticket["id"]
        for name, value in body.items():
            if name in REQUESTER_FIELDS or name in ("name", "bypass_mandatory"):
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
        matrix = self.options.priority_matrix
        if matrix is not None and ("impact" in body or "urgency" in body):
            # The matrix overrules the priority sent (docs/protocols.md 1.10).
            ticket["priority"] = matrix.get((ticket["impact"], ticket["urgency"]), 1)
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
        if ticket["id"] in self.deleted:
            shown["deleted"] = True
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


SANDBOX: Final = web.AppKey("sandbox", Sandbox)
