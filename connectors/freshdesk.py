"""Freshdesk API v2 client (and its Freshservice flavour): tickets, notes, lookups.

Talks HTTP through the one `aiohttp.ClientSession` the app owns; paces every call through the
shared `RateLimiter`; turns every failure into the `HelpdeskError` tree so the dispatcher can
decide between retrying, waiting, re-creating and dead-lettering. Short in-process retries
(tenacity) only where repeating cannot double an effect: reads and PUTs, and any request the
server provably never received. Facts: docs/protocols.md section 1.

The two products share paths for tickets and notes, but Freshservice wraps every answer in an
object (`{"ticket": ...}`), looks tickets up at `/tickets/filter` (it has no `/search/tickets`),
keeps tickets in workspaces, and has no `order_by` on its list (1.10). The rest of alertd sees
plain tickets either way.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import aiohttp
import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from alertd import sending
from alertd.config import HelpdeskConfig
from alertd.errors import (
    AuthFailed,
    HelpdeskError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TicketArchived,
    TicketGone,
    TransientError,
)
from alertd.metrics import Metrics
from alertd.ratelimit import CallClass, RateLimiter
from alertd.tickets import CreatePayload

log: structlog.typing.FilteringBoundLogger = structlog.get_logger(__name__)

# Freshservice takes impact and urgency natively, on a 1 (low) .. 3 (high) scale.
_LEVEL = {"low": 1, "medium": 2, "high": 3}
_BODY_SHOWN = 500  # how much of an error body is kept for the dead-letter record
# The private note a merge leaves on each secondary ticket (docs/protocols.md 1.4).
_MERGED = re.compile(r"merged into ticket #?(\d+)", re.IGNORECASE)
RETRY_INITIAL = 0.5  # seconds before the first in-process retry (tests shorten it)


class FreshdeskClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: HelpdeskConfig,
        limiter: RateLimiter,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self._session = session
        self._metrics = metrics
        self._limiter = limiter
        self.reconfigure(config)

    def reconfigure(self, config: HelpdeskConfig) -> None:
        """Use `config` from the next request on (a reload: new key, URL or fields)."""
        self._config = config
        # Basic auth: the API key is the user name; the password is ignored ("X" by custom).
        # Built by hand: aiohttp.BasicAuth is deprecated from aiohttp 3.14 on.
        token = base64.b64encode(f"{config.api_key}:X".encode()).decode()
        self._headers = {"Accept": "application/json", "Authorization": f"Basic {token}"}
        self._base = f"{config.url}/api/v2"
        self._service = config.kind == "freshservice"

    def _workspace(self) -> dict[str, str]:
        """The workspace a Freshservice list or filter reads: the configured one, else the
        primary one (what the API reads when none is named)."""
        workspace = self._config.workspace_id
        return {"workspace_id": str(workspace)} if self._service and workspace else {}

    # -- tickets --------------------------------------------------------------------------------

    def create_body(self, payload: CreatePayload) -> dict[str, Any]:
        """The create request for a planned CREATE (alertd.tickets), with the account's fields."""
        c = self._config
        body: dict[str, Any] = {
            "email": c.requester_email,
            "subject": payload["subject"],
            "description": payload["description"],
            "status": 2,
            "priority": payload["priority"],
            "source": c.source,
            "type": c.type,
            "tags": list(payload["tags"]),
        }
        if c.group_id is not None:
            body["group_id"] = c.group_id
        if c.custom_fields:
            body["custom_fields"] = dict(c.custom_fields)
        if self._service:
            body["impact"] = _LEVEL[payload["impact"]]
            body["urgency"] = _LEVEL[payload["urgency"]]
            if c.workspace_id is not None:
                body["workspace_id"] = c.workspace_id
        # The routing rule's fields (alertd.routing) beat the configured defaults.
        body.update(payload.get("fields", {}))
        return body

    async def create_ticket(self, body: Mapping[str, Any]) -> dict[str, Any]:
        result = await self._call(
            "POST", "/tickets", body=body, operation="create_ticket", call_class=CallClass.CREATE
        )
        ticket = self._ticket(result, "create_ticket")
        if "priority" in body and ticket.get("priority") != body["priority"]:
            # Freshservice's Priority Matrix derives priority from impact and urgency and
            # overrules ours at create; the ticket keeps the matrix's (README, Freshservice).
            log.warning(
                "helpdesk_priority_overruled",
                ticket_id=ticket["id"],
                sent=body["priority"],
                kept=ticket.get("priority"),
                hint="the account's Priority Matrix decides; see the README",
            )
        return ticket

    async def update_ticket(self, ticket_id: int, fields: Mapping[str, Any]) -> dict[str, Any]:
        body = dict(fields)
        if self._config.bypass_mandatory and body.get("status") in (4, 5):
            body["bypass_mandatory"] = True  # admin keys only: skip required-for-closure fields
        result = await self._call(
            "PUT",
            f"/tickets/{ticket_id}",
            body=body,
            operation="update_ticket",
            ticket_id=ticket_id,
            idempotent=True,
            call_class=CallClass.UPDATE,
        )
        return self._ticket(result, "update_ticket")

    async def restore_ticket(self, ticket_id: int) -> None:
        """Take a ticket out of the trash (`on_missing_ticket = "restore"`)."""
        await self._call(
            "PUT",
            f"/tickets/{ticket_id}/restore",
            operation="restore_ticket",
            ticket_id=ticket_id,
            idempotent=True,
        )

    async def merged_into(self, ticket_id: int) -> int | None:
        """The primary ticket a (closed) ticket was merged into, from the note the merge left;
        None if it was not merged. The API has no field for it (docs/protocols.md 1.4)."""
        for page in range(1, 51):
            entries = await self.conversations(ticket_id, page)
            for entry in entries:
                found = _MERGED.search(str(entry.get("body_text") or entry.get("body") or ""))
                if found:
                    return int(found.group(1))
            if len(entries) < 100:
                return None
        return None

    async def ticket_fields(self) -> list[dict[str, Any]]:
        """The account's ticket fields (custom statuses are the `status` field's choices)."""
        path = "/ticket_form_fields" if self._service else "/ticket_fields"
        result = await self._call("GET", path, operation="ticket_fields", idempotent=True)
        return _array(self._unwrap(result, "ticket_fields", "ticket_fields"), "ticket_fields")

    async def add_note(
        self,
        ticket_id: int,
        body_html: str,
        *,
        private: bool,
        notify_emails: Sequence[str] = (),
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"body": body_html, "private": private}
        if notify_emails:
            body["notify_emails"] = list(notify_emails)  # agents to alert, e.g. a director
        result = await self._call(
            "POST",
            f"/tickets/{ticket_id}/notes",
            body=body,
            operation="add_note",
            ticket_id=ticket_id,
        )
        return _object(self._unwrap(result, "conversation", "add_note"), "add_note")

    async def view_ticket(self, ticket_id: int) -> dict[str, Any]:
        result = await self._call(
            "GET",
            f"/tickets/{ticket_id}",
            operation="view_ticket",
            ticket_id=ticket_id,
            idempotent=True,
            call_class=CallClass.VIEW,
        )
        return self._ticket(result, "view_ticket")

    async def probe(self, now: datetime) -> None:
        """Whether the helpdesk answers now: one small list request, no in-process retry (the
        dispatcher's probe is a retry loop of its own, and must see each failure: a failure
        retried away here would hide the outage whose end releases the backlog)."""
        params = {"updated_since": _since(now), "per_page": "1", **self._workspace()}
        await self._call("GET", "/tickets", params=params, operation="list_tickets",
                         idempotent=True, call_class=CallClass.LIST, attempts=1)  # fmt: skip

    async def list_tickets(
        self, updated_since: datetime, page: int = 1, *, oldest_first: bool = False
    ) -> list[dict[str, Any]]:
        """Tickets updated since a time, newest first (no search-index lag, unlike search):
        what alertd looks for was created recently, so it comes on the first pages. With
        `oldest_first`, by the time of their last change, oldest first (the ticket poll)."""
        order_by = "updated_at" if oldest_first else "created_at"
        params = {
            "updated_since": _since(updated_since),
            # Freshservice has no order_by: its list is newest first by creation anyway.
            **({} if self._service else {"order_by": order_by}),
            "order_type": "asc" if oldest_first else "desc",
            "per_page": "100",
            "page": str(page),
            **self._workspace(),
        }
        result = await self._call(
            "GET",
            "/tickets",
            params=params,
            operation="list_tickets",
            idempotent=True,
            call_class=CallClass.LIST,
        )
        return _array(self._unwrap(result, "tickets", "list_tickets"), "list_tickets")

    async def search_tag(self, tag: str) -> list[dict[str, Any]]:
        """Tickets carrying `tag`, from the search index (which lags by minutes): Freshdesk's
        `/search/tickets`, Freshservice's `/tickets/filter` (same query language)."""
        params = {"query": f"\"tag:'{tag}'\""}
        if self._service:
            path, key = "/tickets/filter", "tickets"
            params |= self._workspace()
        else:
            path, key = "/search/tickets", "results"
        result = await self._call(
            "GET",
            path,
            params=params,
            operation="search",
            idempotent=True,
            call_class=CallClass.LIST,
        )
        if not isinstance(result, dict) or not isinstance(result.get(key), list):
            raise PermanentError("search: unexpected answer shape", body=_shown(result))
        return [t for t in result[key] if isinstance(t, dict)]

    async def conversations(self, ticket_id: int, page: int = 1) -> list[dict[str, Any]]:
        result = await self._call(
            "GET",
            f"/tickets/{ticket_id}/conversations",
            params={"page": str(page), "per_page": "100"},
            operation="conversations",
            ticket_id=ticket_id,
            idempotent=True,
        )
        return _array(self._unwrap(result, "conversations", "conversations"), "conversations")

    async def find_by_tag(
        self, tag: str, since: datetime, *, exclude: int | None = None
    ) -> dict[str, Any] | None:
        """The ticket that carries `tag`, created or updated since `since`, if any (other than
        `exclude`). Lists recent tickets first (immediate), then asks search (lagging)."""
        for page in range(1, 11):
            tickets = await self.list_tickets(since, page)
            for ticket in tickets:
                if tag in (ticket.get("tags") or []) and ticket.get("id") != exclude:
                    return ticket
            if len(tickets) < 100:
                break
        found = [t for t in await self.search_tag(tag) if t.get("id") != exclude]
        return found[0] if found else None

    def _unwrap(self, result: Any, key: str, operation: str) -> Any:
        """Freshservice's answer without its wrapping object (`{"ticket": {...}}`)."""
        if not self._service:
            return result
        if not isinstance(result, dict) or key not in result:
            raise PermanentError(
                f"{operation}: the helpdesk answered 2xx without a {key!r} object"
                " (is the account Freshservice?)",
                body=_shown(result),
            )
        return result[key]

    def _ticket(self, result: Any, operation: str) -> dict[str, Any]:
        """A ticket from a 2xx answer; one without a ticket id fails this operation only."""
        ticket = _object(self._unwrap(result, "ticket", operation), operation)
        ticket_id = ticket.get("id")
        if not isinstance(ticket_id, int) or isinstance(ticket_id, bool):
            raise PermanentError(
                f"{operation}: the helpdesk answered 2xx without a ticket id", body=_shown(result)
            )
        return ticket

    # -- transport ------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        ticket_id: int | None = None,
        idempotent: bool = False,
        call_class: CallClass = CallClass.OTHER,
        attempts: int = 3,
    ) -> Any:
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: _retry_here(e, idempotent)),
            stop=stop_after_attempt(attempts),
            # Exponential with jitter, spelled so that every tenacity >= 8 takes it.
            wait=wait_exponential(multiplier=RETRY_INITIAL, max=4) + wait_random(0, RETRY_INITIAL),
            reraise=True,
        )
        call = _Call(method, path, operation, body, params, ticket_id, call_class)
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(call)
        except TicketGone as exc:
            if exc.status == 404 and ticket_id is not None and await self._archived(ticket_id):
                raise TicketArchived(
                    f"{operation}: ticket {ticket_id} is archived", status=404, body=exc.body
                ) from exc
            raise
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _archived(self, ticket_id: int) -> bool:
        """Whether a ticket that answered 404 is archived (Freshdesk keeps those read-only at
        /tickets/archived/{id}; Freshservice has no such path)."""
        if self._service:
            return False
        try:
            await self._once(
                _Call(
                    "GET", f"/tickets/archived/{ticket_id}", "view_archived", None, None, None,
                    CallClass.VIEW,
                )
            )
        except HelpdeskError:
            return False  # gone for good, or we cannot tell: the caller's 404 stands
        return True

    async def _once(self, call: _Call) -> Any:
        """One paced request, counted in the metrics by its outcome."""
        await self._limiter.acquire(call.call_class)
        if call.method != "GET":
            await sending.before_write()  # after the pacing wait: it leaves now
        started = time.monotonic()
        outcome = "transient_error"
        try:
            answer = await self._send(call)
            outcome = "ok"
            return answer
        except RateLimited:
            outcome = "rate_limited"
            if self._metrics is not None:
                self._metrics.helpdesk_rate_limited()
            raise
        except AuthFailed:
            outcome = "auth_error"
            raise
        except PermanentError:
            outcome = "permanent_error"
            raise
        except OutcomeUnknown:
            outcome = "timeout"
            raise
        finally:
            if self._metrics is not None:
                seconds = time.monotonic() - started
                self._metrics.helpdesk_request(call.operation, outcome, seconds)

    async def _send(self, call: _Call) -> Any:
        operation = call.operation
        try:
            async with self._session.request(
                call.method,
                self._base + call.path,
                json=call.body,
                params=call.params,
                headers=self._headers,
            ) as response:
                raw = await response.read()
                self._limiter.observe(
                    _int_header(response, "X-RateLimit-Total"),
                    _int_header(response, "X-RateLimit-Remaining"),
                )
                text = _decoded(raw, response, operation)
                return _answer(
                    response.status, response.headers, text, operation, call.ticket_id,
                    self._limiter,
                )  # fmt: skip
        except aiohttp.ClientConnectorError as exc:
            # Never connected: the request cannot have had any effect.
            raise _NotSent(f"{operation}: cannot connect: {exc.os_error}") from exc
        except (
            TimeoutError,
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError,
            aiohttp.ClientPayloadError,
        ) as exc:
            raise OutcomeUnknown(f"{operation}: no answer ({type(exc).__name__})") from exc
        except aiohttp.ClientError as exc:
            raise OutcomeUnknown(f"{operation}: {type(exc).__name__}: {exc}") from exc


