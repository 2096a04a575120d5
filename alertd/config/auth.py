"""API tokens, [auth] for the HTTP API and [nrdp] for NRDP's form field: their three sources (the
list, a file, an environment variable) and keeping their values out of reprs and problems."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from alertd.config.paths import _beside
from alertd.config.reader import _kind, _Table

DEFAULT_TOKENS_ENV = "ALERTD_TOKENS"
DEFAULT_NRDP_TOKENS_ENV = "ALERTD_NRDP_TOKENS"


@dataclass(frozen=True, slots=True, repr=False)
class AuthConfig:
    """Accepted API tokens (secrets) and, printable, the sources they were read from."""

    tokens: tuple[str, ...] = ()
    token_sources: tuple[str, ...] = ()

    def __repr__(self) -> str:
        # The tokens are secrets: a repr ends up in logs and tracebacks.
        return (
            f"AuthConfig(tokens=<{len(self.tokens)} hidden>, token_sources={self.token_sources!r})"
        )


def _tokens(t: _Table, base: Path | None, env: Mapping[str, str], default_env: str) -> AuthConfig:
    """Tokens of one section ([auth], [nrdp]) from its three sources: the list, a file, env."""
    t.check_keys(("tokens", "tokens_file", "tokens_env"))
    found: list[tuple[str, list[str]]] = [(t.key("tokens"), _listed_tokens(t))]
    file = t.get("tokens_file", str, "a string (a file path)")
    if file == "":
        t.add("tokens_file", "must not be empty; leave it out for no tokens file")
    elif file is not None:
        path = _beside(base, file)
        found.append((f"file {path}", _file_tokens(t, path)))
    name = t.get("tokens_env", str, "a string (an environment variable name)")
    name = default_env if name is None else name
    if name:  # tokens_env = "" switches the environment source off
        found.append((f"env {name}", _split_tokens(env.get(name, ""))))
    # A token may sit in two sources while being rotated; keep its first place only.
    tokens = tuple(dict.fromkeys(token for _, listed in found for token in listed))
    return AuthConfig(tokens=tokens, token_sources=tuple(src for src, listed in found if listed))


# Token problems describe the token, never show it: it is a secret.


def _listed_tokens(t: _Table) -> list[str]:
    raw = t.data.get("tokens", [])
    if not isinstance(raw, list):
        t.add("tokens", f"expected an array of strings, got {_kind(raw)}")
        return []
    tokens = []
    for n, token in enumerate(raw, 1):
        if not isinstance(token, str):
            t.problems.add(f"{t.key('tokens')}[{n}]", f"expected a string, got {_kind(token)}")
        elif not token or any(c.isspace() for c in token):
            t.problems.add(f"{t.key('tokens')}[{n}]", "a token must be non-empty, without spaces")
        else:
            tokens.append(token)
    return tokens


def _file_tokens(t: _Table, path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        t.add("tokens_file", f"cannot read {str(path)!r}: {exc.strerror or type(exc).__name__}")
        return []
    except UnicodeDecodeError:
        t.add("tokens_file", f"{str(path)!r} is not valid UTF-8")
        return []
    tokens = []
    for n, line in enumerate(lines, 1):
        token = line.strip()
        if not token or token.startswith("#"):
            continue
        if any(c.isspace() for c in token):
            t.add("tokens_file", f"{str(path)!r} line {n}: one token per line, without spaces")
        else:
            tokens.append(token)
    return tokens


def _split_tokens(text: str) -> list[str]:
    return [token for token in re.split(r"[\s,]+", text) if token]
