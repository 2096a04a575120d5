"""A small HTTP client for alertd's own API, standard library only, for the CLI commands.

`ApiClient.call` sends JSON, returns the decoded answer, and raises `ApiError` with the status
and the server's message (and per-field details) when the answer is not 2xx.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alertd.errors import AlertdError

DEFAULT_URL = "http://127.0.0.1:8780"


class ApiError(AlertdError):
    def __init__(self, message: str, *, status: int | None = None, details: Any = None) -> None:
        self.status = status
        self.details = details or []
        super().__init__(message)


def read_token(token_file: Path | None, env: Mapping[str, str]) -> str | None:
    """The first non-comment line of `token_file`, else $ALERTD_TOKEN, else None."""
    if token_file is not None:
        for line in token_file.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                return line.strip()
        return None
    return env.get("ALERTD_TOKEN") or None


class ApiClient:
    def __init__(self, url: str, token: str | None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = timeout

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(f"cannot reach alertd at {self.url}: {reason}") from exc


def _api_error(exc: urllib.error.HTTPError) -> ApiError:
    try:
        answer = json.loads(exc.read())
    except ValueError:
        answer = {}
    message = answer.get("error") if isinstance(answer, dict) else None
    details = answer.get("details") if isinstance(answer, dict) else None
    return ApiError(f"HTTP {exc.code}: {message or exc.reason}", status=exc.code, details=details)
