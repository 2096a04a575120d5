"""[store]'s PostgreSQL URL and password. The password is never part of the URL (which appears
in logs, /readyz and errors): it comes from `password_file` or the variable `password_env`, as
the helpdesk's API key does."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from alertd.config.paths import _beside
from alertd.config.reader import _Table

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
    (default ALERTD_STORE_PASSWORD), else none (trust or peer authentication)."""
    file = t.get("password_file", str, "a string (a file path)")
    if file:
        path = _beside(base, file)
        try:
            password = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            t.add("password_file", f"cannot read {str(path)!r}: {type(exc).__name__}")
            return "", ""
        if not password:
            t.add("password_file", f"{str(path)!r} is empty")
        return password, f"file {path}"
    given = t.get("password_env", str, "a string (an environment variable name)")
    name = given or DEFAULT_PASSWORD_ENV
    password = env.get(name, "").strip()
    if given and not password:
        t.add("password_env", f"environment variable {name} is not set (or set password_file)")
    return password, f"env {name}" if password else "none"
