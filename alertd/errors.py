"""The one exception tree of alertd. Errors carry fields; `alertd.server` maps them to HTTP.

AlertdError
├── ConfigError          bad configuration; carries every problem found (file, key, reason)
├── InputError           a request we refuse; carries the HTTP status and per-item details
│   ├── AuthError            401: missing or wrong credentials
│   ├── PayloadTooLarge      413: body over the configured limit
│   ├── UnsupportedMedia     415: body is not of an accepted content type
│   └── NrdpRefusal          NRDP's own refusal: HTTP 200 with <status>-1</status>
├── NotFoundError        404: no such incident (or other object)
├── StoreError           the store could not do what was asked (disk full, corrupt file, ...)
└── SpoolError           `alertd notify` found no usable spool directory
"""

from __future__ import annotations

from dataclasses import dataclass


class AlertdError(Exception):
    """Root of every error alertd raises on purpose."""


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
    status = 400

    def __init__(self, message: str, details: list[ItemProblem] | None = None) -> None:
        self.message = message
        self.details = details or []
        super().__init__(message)


class AuthError(InputError):
    status = 401


class PayloadTooLarge(InputError):
    status = 413


class UnsupportedMedia(InputError):
    status = 415


class Conflict(InputError):
    """409: the request is fine, but the object is not in a state that allows it."""

    status = 409


class NrdpRefusal(InputError):
    """A refused NRDP request. NRDP clients read `<status>` from the body, never the HTTP
    status, so this is answered 200 in NRDP's shape (XML or JSON, as the request chose)."""

    status = 200

    def __init__(self, code: str, information: str = "", fmt: str = "xml") -> None:
        self.code = code  # NRDP's message constant: BAD TOKEN, BAD XML, ...
        self.information = information
        self.fmt = fmt
        super().__init__(f"{code}: {information}" if information else code)


class NotFoundError(AlertdError):
    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"{what} not found")


class StoreError(AlertdError):
    """The store failed; the operation was not (or not wholly) done."""


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
    pass


class SpoolError(AlertdError):
    """No directory where `alertd notify` can keep undelivered notifications."""