class _Call(NamedTuple):
    method: str
    path: str
    operation: str
    body: Mapping[str, Any] | None
    params: Mapping[str, str] | None
    ticket_id: int | None
    call_class: CallClass  # which sub-limit it counts against (the limiter paces each)


class _NotSent(TransientError):
    """The request never reached the helpdesk: always safe to repeat."""


def _retry_here(exc: BaseException, idempotent: bool) -> bool:
    if isinstance(exc, _NotSent):
        return True
    return idempotent and isinstance(exc, TransientError) and not isinstance(exc, RateLimited)


def _answer(
    status: int,
    headers: Mapping[str, str],
    text: str,
    operation: str,
    ticket_id: int | None,
    limiter: RateLimiter,
) -> Any:
    if 200 <= status < 300:
        if status == 204 or not text:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            # A proxy's sign-in page or a broken gateway: this operation fails, nothing else.
            kind = headers.get("Content-Type", "no Content-Type")
            raise PermanentError(
                f"{operation}: the helpdesk answered {status} but not with JSON ({kind})",
                status=status,
                body=text[:_BODY_SHOWN],
            ) from exc
    shown = text[:_BODY_SHOWN]
    if status == 429:
        # The pause actually taken: a Retry-After of `inf` or `1e12` is bounded by the limiter.
        retry_after = limiter.pause(_retry_after(headers.get("Retry-After")))
        raise RateLimited(retry_after, body=shown)
    if status in (401, 403):
        raise AuthFailed(
            f"{operation}: helpdesk refused the API key ({status})", status=status, body=shown
        )
    if status == 404 and ticket_id is not None:
        raise TicketGone(f"{operation}: ticket {ticket_id} not found", status=status, body=shown)
    if status == 405 and ticket_id is not None:
        # Spam and trashed tickets refuse changes with 405 (docs/protocols.md 1.4).
        raise TicketGone(
            f"{operation}: ticket {ticket_id} is deleted or spam (405)", status=status, body=shown
        )
    if status >= 500:
        raise TransientError(f"{operation}: helpdesk error {status}", status=status, body=shown)
    raise PermanentError(
        f"{operation}: refused with {status}{_field_errors(text)}", status=status, body=shown
    )


