"""The one exception tree of alertd. Errors carry fields, their HTTP status and the reason
`alertd_ingest_rejected_total` counts them under; `alertd.http.middleware` turns any of them
into an answer by reading those attributes, never by a ladder of isinstance checks.

AlertdError                  500 (a bug if it reaches HTTP)
├── ConfigError              bad configuration; carries every problem found (file, key, reason)
├── InputError               400: a request we refuse; carries per-item details
│   ├── AuthError                401: missing or wrong credentials
│   │   └── Forbidden                403: a good token without the scope the request needs
│   ├── PayloadTooLarge          413: body over the configured limit
│   ├── UnsupportedMedia         415: body is not of an accepted content type
│   ├── Conflict                 409: the object is not in a state that allows the request
│   └── NrdpRefusal              NRDP's own refusal: HTTP 200 with <status>-1</status>
├── NotFoundError            404: no such incident (or other object)
├── StoreError               503: the store could not do what was asked (disk full, corrupt, ...)
├── HelpdeskUnavailable      503: a request needed the helpdesk's answer and did not get it
├── HelpdeskError            a helpdesk call failed (never answered over HTTP: the outbox keeps it)
│   ├── TransientError           5xx, timeouts, connection errors: retried with backoff
│   │   ├── RateLimited              429: retried after the helpdesk's Retry-After
│   │   └── OutcomeUnknown           sent, no answer: looked up before anything is sent again
│   ├── AuthFailed               401/403: alertd's API key is refused (/readyz fails)
│   └── PermanentError           other 4xx: dead-lettered
│       └── TicketGone               404 or 405 on a known ticket: deleted, spam or gone
│           └── TicketArchived           404, but the ticket is archived (read-only, kept)
└── SpoolError               `alertd notify` found no usable spool directory
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


class AlertdError(Exception):
    """Root of every error alertd raises on purpose."""

    http_status: ClassVar[int] = 500
    # The `reason` label of alertd_ingest_rejected_total when an ingest request fails with it.
    metric_reason: ClassVar[str] = "invalid"
    # Extra answer headers (Retry-After, WWW-Authenticate).
    http_headers: ClassVar[dict[str, str]] = {}

    def public_message(self) -> str:
        """The text of the HTTP answer: safe to show a client (no secrets, no paths)."""
        return str(self)

    def reason(self) -> str:
        return self.metric_reason


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One configuration problem: where it is and what is wrong."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        return f"{where}: {self.message}"


class ConfigError(AlertdError):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True, slots=True)
class ItemProblem:
    """What is wrong with one item of a request: which item, which field, why."""

    index: int | None
    field: str | None
    message: str

    def as_json(self) -> dict[str, object]:
        return {"index": self.index, "field": self.field, "message": self.message}


class InputError(AlertdError):
    http_status = 400

    def __init__(self, message: str, details: list[ItemProblem] | None = None) -> None:
        self.message = message
        self.details = details or []
        super().__init__(message)


class AuthError(InputError):
    http_status = 401
    metric_reason = "unauthorized"
    http_headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer realm="alertd"'}


class Forbidden(AuthError):
    """The token is valid but lacks the scope this request needs (RFC 6750 insufficient_scope)."""

    http_status = 403
    metric_reason = "forbidden"
    http_headers: ClassVar[dict[str, str]] = {
        "WWW-Authenticate": 'Bearer realm="alertd", error="insufficient_scope"'
    }

    def __init__(self, scope: str) -> None:
        self.scope = scope
        super().__init__(f"this token lacks the scope '{scope}' that this request needs")


class PayloadTooLarge(InputError):
    http_status = 413
    metric_reason = "too_large"


class UnsupportedMedia(InputError):
    http_status = 415
    metric_reason = "unsupported_media"


class Conflict(InputError):
    """409: the request is fine, but the object is not in a state that allows it."""

    http_status = 409


class NrdpRefusal(InputError):
    """A refused NRDP request. NRDP clients read `<status>` from the body, never the HTTP
    status, so this is answered 200 in NRDP's shape (XML or JSON, as the request chose)."""

    http_status = 200

    def __init__(self, code: str, information: str = "", fmt: str = "xml") -> None:
        self.code = code  # NRDP's message constant: BAD TOKEN, BAD XML, ...
        self.information = information
        self.fmt = fmt
        super().__init__(f"{code}: {information}" if information else code)

    def reason(self) -> str:
        # NO TOKEN, NO TOKENS, BAD TOKEN: a credentials problem, counted like a 401.
        return "unauthorized" if "TOKEN" in self.code else "invalid"


class NotFoundError(AlertdError):
    http_status = 404

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"{what} not found")


class StoreError(AlertdError):
    """The store failed; the operation was not (or not wholly) done."""

    http_status = 503
    metric_reason = "store_unavailable"
    http_headers: ClassVar[dict[str, str]] = {"Retry-After": "5"}

    def public_message(self) -> str:
        # The cause (a path, SQLite's words) goes to the log, not to the client.
        return "could not commit to the store; nothing from this request was accepted, retry"


class NotSettled(StoreError):
    """A read waited too long for the results acknowledged before it to be applied."""

    def __init__(self, waiting: int, cause: str) -> None:
        super().__init__(f"{waiting} acknowledged results still wait to be applied ({cause})")
        self.waiting = waiting

    def public_message(self) -> str:
        # The cause (SQLite's words) goes to the log, not to the client.
        return (f"{self.waiting} results acknowledged before this request are not applied "
                "yet (the store is failing or slow); nothing was done, retry")  # fmt: skip


class StoreRefused(StoreError):
    """The store refused the rows themselves (a constraint, a trigger): trying them again
    cannot succeed, unlike a store that failed (a full disk, an I/O error)."""



class NotLeader(StoreError):
    """A standby on a shared PostgreSQL store was asked for what only the leader decides (an
    ack or escalation by id, a silence, a heartbeat, a retry): 503, and where to go instead."""

    def public_message(self) -> str:
        return str(self)  # says what to do; holds no path, URL or password


class HelpdeskUnavailable(AlertdError):
    """A request (the helpdesk's own webhook) needed to read the helpdesk, which failed: 503, so
    the sender tries again."""

    http_status = 503


class HelpdeskError(AlertdError):
    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        self.status = status
        self.body = body
        super().__init__(message)


class TransientError(HelpdeskError):
    pass


class RateLimited(TransientError):
    def __init__(self, retry_after: float, *, body: str = "") -> None:
        self.retry_after = retry_after
        super().__init__(f"rate limited: retry after {retry_after:g}s", status=429, body=body)


class OutcomeUnknown(TransientError):
    pass


class AuthFailed(HelpdeskError):
    pass


class PermanentError(HelpdeskError):
    pass


class TicketGone(PermanentError):
    """The ticket cannot take changes: 404 (gone) or 405 (in the trash, or spam)."""


class TicketArchived(TicketGone):
    """A 404 from a ticket the helpdesk archived: it exists, read-only, and never comes back."""


class SpoolError(AlertdError):
    """No directory where `alertd notify` can keep undelivered notifications."""
