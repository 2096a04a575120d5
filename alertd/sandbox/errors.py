"""The sandbox's non-success answers: the shapes of Freshdesk's error bodies (`_FieldError`,
`_error`, `_invalid`, `_not_found`), the exception that carries one up to the middleware
(`_Reject`) and the signal to close a connection unanswered (`_DropConnection`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True, slots=True)
class _FieldError:
    field: str
    message: str
    code: str


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
