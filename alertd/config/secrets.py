"""Secrets in the config: each from a file (`<name>_file`) or an environment variable
(`<name>_env`), never from the config file itself, so the file can be shared and the secret kept
apart. The helpdesk's API key and webhook secret and the store's password all come this way.
And [store]'s PostgreSQL URL, which must not hold the password (the URL appears in logs,
/readyz and errors)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from alertd.config.paths import _beside
from alertd.config.reader import _Table


class Secret(NamedTuple):
    value: str  # "" when none was given
    source: str  # "file PATH", "env NAME" or "none": what logs and summaries may show
    key: str  # the config key it came from, for problems found later (a short webhook secret)


def read_secret(
    t: _Table, base: Path | None, env: Mapping[str, str], name: str, default_env: str,
    *, required: bool,
) -> Secret:  # fmt: skip
    """`<name>_file` (relative to the config file), else the variable `<name>_env` (default
    `default_env`). A file that cannot be read or is empty is a problem; a missing variable is
    one only when `required`. Problems never show the secret."""
    file = t.get(f"{name}_file", str, "a string (a file path)")
    if file:
        key = f"{name}_file"
        path = _beside(base, file)
        try:
            value = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            t.add(key, f"cannot read {str(path)!r}: {type(exc).__name__}")
            return Secret("", "none", key)
        if not value:
            t.add(key, f"{str(path)!r} is empty")
        return Secret(value, f"file {path}", key)
    key = f"{name}_env"
    variable = t.get(key, str, "a string (an environment variable name)") or default_env
    value = env.get(variable, "").strip()
    if not value and required:
        t.add(key, f"environment variable {variable} is not set (or set {name}_file)")
    return Secret(value, f"env {variable}" if value else "none", key)


DEFAULT_PASSWORD_ENV = "ALERTD_STORE_PASSWORD"
SCHEMES = ("postgresql", "postgres")


def pg_url(t: _Table) -> str | None:
    """`url`, checked: a postgresql:// URL naming a host and a database, without a password."""
    url = t.get("url", str, 'a string "postgresql://user@host:port/database"')
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as exc:
        t.add("url", f"not a valid URL: {exc}")
        return None
    if parts.scheme not in SCHEMES:
        t.add(
            "url",
            f"must start with postgresql:// (SQLite needs no url: set path), got {parts.scheme!r}",
        )
        return None
    if parts.password is not None:
        # Not echoed: the value holds the password.
        t.add(
            "url", "must not hold a password: put it in password_file or the password_env variable"
        )
        return None
    if not parts.hostname or not parts.path.strip("/"):
        t.add("url", "must name a host and a database: postgresql://user@host:port/database")
        return None
    return url


def pg_password(t: _Table, base: Path | None, env: Mapping[str, str]) -> tuple[str, str]:
    """(password, where it came from): `password_file`, else the variable `password_env`
    (default ALERTD_STORE_PASSWORD), else none (trust or peer authentication). A variable
    named in the file must be set."""
    named = "password_env" in t.data
    secret = read_secret(t, base, env, "password", DEFAULT_PASSWORD_ENV, required=named)
    return secret.value, secret.source
