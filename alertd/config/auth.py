"""API tokens, [auth] for the HTTP API and [nrdp] for NRDP's form field: their three sources (the
list, a file, an environment variable), their scopes, and keeping their values out of reprs and
problems.

A token entry is `TOKEN` or `TOKEN:SCOPE+SCOPE` in every source. The scopes are `ingest` (send
results), `read` (the read API) and `operate` (ack, escalate, silences, the outbox, deleting
heartbeats). A plain token, the only form before scopes existed, keeps every scope, so an
existing file means what it meant. An [nrdp] token can only ever ingest.

Auth fails closed: an [auth] section that yields no token from any source is an error (at start
and on reload, where the running tokens then stay), unless `auth.disabled = true` says the API
is meant to be open.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from alertd.config.paths import _beside
from alertd.config.reader import _kind, _Table

DEFAULT_TOKENS_ENV = "ALERTD_TOKENS"
DEFAULT_NRDP_TOKENS_ENV = "ALERTD_NRDP_TOKENS"


class Scope(StrEnum):
    """What a token may do."""

    INGEST = "ingest"
    READ = "read"
    OPERATE = "operate"


ALL_SCOPES = frozenset(Scope)
INGEST_ONLY = frozenset({Scope.INGEST})


@dataclass(frozen=True, slots=True, repr=False)
class AuthConfig:
    """Accepted API tokens (secrets) with their scopes and, printable, their sources."""

    tokens: tuple[str, ...] = ()
    token_sources: tuple[str, ...] = ()
    # scopes[i] is what tokens[i] may do.
    scopes: tuple[frozenset[Scope], ...] = ()
    # `auth.disabled = true`: the API is open on purpose (never the result of a missing token).
    disabled: bool = False

    def __repr__(self) -> str:
        # The tokens are secrets: a repr ends up in logs and tracebacks.
        return (
            f"AuthConfig(tokens=<{len(self.tokens)} hidden>, token_sources={self.token_sources!r}"
            f", disabled={self.disabled!r})"
        )

    def scoped(self) -> tuple[tuple[str, frozenset[Scope]], ...]:
        """(token, scopes) pairs."""
        return tuple(zip(self.tokens, self.scopes, strict=True))


# One source's entries: (token, scopes), in the order found.
_Found = list[tuple[str, frozenset[Scope]]]


def _tokens(
    t: _Table,
    base: Path | None,
    env: Mapping[str, str],
    default_env: str,
    *,
    nrdp: bool = False,
) -> AuthConfig:
    """Tokens of one section ([auth], [nrdp]) from its three sources: the list, a file, env."""
    t.check_keys(("tokens", "tokens_file", "tokens_env") + (() if nrdp else ("disabled",)))
    allowed = INGEST_ONLY if nrdp else ALL_SCOPES
    found: list[tuple[str, _Found]] = [(t.key("tokens"), _listed_tokens(t, allowed))]
    file = t.get("tokens_file", str, "a string (a file path)")
    if file == "":
        t.add("tokens_file", "must not be empty; leave it out for no tokens file")
    elif file is not None:
        path = _beside(base, file)
        found.append((f"file {path}", _file_tokens(t, path, allowed)))
    name = t.get("tokens_env", str, "a string (an environment variable name)")
    name = default_env if name is None else name
    if name:  # tokens_env = "" switches the environment source off
        found.append((f"env {name}", _env_tokens(t, name, env.get(name, ""), allowed)))
    # A token may sit in two sources while being rotated; keep its first place (and scopes).
    first: dict[str, frozenset[Scope]] = {}
    for _, listed in found:
        for token, scopes in listed:
            first.setdefault(token, scopes)
    disabled = bool(t.get("disabled", bool, "true or false")) if not nrdp else False
    if not nrdp:
        _fail_closed(t, disabled, len(first))
    return AuthConfig(
        tokens=tuple(first),
        token_sources=tuple(src for src, listed in found if listed),
        scopes=tuple(first.values()),
        disabled=disabled,
    )


def _fail_closed(t: _Table, disabled: bool, count: int) -> None:
    """No token and not disabled on purpose is an error: a truncated tokens file (a rotation
    script that truncates, then writes) must never open the API."""
    if disabled and count:
        t.add("disabled", f"is true, but {count} token(s) are configured: remove one or the other")
    elif not disabled and not count:
        t.add(
            "tokens",
            "no API token from any source (tokens, tokens_file, the tokens_env variable): "
            "alertd does not serve an open API by accident; add a token, or set "
            f"{t.key('disabled')} = true to run without authentication",
        )


# Token problems describe the token, never show it: it is a secret.


def _entry(text: str, allowed: frozenset[Scope]) -> tuple[str, frozenset[Scope]] | str:
    """`TOKEN` or `TOKEN:scope+scope` -> (token, scopes), or the problem (never the token)."""
    if not text or any(c.isspace() for c in text):
        return "a token must be non-empty, without spaces"
    token, colon, named = text.rpartition(":")
    if not colon:
        return text, allowed
    if not token:
        return "a token must not be empty (found ':' and scopes only)"
    scopes: set[Scope] = set()
    for word in named.split("+"):
        try:
            scopes.add(Scope(word))
        except ValueError:
            known = ", ".join(s.value for s in allowed)
            shown = repr(word[:20]) if word.isascii() and word.isalpha() else "a word"
            return f"after the last ':' come scopes joined by '+' ({known}); {shown} is not one"
    if not scopes <= allowed:
        return "an NRDP token can only have the scope ingest"
    return token, frozenset(scopes)


def _listed_tokens(t: _Table, allowed: frozenset[Scope]) -> _Found:
    raw = t.data.get("tokens", [])
    if not isinstance(raw, list):
        t.add("tokens", f"expected an array of strings, got {_kind(raw)}")
        return []
    tokens: _Found = []
    for n, text in enumerate(raw, 1):
        if not isinstance(text, str):
            t.problems.add(f"{t.key('tokens')}[{n}]", f"expected a string, got {_kind(text)}")
            continue
        entry = _entry(text, allowed)
        if isinstance(entry, str):
            t.problems.add(f"{t.key('tokens')}[{n}]", entry)
        else:
            tokens.append(entry)
    return tokens


def _file_tokens(t: _Table, path: Path, allowed: frozenset[Scope]) -> _Found:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        t.add("tokens_file", f"cannot read {str(path)!r}: {exc.strerror or type(exc).__name__}")
        return []
    except UnicodeDecodeError:
        t.add("tokens_file", f"{str(path)!r} is not valid UTF-8")
        return []
    tokens: _Found = []
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        entry = _entry(text, allowed)
        if isinstance(entry, str):
            if "spaces" in entry:
                entry = "one token per line, without spaces"
            t.add("tokens_file", f"{str(path)!r} line {n}: {entry}")
        else:
            tokens.append(entry)
    return tokens


def _env_tokens(t: _Table, name: str, text: str, allowed: frozenset[Scope]) -> _Found:
    tokens: _Found = []
    for n, word in enumerate((w for w in re.split(r"[\s,]+", text) if w), 1):
        entry = _entry(word, allowed)
        if isinstance(entry, str):
            t.add("tokens_env", f"${name} entry {n}: {entry}")
        else:
            tokens.append(entry)
    return tokens
