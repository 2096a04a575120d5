"""`POST /api/v1/helpdesk/events`: the helpdesk's automation says an agent changed a ticket.

A Freshdesk automation rule ("Ticket updates", performed by an agent) or a Freshservice
workflow calls this with a shared secret in `X-Alertd-Webhook-Secret` and the ticket's id
(README, "Agents' actions without waiting for the poll"). The body may also say what changed
(status, priority, responder, group), but alertd decides from the ticket as the helpdesk shows
it now, read with its own API key: a webhook can arrive late, twice or out of order, and its
placeholders render names rather than ids. The decision is the poll's (alertd.agent_actions),
and its notices go to the engine like any other input: the handler writes nothing itself.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

import structlog
from aiohttp import web

from alertd.errors import AuthError, HelpdeskError, HelpdeskUnavailable, InputError, NotFoundError
from alertd.http.decode import MAX_ID, read_json
from alertd.http.keys import DISPATCHER, LIVE

log: structlog.typing.FilteringBoundLogger = structlog.get_logger(__name__)

HEADER = "X-Alertd-Webhook-Secret"
# Freshdesk renders `{{ticket.id}}` as the number; Freshservice's display ids carry a prefix
# ("INC-42", "#SR-42"): the digits at the end are the id either way.
_TICKET_ID = re.compile(r"#?(?:[A-Za-z]+-)?(\d{1,18})")


async def post_event(request: web.Request) -> web.Response:
    helpdesk = request.app[LIVE].config.helpdesk
    dispatcher = request.app.get(DISPATCHER)
    if helpdesk is None or dispatcher is None:
        raise NotFoundError("helpdesk webhook: no [helpdesk] configured")
    if not helpdesk.webhook_secret:
        # Off unless a secret is configured: without one anybody could acknowledge incidents.
        raise NotFoundError("helpdesk webhook: no webhook secret configured")
    _check_secret(request.headers.get(HEADER, ""), helpdesk.webhook_secret)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InputError("expected a JSON object with ticket_id")
    ticket_id = _ticket_id(body.get("ticket_id"))
    try:
        notices = await dispatcher.ticket_event(ticket_id)
    except HelpdeskError as exc:
        # 503: the helpdesk retries its webhook (a few times); the poll catches up after that.
        raise HelpdeskUnavailable(f"cannot read ticket {ticket_id} from the helpdesk") from exc
    log.info("helpdesk_event", ticket_id=ticket_id, notices=notices,
             said=_said(body))  # fmt: skip
    return web.json_response({"ticket_id": ticket_id, "notices": notices})


def _check_secret(presented: str, secret: str) -> None:
    # Constant time, whatever is presented; the message never echoes the header's content.
    if not hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), secret.encode()):
        raise AuthError(f"missing or wrong {HEADER} header")


def _ticket_id(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID:
        return value
    if isinstance(value, str) and (match := _TICKET_ID.fullmatch(value.strip())):
        number = int(match.group(1))
        if number > 0:
            return number
    raise InputError('ticket_id: required, the ticket number (e.g. 42, "42" or "INC-42")')


def _said(body: dict[str, Any]) -> dict[str, str]:
    """What the automation said changed, shortened, for the log line (decisions ignore it)."""
    keys = ("status", "priority", "responder_id", "responder", "group_id", "group")
    return {k: str(body[k])[:64] for k in keys if k in body}