def _field_errors(text: str) -> str:
    """The fields a 400 names, e.g. a field required to resolve or close, for the dead letter
    and the log: ": custom_fields.cf_root_cause: It should not be blank"."""
    try:
        errors = json.loads(text).get("errors")
    except (ValueError, AttributeError):
        return ""
    if not isinstance(errors, list):
        return ""
    named = [
        f"{e.get('field')}: {e.get('message')}"
        for e in errors
        if isinstance(e, dict) and e.get("field")
    ]
    return f": {'; '.join(named)}" if named else ""


def _decoded(raw: bytes, response: aiohttp.ClientResponse, operation: str) -> str:
    """The body as text in its declared charset (UTF-8 if none); bytes that do not decode fail
    this operation with a clear message instead of the whole round."""
    charset = response.charset or "utf-8"
    try:
        return raw.decode(charset)
    except (UnicodeDecodeError, LookupError) as exc:
        raise PermanentError(
            f"{operation}: the helpdesk answered {response.status} with a body that is not"
            f" valid {charset}",
            status=response.status,
            body=raw[:_BODY_SHOWN].decode("utf-8", errors="replace"),
        ) from exc


def _retry_after(value: str | None) -> float:
    try:
        return max(float(value or 60), 1.0)
    except ValueError:
        return 60.0  # an HTTP date or garbage: wait a whole rate-limit window


def _int_header(response: aiohttp.ClientResponse, name: str) -> int | None:
    value = response.headers.get(name)
    return int(value) if value is not None and value.isdigit() else None


def _object(result: Any, operation: str) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise PermanentError(f"{operation}: expected a JSON object", body=_shown(result))
    return result


def _since(moment: datetime) -> str:
    """A time as the ticket list's `updated_since` takes it."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _array(result: Any, operation: str) -> list[dict[str, Any]]:
    if not isinstance(result, list):
        raise PermanentError(f"{operation}: expected a JSON array", body=_shown(result))
    return [item for item in result if isinstance(item, dict)]


def _shown(value: Any) -> str:
    return json.dumps(value)[:_BODY_SHOWN]


__all__ = ["FreshdeskClient", "HelpdeskError"]
