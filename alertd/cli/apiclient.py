"""A small blocking client of alertd's own HTTP API, for the command line (standard library only).

Owns the URL, the bearer token and turning HTTP failures into `ApiClientError` with a message an
operator can act on. The token is sent, never printed: no message here contains it. And it goes
to the given URL only, as with `alertd notify`: proxies from the environment (`http_proxy` and
friends, often set for other tools) are ignored, and a redirect is refused, not followed
(urllib would carry the Authorization header to wherever Location points).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alertd.cli.transport import token_opener
from alertd.errors import AlertdError

DEFAULT_URL = "http://127.0.0.1:8780"
TOKEN_ENV = "ALERTD_TOKEN"
URL_ENV = "ALERTD_URL"


class ApiClientError(AlertdError):
    """The daemon could not be reached, or refused; `status` is the HTTP status if it answered."""

    def __init__(self, message: str, status: int | None = None, details: Any = None) -> None:
        self.message = message
        self.status = status
        self.details = details or []  # the daemon's per-field problems, for a 400
        super().__init__(message)


def base_url(given: str | None, env: Mapping[str, str]) -> str:
    """--url, else $ALERTD_URL, else the default address: the same for every command."""
    return given or env.get(URL_ENV) or DEFAULT_URL


def read_token(token_file: Path | None, env_token: str | None) -> str | None:
    """The token from `token_file` (first line that is not blank or a # comment), else the
    environment's; None if neither gives one."""
    if token_file is not None:
        try:
            lines = token_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ApiClientError(f"cannot read token file {token_file}: {exc.strerror}") from exc
        for line in lines:
            if line.strip() and not line.strip().startswith("#"):
                return line.strip()
        raise ApiClientError(f"token file {token_file} holds no token")
    return env_token or None


class ApiClient:
    def __init__(self, url: str, token: str | None, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._opener = token_opener()  # only ever to `url`: no proxy, no redirects

    def __repr__(self) -> str:
        return f"ApiClient(url={self.url!r}, token={'<hidden>' if self._token else None})"

    def get(self, path: str, params: dict[str, str | int | None] | None = None) -> Any:
        """GET `path` and return the decoded JSON answer, or raise ApiClientError."""
        return self.call("GET", path, params=params)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str | int | None] | None = None,
    ) -> Any:
        """Send `body` as JSON (if any); the decoded answer, or ApiClientError."""
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        url = self.url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            url, data=data, method=method, headers={"Accept": "application/json"}
        )
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            message, details = _refusal(exc)
            raise ApiClientError(message, exc.code, details) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiClientError(
                f"cannot reach alertd at {self.url}: {reason} (is it running? see --url)"
            ) from exc
        except json.JSONDecodeError as exc:
            raise ApiClientError(f"{url} did not answer JSON: {exc.msg}") from exc


def _refusal(exc: urllib.error.HTTPError) -> tuple[str, Any]:
    if 300 <= exc.code < 400:
        where = exc.headers.get("Location", "?") if exc.headers else "?"
        return (
            f"alertd answered {exc.code}, a redirect to {where}: not followed, the token goes "
            "to the given --url only (point --url at alertd itself)",
            None,
        )
    try:
        answer = json.loads(exc.read())
        message, details = str(answer["error"]), answer.get("details")
    except (ValueError, KeyError, TypeError, OSError):
        message, details = exc.reason, None
    if exc.code == 401:
        return f"alertd refused the token ({message}); pass --token-file or set {TOKEN_ENV}", None
    return f"alertd answered {exc.code}: {message}", details
