"""Freshdesk API v2 client (and its Freshservice flavour): tickets, notes, lookups.

Talks HTTP through the one `aiohttp.ClientSession` the app owns; paces every call through the
shared `RateLimiter`; turns every failure into the `HelpdeskError` tree so the dispatcher can
decide between retrying, waiting, re-creating and dead-lettering. Short in-process retries
(tenacity) only where repeating cannot double an effect: reads and PUTs, and any request the
server provably never received. Facts: docs/protocols.md section 1.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from alertd.config import HelpdeskConfig
from alertd.errors import (
    AuthFailed,
    HelpdeskError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TicketGone,
    TransientError,
)
from alertd.metrics import Metrics
from alertd.ratelimit import CallClass, RateLimiter
from alertd.tickets import CreatePayload

# Freshservice takes impact and urgency natively, on a 1 (low) .. 3 (high) scale.
_LEVEL = {"low": 1, "medium": 2, "high": 3}
_BODY_SHOWN = 500  # how much of an error body is kept for the dead-letter record
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
        if c.kind == "freshservice":
            body["impact"] = _LEVEL[payload["impact"]]
            body["urgency"] = _LEVEL[payload["urgency"]]
        return body

    async def create_ticket(self, body: Mapping[str, Any]) -> dict[str, Any]:
        result = await self._call(
            "POST", "/tickets", body=body, operation="create_ticket", call_class=CallClass.CREATE
        )
        return _object(result, "create_ticket")

    async def update_ticket(self, ticket_id: int, fields: Mapping[str, Any]) -> dict[str, Any]:
        result = await self._call(
            "PUT",
            f"/tickets/{ticket_id}",
            body=fields,
            operation="update_ticket",
            ticket_id=ticket_id,
            idempotent=True,
            call_class=CallClass.UPDATE,
        )
        return _object(result, "update_ticket")

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
        return _object(result, "add_note")

    async def view_ticket(self, ticket_id: int) -> dict[str, Any]:
        result = await self._call(
            "GET",
            f"/tickets/{ticket_id}",
            operation="view_ticket",
            ticket_id=ticket_id,
            idempotent=True,
            call_class=CallClass.VIEW,
        )
        return _object(result, "view_ticket")

    async def list_tickets(
        self, updated_since: datetime, page: int = 1, *, oldest_first: bool = False
    ) -> list[dict[str, Any]]:
        """Tickets updated since a time, newest first (no search-index lag, unlike search):
        what alertd looks for was created recently, so it comes on the first pages. With
        `oldest_first`, by the time of their last change, oldest first (the ticket poll)."""
        params = {
            "updated_since": updated_since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "order_by": "updated_at" if oldest_first else "created_at",
            "order_type": "asc" if oldest_first else "desc",
            "per_page": "100",
            "page": str(page),
        }
        result = await self._call(
            "GET",
            "/tickets",
            params=params,
            operation="list_tickets",
            idempotent=True,
            call_class=CallClass.LIST,
        )
        return _array(result, "list_tickets")

    async def search_tag(self, tag: str) -> list[dict[str, Any]]:
        """Tickets carrying `tag`, from the search index (which lags by minutes)."""
        params = {"query": f"\"tag:'{tag}'\""}
        result = await self._call(
            "GET",
            "/search/tickets",
            params=params,
            operation="search",
            idempotent=True,
            call_class=CallClass.LIST,
        )
        if not isinstance(result, dict) or not isinstance(result.get("results"), list):
            raise PermanentError("search: unexpected answer shape", body=_shown(result))
        return [t for t in result["results"] if isinstance(t, dict)]

    async def conversations(self, ticket_id: int, page: int = 1) -> list[dict[str, Any]]:
        result = await self._call(
            "GET",
            f"/tickets/{ticket_id}/conversations",
            params={"page": str(page), "per_page": "100"},
            operation="conversations",
            ticket_id=ticket_id,
            idempotent=True,
        )
        return _array(result, "conversations")

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
    ) -> Any:
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: _retry_here(e, idempotent)),
            stop=stop_after_attempt(3),
            # Exponential with jitter, spelled so that every tenacity >= 8 takes it.
            wait=wait_exponential(multiplier=RETRY_INITIAL, max=4) + wait_random(0, RETRY_INITIAL),
            reraise=True,
        )
        call = _Call(method, path, operation, body, params, ticket_id, call_class)
        async for attempt in retrying:
            with attempt:
                return await self._once(call)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _once(self, call: _Call) -> Any:
        """One paced request, counted in the metrics by its outcome."""
        await self._limiter.acquire(call.call_class)
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
                text = await response.text()
                self._limiter.observe(
                    _int_header(response, "X-RateLimit-Total"),
                    _int_header(response, "X-RateLimit-Remaining"),
                )
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
            raise OutcomeUnknown(f"{operation}: answer is not JSON", status=status) from exc
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
    if status >= 500:
        raise TransientError(f"{operation}: helpdesk error {status}", status=status, body=shown)
    raise PermanentError(f"{operation}: refused with {status}", status=status, body=shown)


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
        raise OutcomeUnknown(f"{operation}: expected a JSON object, got {_shown(result)}")
    return result


def _array(result: Any, operation: str) -> list[dict[str, Any]]:
    if not isinstance(result, list):
        raise PermanentError(f"{operation}: expected a JSON array", body=_shown(result))
    return [item for item in result if isinstance(item, dict)]


def _shown(value: Any) -> str:
    return json.dumps(value)[:_BODY_SHOWN]


__all__ = ["FreshdeskClient", "HelpdeskError"]
