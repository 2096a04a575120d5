"""The process's own sections: [server] (where it listens, request limits, the node's name),
[store] (the SQLite file and its durability, or a PostgreSQL URL and its password) and [log]."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from alertd.config.paths import _beside, default_data_dir
from alertd.config.reader import _duration, _int, _one_of, _Table
from alertd.config.secrets import pg_password, pg_url

LOG_LEVELS = ("debug", "info", "warning", "error")
# Incident changes are routine news, never warnings: debug or info only.
CHANGE_LOG_LEVELS = ("debug", "info")
SYNCHRONOUS_MODES = ("FULL", "NORMAL")
# The shortest retention accepted: shorter would delete what people still look at.
MIN_RETENTION = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8780
    max_body_bytes: int = 16 * 1024 * 1024
    max_results_per_request: int = 10_000
    # This daemon's name (None: the host's name): the `node` label on every metric when set or
    # when the store is PostgreSQL, and who holds a PostgreSQL store's lease.
    node: str | None = None


@dataclass(frozen=True, slots=True)
class StoreConfig:
    # No default here: the default lives under the data directory, which depends on the env.
    path: Path
    synchronous: str = "FULL"
    # Resolved incidents (with their events, ticket links and operations) and delivered
    # operations older than this are deleted, a chunk at a time by the writer.
    retention: timedelta = timedelta(days=90)
    # At most this many rows per retention pass, and at most one pass per interval: a pass
    # runs inside a group commit, so a small chunk keeps that commit short for ingestion.
    retention_chunk: int = 500
    retention_interval: timedelta = timedelta(seconds=10)
    # PostgreSQL instead of the SQLite file: "postgresql://user@host:port/database" (no
    # password in it; that comes from `password_file` or the `password_env` variable).
    url: str | None = None
    password: str = field(default="", repr=False)
    password_source: str = ""  # "file PATH" or "env NAME", for messages; never the password
    # How long the daemon's hold on a PostgreSQL store lasts unless renewed (see store_pg).
    lease: timedelta = timedelta(seconds=15)
    # SQLite: ingest is acknowledged once in the inbox, and applied after (alertd.inbox); at
    # most this many results wait there unapplied (ingest then waits for room). 0: a 202
    # waits until its results are applied.
    inbox_backlog: int = 50_000

    @property
    def where(self) -> str:
        """The store for messages: the URL (which holds no password) or the file."""
        return self.url or str(self.path)


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    # Level of the per-incident change lines (incident_opened, ...): "info" or "debug".
    changes: str = "info"


def _server(t: _Table) -> ServerConfig:
    t.check_keys(("listen", "max_body_bytes", "max_results_per_request", "node"))
    default = ServerConfig()
    host, port = default.host, default.port
    listen = t.get("listen", str, 'a string "host:port"')
    if listen is not None:
        try:
            host, port = _parse_listen(listen)
        except ValueError as exc:
            t.add("listen", str(exc))
    node = t.get("node", str, "a string (this daemon's name)")
    if node is not None and not node.strip():
        t.add("node", "must not be empty; leave it out for the host name")
    return ServerConfig(
        host=host,
        port=port,
        node=(node or "").strip() or None,
        max_body_bytes=_int(t, "max_body_bytes", default.max_body_bytes, 1),
        max_results_per_request=_int(
            t, "max_results_per_request", default.max_results_per_request, 1
        ),
    )


def _parse_listen(text: str) -> tuple[str, int]:
    """Split "host:port" or "[v6addr]:port" into (host without brackets, port)."""
    expected = f'expected "host:port" like "127.0.0.1:8780" or "[::1]:8780", got {text!r}'
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:
            raise ValueError(f'an IPv6 address needs brackets, like "[::1]:8780", got {text!r}')
    if not (sep and host and port.isascii() and port.isdigit()):
        raise ValueError(expected)
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port must be between 1 and 65535, got {text!r}")
    return host, int(port)


def _store(t: _Table, base: Path | None, env: Mapping[str, str]) -> StoreConfig:
    t.check_keys((
        "path", "synchronous", "retention", "retention_chunk", "retention_interval",
        "url", "password_file", "password_env", "lease", "inbox_backlog",
    ))  # fmt: skip
    default = StoreConfig(Path())
    path = default_data_dir(env) / "alertd.db"
    given = t.get("path", str, "a string (a file path)")
    if given == "":
        t.add("path", "must not be empty")
    elif given is not None:
        path = _beside(base, given)
    # SQLite spells its pragma values in upper case but accepts any case; so do we.
    synchronous = _one_of(t, "synchronous", SYNCHRONOUS_MODES, "FULL", upper=True)
    retention = _duration(t, "retention", default.retention)
    if retention < MIN_RETENTION:
        t.add("retention", f"must be at least 1d, got {t.data['retention']!r}")
    interval = _duration(t, "retention_interval", default.retention_interval)
    if interval < timedelta(seconds=1):
        t.add("retention_interval", f"must be at least 1s, got {t.data['retention_interval']!r}")
    url = pg_url(t)
    password, source = pg_password(t, base, env) if url else ("", "")
    lease = _duration(t, "lease", default.lease)
    if lease < timedelta(seconds=2):
        t.add("lease", f"must be at least 2s, got {t.data['lease']!r}")
    return StoreConfig(
        path=path,
        synchronous=synchronous,
        retention=max(retention, MIN_RETENTION),
        retention_chunk=_int(t, "retention_chunk", default.retention_chunk, 1),
        retention_interval=max(interval, timedelta(seconds=1)),
        url=url,
        password=password,
        password_source=source,
        lease=max(lease, timedelta(seconds=2)),
        inbox_backlog=_int(t, "inbox_backlog", default.inbox_backlog, 0),
    )



def _log(t: _Table) -> LogConfig:
    t.check_keys(("level", "changes"))
    return LogConfig(
        level=_one_of(t, "level", LOG_LEVELS, "info"),
        changes=_one_of(t, "changes", CHANGE_LOG_LEVELS, "info"),
    )
