"""Console sessions: who is looking, and whether they may act.

A person signs in once with an API token (the same bearer tokens as `/api/`, checked by the
same constant-time comparison); the console then keeps a random session id in a cookie
(`HttpOnly`, `SameSite=Strict`, path `/ui/`) and the token on the server side only, so page
scripts never see it. Every request re-checks the session's token against the tokens in
force, so a reload that rotates a token ends its sessions at once. With no tokens configured
the API is open, and so is the console: a visitor gets an anonymous session, which still
carries the CSRF token that every action must echo.

Sessions live in memory: a restart signs everyone out, which is the safe direction.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from alertd.config.auth import Scope as AuthScope
from alertd.http.keys import Live
from alertd.http.middleware import token_scopes

COOKIE = "alertd_console"
LIFETIME = timedelta(hours=12)
# Anonymous sessions are made for every new visitor of an open console: bound the memory.
MAX_SESSIONS = 2000

# What a token may do in the console: look, or act (ack, silence, re-drive). Named like the
# API's token scopes, so a scoped token is judged the same way on both sides.
Scope = Literal["read", "operate"]


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    token: str | None  # None: anonymous, in a console without tokens
    csrf: str
    expires: datetime


def token_allows(live: Live, token: str | None, scope: Scope) -> bool:
    """Whether `token` may do `scope` under the tokens in force now.

    The API's own check (`alertd.http.middleware.token_scopes`), so both judge a token alike:
    `read` to look, `operate` to act.
    """
    if live.auth_disabled:
        return True  # the API is open on purpose (`auth.disabled`), and so is the console
    if token is None:
        return False
    granted = token_scopes(token, live.tokens)
    return granted is not None and AuthScope(scope) in granted


class Sessions:
    """The console's sessions, oldest first; the oldest go when there are too many."""

    def __init__(self) -> None:
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def open(self, token: str | None, now: datetime) -> Session:
        session = Session(secrets.token_urlsafe(32), token, secrets.token_urlsafe(32),
                          now + LIFETIME)  # fmt: skip
        self._by_id[session.id] = session
        while len(self._by_id) > MAX_SESSIONS:
            self._by_id.popitem(last=False)
        return session

    def find(self, session_id: str | None, live: Live, now: datetime) -> Session | None:
        """The live session of that id whose token is still accepted, else None."""
        if not session_id:
            return None
        session = self._by_id.get(session_id)
        if session is None:
            return None
        if session.expires <= now or not token_allows(live, session.token, "read"):
            del self._by_id[session_id]
            return None
        if session.token is None and not live.auth_disabled:
            return None  # made while the console was open; tokens were configured since
        return session

    def close(self, session_id: str) -> None:
        self._by_id.pop(session_id, None)


def csrf_ok(session: Session, presented: str) -> bool:
    return hmac.compare_digest(session.csrf.encode(), presented.encode("utf-8", "surrogatepass"))
