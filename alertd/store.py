"""The store's interface (`Store`, a Protocol) and its SQLite implementation (`SqliteStore`):
schema and migrations, the batched write transaction, and read queries. The PostgreSQL one is
`alertd.store_pg.PgStore`; `tests/contract/` holds the suite both must pass.

SQLite: two connections: one owned by the engine's single writer task (every write goes through
`write`), one for reads (WAL lets readers run beside the writer). SQL lives here only; callers
get model objects back.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

import aiosqlite

from alertd import codec, silences
from alertd.errors import StoreError, StoreRefused
from alertd.heartbeats import Heartbeat
from alertd.model import Event, EventKind, Incident, Priority, Status
from alertd.silences import Silence


def _json_paths(fields: Iterable[str]) -> str:
    """Body fields by name, for SQL (a body stored as a document)."""
    return ", ".join(f"'$.{name}'" for name in fields)


def _at(field: str) -> str:
    """A body field by its position (codec.BODY_FIELDS), for SQL."""
    return f"'$[{codec.BODY_FIELDS.index(field)}]'"


_STALE = f"ifnull(json_extract(body, {_at('stale')}), 0)"


def _newest(field: str) -> str:
    """A body field as the incident holds it: a plain repeat's `hot` overlay has the newest."""
    return (
        f"CASE WHEN hot IS NULL THEN json_extract(body, {_at(field)}) "
        f"ELSE json_extract(hot, '$.{field}') END"
    )


_STREAM_SEEN = _newest("stream_seen")
_INTERVAL = _newest("interval")
_STREAMED = f"status = 'open' AND NOT {_STALE} AND {_STREAM_SEEN} IS NOT NULL"
# Migration 10: bodies become positional (codec.incident_row) and every incident gets its
# `fold` (codec.fold_row), so a start indexes incidents without parsing any JSON (alertd.store,
# `_FOLD`). Runs once, over every incident (~10 s a million on a small machine); the SQL below
# writes what codec.fold_row writes, from the stored values.
_POSITIONAL_BODIES = f"""
    UPDATE incidents SET body = json_extract(body, {_json_paths(codec.BODY_FIELDS)})
    WHERE substr(body, 1, 1) = '{{';
    ALTER TABLE incidents ADD COLUMN fold TEXT;
    UPDATE incidents SET fold = json_array(
        CASE WHEN status = 'resolved' THEN NULL ELSE status || '|' || priority || '|' ||
            flapping || '|' || suppressed || '|' ||
            ifnull(json_extract(body, {_at('acknowledged')}), 0) || '|' || {_STALE} END,
        CASE WHEN status = 'resolved' THEN json_extract(body, {_at('reopen_until')}) END,
        CASE WHEN {_STREAMED} THEN last_seen END,
        CASE WHEN {_STREAMED} THEN {_INTERVAL} END,
        {", ".join(f"json_extract(body, {_at(timer)})" for timer in codec.TICKET_TIMERS)}
    );
"""


# Each entry moves the schema one version up; `PRAGMA user_version` records where a file stands.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE incidents (
        id           INTEGER PRIMARY KEY,
        host         TEXT NOT NULL,
        service      TEXT,
        status       TEXT NOT NULL,
        check_state  TEXT NOT NULL,
        priority     TEXT NOT NULL,
        impact       TEXT NOT NULL,
        urgency      TEXT NOT NULL,
        occurrences  INTEGER NOT NULL,
        first_seen   TEXT NOT NULL,
        last_seen    TEXT NOT NULL,
        opened_at    TEXT,
        resolved_at  TEXT,
        due_at       TEXT,
        flapping     INTEGER NOT NULL,
        suppressed   INTEGER NOT NULL,
        last_output  TEXT NOT NULL,
        body         TEXT NOT NULL
    );
    -- One unresolved incident per key, whatever a bug elsewhere might try.
    CREATE UNIQUE INDEX incidents_one_unresolved ON incidents (host, ifnull(service, ''))
        WHERE status != 'resolved';
    CREATE INDEX incidents_status ON incidents (status, id);
    CREATE INDEX incidents_resolved_at ON incidents (resolved_at) WHERE status = 'resolved';
    CREATE TABLE events (
        id           INTEGER PRIMARY KEY,
        incident_id  INTEGER NOT NULL,
        at           TEXT NOT NULL,
        kind         TEXT NOT NULL,
        detail       TEXT NOT NULL
    );
    CREATE INDEX events_incident ON events (incident_id, id);
    """,
    """
    -- Ticket operations, written in the same transaction as the incident change they follow
    -- from, delivered by the dispatcher (alertd.outbox) in id order per incident.
    CREATE TABLE outbox (
        id               INTEGER PRIMARY KEY,
        incident_id      INTEGER NOT NULL,
        op               TEXT NOT NULL,
        payload          TEXT NOT NULL,
        priority         INTEGER NOT NULL,
        state            TEXT NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        -- 1 while an attempt was sent whose outcome alertd does not know (crash, timeout):
        -- the next attempt looks for the effect before repeating it.
        started          INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  TEXT NOT NULL,
        created_at       TEXT NOT NULL,
        updated_at       TEXT NOT NULL,
        last_error       TEXT
    );
    CREATE INDEX outbox_queue ON outbox (state, incident_id, id);
    CREATE TABLE tickets (
        incident_id      INTEGER PRIMARY KEY,
        ticket_id        INTEGER NOT NULL,
        priority_sent    INTEGER,
        created_at       TEXT NOT NULL
    );
    """,
    """
    -- Maintenance windows (alertd.silences); the document is `silences.to_document`.
    CREATE TABLE silences (
        id           INTEGER PRIMARY KEY,
        starts_at    TEXT NOT NULL,
        ends_at      TEXT,
        source       TEXT NOT NULL,
        body         TEXT NOT NULL
    );
    CREATE INDEX silences_ends_at ON silences (ends_at);
    CREATE TABLE heartbeats (
        name             TEXT PRIMARY KEY,
        interval_seconds REAL NOT NULL,
        last_beat        TEXT NOT NULL,
        due              TEXT NOT NULL,
        missed           INTEGER NOT NULL
    );
    """,
    """
    -- An incident's operations (incident page, ticket polls) without scanning the outbox.
    CREATE INDEX outbox_incident ON outbox (incident_id, id);
    """,
    """
    -- 1 while a pending operation waits out a backoff after a transient helpdesk failure
    -- (5xx, timeout, no connection): when the helpdesk is back, such rows are due at once.
    ALTER TABLE outbox ADD COLUMN backoff INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX outbox_backoff ON outbox (backoff) WHERE backoff = 1;
    """,
    """
    -- Retention (Store._purge): delivered operations by age, without reading the queue.
    CREATE INDEX outbox_done_updated ON outbox (updated_at) WHERE state = 'done';
    """,
    """
    -- Rows per delivery state, kept in step by the writer's own transactions (these
    -- triggers), so every dispatcher report and readiness probe reads three rows instead of
    -- counting the whole outbox (Store.outbox_stats).
    CREATE TABLE outbox_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL);
    INSERT INTO outbox_counts (state, n) VALUES ('pending', 0), ('done', 0), ('dead', 0);
    UPDATE outbox_counts SET n = (SELECT count(*) FROM outbox WHERE state = outbox_counts.state);
    CREATE TRIGGER outbox_counts_insert AFTER INSERT ON outbox BEGIN
        UPDATE outbox_counts SET n = n + 1 WHERE state = NEW.state;
    END;
    CREATE TRIGGER outbox_counts_delete AFTER DELETE ON outbox BEGIN
        UPDATE outbox_counts SET n = n - 1 WHERE state = OLD.state;
    END;
    CREATE TRIGGER outbox_counts_update AFTER UPDATE OF state ON outbox
        WHEN OLD.state != NEW.state BEGIN
        UPDATE outbox_counts SET n = n - 1 WHERE state = OLD.state;
        UPDATE outbox_counts SET n = n + 1 WHERE state = NEW.state;
    END;
    -- The oldest waiting operation, without reading past every delivered one.
    CREATE INDEX outbox_pending_created ON outbox (created_at) WHERE state = 'pending';
    """,
    """
    -- Plain repeats write a narrow row (Store._commit): `hot` holds what they changed in
    -- `body` since the last full write (codec.repeat_row); the open run of repeats is counted
    -- here instead of an event row rewritten on every commit, and becomes one `deduplicated`
    -- event when anything else happens to the incident (the audit view shows it meanwhile).
    ALTER TABLE incidents ADD COLUMN hot TEXT;
    ALTER TABLE incidents ADD COLUMN repeats INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN repeats_from TEXT;
    ALTER TABLE incidents ADD COLUMN repeats_last TEXT;
    """,
    """
    -- The inbox (alertd.inbox, a file of its own beside this one) holds inputs acknowledged
    -- and not yet applied; the commit that applies them moves this mark past their rows.
    CREATE TABLE inbox_applied (upto INTEGER NOT NULL);
    INSERT INTO inbox_applied (upto) VALUES (0);
    """,
    _POSITIONAL_BODIES,
)

SYNCHRONOUS_MODES = ("FULL", "NORMAL")


class OutboxState(StrEnum):
    """Where a ticket operation is in its delivery."""

    PENDING = "pending"  # waiting to be sent (now, or after a backoff)
    DONE = "done"  # the helpdesk has it
    DEAD = "dead"  # refused for good: kept, visible, and re-drivable by hand


class OutboxRow(NamedTuple):
    """One ticket operation as stored."""

    id: int
    incident_id: int
    op: str
    payload: dict[str, Any]
    priority: int
    state: OutboxState
    attempts: int
    started: bool
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    last_error: str | None
    backoff: bool = False  # waiting out a backoff after a transient failure (releasable)


class NewOp(NamedTuple):
    incident_id: int
    op: str
    payload: dict[str, Any]
    priority: int
    not_before: datetime


class OutboxUpdate(NamedTuple):
    """The dispatcher's record of an attempt: the row's new delivery state."""

    row_id: int
    state: OutboxState
    attempts: int
    started: bool
    next_attempt_at: datetime
    last_error: str | None
    backoff: bool = False


class Redrive(NamedTuple):
    """Send a dead-lettered operation again, or a pending one now (`alertd outbox retry`)."""

    row_id: int


class TicketLink(NamedTuple):
    """Which helpdesk ticket an incident has (set on create, changed on re-create)."""

    incident_id: int
    ticket_id: int
    priority_sent: int | None
    # A ticket that did not exist before this link (a create, a re-create, or a create of
    # unknown outcome found afterwards); not stored: read by after-commit hooks (nagios_ack).
    created: bool = False


class JournalMark(NamedTuple):
    """Engine input: the journal rows up to `upto` are applied by this submission (PostgreSQL
    with several daemons, `alertd.journal`; SQLite's inbox, `alertd.inbox`): the checkpoint,
    or the inbox rows' deletion, commits with what they changed."""

    upto: int


class PurgeKind(StrEnum):
    """What retention deletes (label `kind` of alertd_retention_deleted_total)."""

    INCIDENTS = "incidents"  # with their ticket link and (delivered) operations
    EVENTS = "events"
    OUTBOX = "outbox"  # delivered operations


@dataclass(frozen=True, slots=True)
class Purge:
    """One retention pass, run inside a write batch's transaction (`Store.write`)."""

    resolved_before: datetime  # resolved incidents resolved before this go, with their rows
    done_before: datetime  # delivered operations last updated before this go
    limit: int  # rows deleted in this pass at most, all kinds together
    # The writer's say: whether it still holds this incident (id, host, service) in memory,
    # where it may reopen; such an incident is never deleted whatever its time says.
    live: Callable[[int, str, str | None], bool] = lambda _id, _host, _service: False


@dataclass(slots=True)
class WriteBatch:
    """Everything one group commit writes, in one transaction."""

    upserts: list[tuple[Incident, datetime | None]] = field(default_factory=list)
    # Incidents changed by plain repeats only (Transition.repeat): the store may write just
    # the columns a repeat changes (occurrences, last_seen, last_output, due, `hot` fields).
    repeats: list[tuple[Incident, datetime | None]] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)
    events: list[tuple[int, Event]] = field(default_factory=list)
    new_ops: list[NewOp] = field(default_factory=list)
    op_updates: list[OutboxUpdate] = field(default_factory=list)
    tickets: list[TicketLink] = field(default_factory=list)
    redrive: list[int] = field(default_factory=list)  # dead rows to send again; [] = none
    silences: list[Silence] = field(default_factory=list)  # new or changed (expired) ones
    heartbeats: list[Heartbeat] = field(default_factory=list)
    heartbeat_deletes: list[str] = field(default_factory=list)
    at: datetime | None = None  # the commit's time, for created_at / updated_at stamps
    purge: Purge | None = None  # a retention pass to run in this transaction
    # Filled in by `Store.write`: rows the purge deleted, by kind (for the metric).
    purged: dict[PurgeKind, int] = field(default_factory=dict)
    # The journal checkpoint this transaction moves to (PostgreSQL), or the last inbox row it
    # applies (SQLite, alertd.inbox); None: unchanged.
    journal_upto: int | None = None

    def __bool__(self) -> bool:
        return bool(
            self.upserts or self.repeats or self.deletes or self.events or self.new_ops
            or self.op_updates or self.tickets or self.redrive or self.silences or self.heartbeats
            or self.heartbeat_deletes or self.purge or self.journal_upto is not None
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class IncidentQuery:
    status: Status | None = None
    priority: Priority | None = None
    host: str | None = None
    limit: int = 100
    # Keyset paging: incidents with an id below this one (newest first).
    before_id: int | None = None


_T = TypeVar("_T")
_COLS = ", ".join(codec.INCIDENT_COLUMNS)
# Incidents loaded at start per page: a page is folded in ~5 ms of the event loop.
LOAD_PAGE = 1000
_LOAD_SWITCH_INTERVAL = 0.0005


# The start's load: a page of incidents in one step on the store's thread, where SQLite runs
# without the GIL while the loop folds the page before (read a row at a time, the thread took
# the GIL back for each row and waited for the loop to let it go: the start ran at the speed of
# one core). Two texts, both made by plain concatenation (no JSON parsed in SQLite): the
# lines, one per incident (`codec.FOLDED_COLUMNS`, the body and the `hot` overlay as stored),
# kept as they are until an incident is touched, split on the ASCII record separator; and
# one JSON array of what the writer's indexes need of each (`codec.FOLD_COLUMNS` and the
# `fold` column, `codec.fold`), parsed at once.
_FOLD_LINE = (
    f"rtrim(json_array({', '.join(codec.FOLDED_COLUMNS)}), ']') || ',' || body || ',' || "
    "ifnull(hot, 'null') || ']'"
)
_FOLD_INDEX = (
    f"rtrim(json_array({', '.join(codec.FOLD_COLUMNS)}), ']') || ',' || "
    "ifnull(substr(fold, 2), 'null]')"  # no `fold`: `codec.fold` decodes the line instead
)
_FOLD = (
    "SELECT count(*), max(id), group_concat(line, char(30)), "
    "'[' || group_concat(fold, ',') || ']' FROM "
    f"(SELECT id, {_FOLD_LINE} AS line, {_FOLD_INDEX} AS fold FROM incidents WHERE id > ? "
    "AND (status != 'resolved' OR resolved_at >= ?) ORDER BY id LIMIT ?)"
)
_UPSERT = (
    f"INSERT INTO incidents ({_COLS}) VALUES ({', '.join('?' * len(codec.INCIDENT_COLUMNS))}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in codec.INCIDENT_COLUMNS[1:])
)


class Prepared(NamedTuple):
    """A `WriteBatch` encoded into statement parameters (`Store.prepare`), ready to commit.

    Encoding is pure Python and runs on the event loop (the writer encodes batch N+1 there
    while batch N commits); the commit is one call on the store's thread."""

    deletes: list[tuple[int]]
    runs_closed: list[int]  # incidents whose open run of repeats becomes an event row
    upserts: list[tuple[Any, ...]]
    repeats: list[tuple[Any, ...]]  # narrow rows (`codec.repeat_row`) with the run's count
    events: list[tuple[Any, ...]]
    runs: list[tuple[Any, ...]]  # (count, first at, last at, incident id) for full upserts
    new_ops: list[tuple[Any, ...]]
    op_updates: list[tuple[Any, ...]]
    tickets: list[tuple[Any, ...]]
    redrive: list[tuple[Any, ...]]
    silences: list[tuple[Any, ...]]
    heartbeats: list[tuple[Any, ...]]
    heartbeat_deletes: list[tuple[str]]
    purge: Purge | None
    # The journal checkpoint this transaction moves to (PostgreSQL), or the last inbox row it
    # applies (SQLite, alertd.inbox); None: unchanged.
    journal_upto: int | None = None


# A run of plain repeats lives on the incident row (`repeats`, `repeats_from`, `repeats_last`),
# not as an event row rewritten on every commit; anything else that happens to the incident
# closes the run into ONE `deduplicated` event first, so the trail still reads in order.
# Both over a list of ids (`IN (...)`, in chunks): one statement each, not one per incident,
# since most incidents with news have no open run and each lookup would find nothing.
_CLOSE_RUNS = (
    "INSERT INTO events (incident_id, at, kind, detail) SELECT id, repeats_from, "
    "'deduplicated', json_object('count', repeats, 'last_at', repeats_last) "
    "FROM incidents WHERE id IN ({}) AND repeats > 0 ORDER BY id"
)
_RESET_RUNS = (
    "UPDATE incidents SET repeats = 0, repeats_from = NULL, repeats_last = NULL "
    "WHERE id IN ({}) AND repeats > 0"
)
# Ids per `IN (...)` list (SQLite allows 32,766 parameters).
_CHUNK = 500
_RUN = (
    "UPDATE incidents SET repeats = repeats + ?, repeats_from = ifnull(repeats_from, ?), "
    "repeats_last = ? WHERE id = ?"
)
_REPEAT = (
    "UPDATE incidents SET occurrences = ?, last_seen = ?, last_output = ?, due_at = ?, hot = ?, "
    "fold = ?, repeats = repeats + ?, repeats_from = ifnull(repeats_from, ?), repeats_last = ? "
    "WHERE id = ?"
)


class Store(Protocol):
    """What the engine, the dispatcher, the APIs and the console need of a store.

    Two implementations: `SqliteStore` (embedded, the default) and `alertd.store_pg.PgStore`.
    Both pass the contract suite in tests/contract/. Writes come only from the engine's writer
    task (`prepare`/`commit`, and the `load_*` / `max_*` calls it makes at start); everything
    else reads."""

    def describe(self) -> dict[str, str]:
        """What the store is and where, for /readyz and logs (never a password)."""
        ...

    async def close(self) -> None: ...

    # -- the writer's side
    def load_active(
        self, resolved_since: datetime, page: int = ...
    ) -> AsyncIterator[Sequence[Incident | codec.Folded]]:
        """Incidents the writer holds (unresolved, or resolved since `resolved_since`), by
        id, a page at a time: decoded, or folded (decoded when first touched)."""
        ...
    async def max_incident_id(self) -> int: ...
    def prepare(self, batch: WriteBatch) -> Prepared:
        """Encode `batch` for `commit` (pure, on the event loop: the engine encodes round N+1
        while round N commits)."""
        ...

    async def commit(self, prepared: Prepared) -> dict[PurgeKind, int]:
        """Write `prepared` in one durable transaction, or raise StoreError with nothing
        written; return the rows a purge deleted. The engine never overlaps two commits."""
        ...

    async def write(self, batch: WriteBatch) -> None:
        """`prepare` then `commit` (sets `batch.purged`): for callers outside the pipeline."""
        ...

    async def load_silences(self, now: datetime) -> list[Silence]: ...
    async def max_silence_id(self) -> int: ...
    async def load_heartbeats(self) -> list[Heartbeat]: ...

    # -- reads
    async def check_readable(self) -> None: ...
    async def list_incidents(self, query: IncidentQuery) -> list[Incident]: ...
    async def get_incident(self, incident_id: int) -> Incident | None: ...
    async def due_ops(self, now: datetime, limit: int) -> list[OutboxRow]: ...
    async def backed_off(self) -> list[OutboxRow]: ...
    async def next_op_due(self) -> datetime | None: ...
    async def ops(
        self, state: OutboxState | None = None, limit: int = 100, before_id: int | None = None
    ) -> list[OutboxRow]: ...
    async def op(self, row_id: int) -> OutboxRow | None: ...
    async def ops_of(self, incident_id: int) -> list[OutboxRow]: ...
    async def outbox_stats(self) -> dict[str, Any]: ...
    async def ticket_of(self, incident_id: int) -> TicketLink | None: ...
    async def tickets_of(self, incident_ids: list[int]) -> dict[int, TicketLink]: ...
    async def list_silences(self, ended_after: datetime | None) -> list[Silence]: ...
    async def get_silence(self, silence_id: int) -> Silence | None: ...
    async def list_heartbeats(self) -> list[Heartbeat]: ...
    async def tickets_for(self, incident_ids: Sequence[int]) -> dict[int, int]: ...
    async def ticket_times(self, incident_ids: Sequence[int]) -> dict[int, datetime]: ...
    async def event_times(
        self, incident_ids: Sequence[int], kind: str, *, first: bool = False
    ) -> dict[int, datetime]: ...
    async def events_page(
        self, incident_id: int, limit: int, before_id: int | None = None
    ) -> list[tuple[int, Event]]: ...
    async def resolved_between(
        self, since: datetime, until: datetime, limit: int, before_id: int | None = None
    ) -> list[Incident]: ...
    async def noisiest_by_events(
        self, kind: str, since: datetime, until: datetime, limit: int
    ) -> list[tuple[Incident, int]]: ...
    async def noisiest_by_occurrences(
        self, since: datetime, until: datetime, limit: int
    ) -> list[Incident]: ...


class SqliteStore:
    """Owns both SQLite connections. Create with `await SqliteStore.open(...)`, end
    with `close()`.

    The write connection is plain sqlite3 on one thread of the store's own: a whole
    transaction (BEGIN ... COMMIT, every statement) is ONE hand-off from the event loop, not
    one per statement. Reads go through aiosqlite on their own connection."""

    def __init__(
        self,
        path: Path,
        writer: sqlite3.Connection,
        reader: aiosqlite.Connection,
        lock: int | None = None,
        thread: ThreadPoolExecutor | None = None,
    ):
        self.path = path
        self._db = writer
        self._reader = reader
        self._lock = lock
        self._thread = thread or ThreadPoolExecutor(1, thread_name_prefix="alertd-store")
        self._closed = False

    @classmethod
    async def open(cls, path: Path, synchronous: str = "FULL") -> SqliteStore:
        """Open (and migrate) the store, holding its lock file until `close()`.

        The lock comes first, before the schema is touched: two daemons on one store would
        both deliver its outbox, and each would send what the other already sent."""
        if synchronous not in SYNCHRONOUS_MODES:
            raise StoreError(f"synchronous must be one of {SYNCHRONOUS_MODES}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from exc
        lock = _lock(path)
        thread = ThreadPoolExecutor(1, thread_name_prefix="alertd-store")
        loop = asyncio.get_running_loop()
        try:
            writer = await loop.run_in_executor(thread, _connect_writer, path, synchronous)
        except (OSError, sqlite3.Error) as exc:
            os.close(lock)
            thread.shutdown(wait=False)
            raise StoreError(f"cannot open store {path}: {exc}") from exc
        except StoreError:
            os.close(lock)
            thread.shutdown(wait=False)
            raise
        try:
            reader = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True)
            await reader.execute("PRAGMA busy_timeout=5000")
        except (OSError, sqlite3.Error) as exc:
            await loop.run_in_executor(thread, writer.close)
            thread.shutdown(wait=False)
            os.close(lock)
            raise StoreError(f"cannot prepare store {path}: {exc}") from exc
        return cls(path, writer, reader, lock, thread)

    def describe(self) -> dict[str, str]:
        return {"kind": "sqlite", "path": str(self.path)}

    async def close(self) -> None:
        """Close both connections and release the lock; closing again does nothing (as
        PgStore's: an owner and a fixture may both close the store)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._reader.close()
            await self._call(self._db.close)
            self._thread.shutdown(wait=True)
        finally:
            if self._lock is not None:
                os.close(self._lock)  # closing the descriptor releases the lock
                self._lock = None

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run `fn(*args)` on the write connection's thread (its only user)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # -- writer side: only the engine's writer task calls these ---------------------------------

    async def load_active(
        self, resolved_since: datetime, page: int = LOAD_PAGE
    ) -> AsyncIterator[Sequence[Incident | codec.Folded]]:
        """Unresolved incidents, and resolved ones still inside their reopen window, in pages
        of `page` by id: the caller indexes one page at a time, and the event loop runs between
        pages (100,000 incidents at once would stall it for seconds). Folded (`codec.Folded`):
        decoded only when the writer first touches one."""
        since = codec.ts(resolved_since)

        loop = asyncio.get_running_loop()

        def fetch(after: int) -> asyncio.Future[list[Any]]:
            # Submitted to the connection's thread now, not when the loop next runs a task: the
            # next page is read there while this one is folded here (a coroutine would start
            # only once the folding is done, and the two would never overlap).
            return loop.run_in_executor(self._thread, _fetch_all, self._db, _FOLD,
                                        (after, since, page))  # fmt: skip

        ahead = fetch(0)
        names: dict[str, str] = {}  # hosts and services, each name one string
        # The connection's thread needs the GIL for a moment to start each page's step (and to
        # hand its texts back); while the loop folds a page it waits up to the interpreter's
        # switch interval (5 ms, longer than a page takes) and the two take turns instead of
        # overlapping. A shorter interval while loading: 1M incidents in ~7 s instead of ~11 s
        # where a second core is free (bench/README.md, "Start").
        switch = sys.getswitchinterval()
        sys.setswitchinterval(_LOAD_SWITCH_INTERVAL)
        try:
            while True:
                try:
                    ((count, last, lines, indexes),) = await ahead
                except sqlite3.Error as exc:
                    raise StoreError(f"read failed: {exc}") from exc
                if count == page:
                    ahead = fetch(last)
                if count:
                    yield codec.fold_page(lines, indexes, names)
                if count < page:
                    return
        finally:
            sys.setswitchinterval(switch)
            if not ahead.done():
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ahead

    async def max_incident_id(self) -> int:
        rows = await self._writer_rows("SELECT ifnull(max(id), 0) FROM incidents", ())
        return int(rows[0][0]) if rows else 0

    async def inbox_applied(self) -> int:
        """The last inbox row applied (alertd.inbox): later rows wait to be."""
        rows = await self._writer_rows("SELECT upto FROM inbox_applied", ())
        return int(rows[0][0])

    async def write(self, batch: WriteBatch) -> None:
        """Write the batch in one transaction and commit it durably, or raise StoreError."""
        batch.purged = await self.commit(self.prepare(batch))

    def prepare(self, batch: WriteBatch) -> Prepared:
        """Encode `batch` into statement parameters (pure; on the caller's thread)."""
        return prepare(batch)

    async def commit(self, prepared: Prepared) -> dict[PurgeKind, int]:
        """Write `prepared` in one transaction and commit it durably (fsync'd, synchronous=
        FULL), or raise StoreError with nothing written. Returns what a purge deleted."""
        try:
            return await self._call(self._commit, prepared)
        except sqlite3.IntegrityError as exc:
            raise StoreRefused(f"write refused: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"write failed: {exc}") from exc

    def _commit(self, p: Prepared) -> dict[PurgeKind, int]:
        """The transaction, on the store's thread: BEGIN to COMMIT without a hand-off."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if p.deletes:
                db.executemany("DELETE FROM events WHERE incident_id = ?", p.deletes)
                db.executemany("DELETE FROM incidents WHERE id = ?", p.deletes)
            for at in range(0, len(p.runs_closed), _CHUNK):
                # Before this commit's events, so the closed run reads before them.
                ids = p.runs_closed[at : at + _CHUNK]
                db.execute(_CLOSE_RUNS.format(_marks(ids)), ids)  # only "?" marks interpolated
                db.execute(_RESET_RUNS.format(_marks(ids)), ids)
            if p.upserts:
                db.executemany(_UPSERT, p.upserts)
            if p.repeats:
                db.executemany(_REPEAT, p.repeats)
            if p.events:
                db.executemany(
                    "INSERT INTO events (incident_id, at, kind, detail) VALUES (?, ?, ?, ?)",
                    p.events,
                )
            if p.runs:
                db.executemany(_RUN, p.runs)
            self._write_outbox(p)
            self._write_watch(p)
            if p.journal_upto is not None:  # the inbox rows this commit applied
                db.execute("UPDATE inbox_applied SET upto = ?1 WHERE upto < ?1", (p.journal_upto,))
            purged = self._purge(p.purge) if p.purge else {}
            db.execute("COMMIT")
            return purged
        except BaseException:
            _rollback(db)
            raise

    def _write_outbox(self, p: Prepared) -> None:
        db = self._db
        if p.new_ops:
            db.executemany(
                "INSERT INTO outbox (incident_id, op, payload, priority, state, next_attempt_at, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
                p.new_ops,
            )
        if p.op_updates:
            db.executemany(
                "UPDATE outbox SET state = ?, attempts = ?, started = ?, next_attempt_at = ?, "
                "last_error = ?, updated_at = ?, backoff = ? WHERE id = ?",
                p.op_updates,
            )
        if p.tickets:
            db.executemany(
                "INSERT INTO tickets (incident_id, ticket_id, priority_sent, created_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (incident_id) DO UPDATE SET "
                "ticket_id = excluded.ticket_id, "
                "priority_sent = coalesce(excluded.priority_sent, priority_sent)",
                p.tickets,
            )
        if p.redrive:
            db.executemany(
                # A dead letter starts over; a pending row waiting out its backoff (say the API
                # key was fixed) keeps its count and its started mark, and is due now.
                "UPDATE outbox SET attempts = CASE state WHEN 'dead' THEN 0 ELSE attempts END, "
                "state = 'pending', next_attempt_at = ?, updated_at = ? "
                "WHERE id = ? AND state IN ('dead', 'pending')",
                p.redrive,
            )

    def _purge(self, purge: Purge) -> dict[PurgeKind, int]:
        """Delete at most `purge.limit` rows that retention no longer keeps.

        Old resolved incidents go events first, the incident row (with its ticket link and
        operations) once none is left, so an incident with a long trail takes several passes
        and a crash between them leaves a consistent, if shorter, trail. An incident with an
        operation still to deliver or dead-lettered is kept: its ticket is not settled.
        (`purge.live` is called on the store's thread: it only reads the writer's dict.)"""
        db = self._db
        budget = purge.limit
        deleted = dict.fromkeys(PurgeKind, 0)
        cursor = db.execute(
            "SELECT id, host, service FROM incidents i WHERE status = 'resolved' "
            "AND resolved_at < ? AND NOT EXISTS (SELECT 1 FROM outbox o WHERE "
            "o.incident_id = i.id AND o.state != 'done') ORDER BY resolved_at LIMIT ?",
            (codec.ts(purge.resolved_before), budget),
        )
        ids = [r[0] for r in cursor.fetchall() if not purge.live(r[0], r[1], r[2])]
        if ids:
            marks = _marks(ids)
            cursor = db.execute(
                f"DELETE FROM events WHERE id IN (SELECT id FROM events WHERE incident_id IN "
                f"({marks}) ORDER BY incident_id, id LIMIT ?)",  # only "?" marks interpolated
                (*ids, budget),
            )
            deleted[PurgeKind.EVENTS] = max(cursor.rowcount, 0)
            budget -= deleted[PurgeKind.EVENTS]
            cursor = db.execute(
                f"SELECT id FROM incidents i WHERE id IN ({marks}) AND NOT EXISTS "
                "(SELECT 1 FROM events e WHERE e.incident_id = i.id) ORDER BY id LIMIT ?",
                (*ids, max(budget, 0)),
            )
            empty = [(r[0],) for r in cursor.fetchall()]
            if empty:
                db.executemany("DELETE FROM outbox WHERE incident_id = ?", empty)
                db.executemany("DELETE FROM tickets WHERE incident_id = ?", empty)
                db.executemany("DELETE FROM incidents WHERE id = ?", empty)
                deleted[PurgeKind.INCIDENTS] = len(empty)
                budget -= len(empty)
        if budget > 0:
            cursor = db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state = 'done' "
                "AND updated_at < ? ORDER BY updated_at LIMIT ?)",
                (codec.ts(purge.done_before), budget),
            )
            deleted[PurgeKind.OUTBOX] = max(cursor.rowcount, 0)
        return deleted

    def _write_watch(self, p: Prepared) -> None:
        """Silences and heartbeats (alertd.silences, alertd.heartbeats)."""
        db = self._db
        if p.silences:
            db.executemany(
                "INSERT INTO silences (id, starts_at, ends_at, source, body) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "starts_at = excluded.starts_at, ends_at = excluded.ends_at, body = excluded.body",
                p.silences,
            )
        if p.heartbeats:
            db.executemany(
                "INSERT INTO heartbeats (name, interval_seconds, last_beat, due, missed) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "interval_seconds = excluded.interval_seconds, last_beat = excluded.last_beat, "
                "due = excluded.due, missed = excluded.missed",
                p.heartbeats,
            )
        if p.heartbeat_deletes:
            db.executemany("DELETE FROM heartbeats WHERE name = ?", p.heartbeat_deletes)

    async def load_silences(self, now: datetime) -> list[Silence]:
        """Silences not ended by `now` (active, future, recurring, or open-ended)."""
        rows = await self._writer_rows(
            "SELECT body FROM silences WHERE ends_at IS NULL OR ends_at > ? ORDER BY id",
            (codec.ts(now),),
        )
        return [silences.from_document(codec.loads(r[0])) for r in rows]

    async def max_silence_id(self) -> int:
        rows = await self._writer_rows("SELECT ifnull(max(id), 0) FROM silences", ())
        return int(rows[0][0]) if rows else 0

    async def load_heartbeats(self) -> list[Heartbeat]:
        rows = await self._writer_rows(f"SELECT {_HEARTBEAT_COLS} FROM heartbeats", ())
        return [_heartbeat(r) for r in rows]

    async def _writer_rows(self, sql: str, args: tuple[object, ...]) -> list[Any]:
        try:
            return await self._call(_fetch_all, self._db, sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"read failed: {exc}") from exc

    # -- reader side -----------------------------------------------------------------------------

    async def check_readable(self) -> None:
        """A cheap read on the read-only connection, for readiness checks. A probe never uses
        the writer's connection: a transaction begun there from a request would collide with
        the writer's own (and fail its commit)."""
        await self._read("SELECT count(*) FROM sqlite_master", [])

    async def list_incidents(self, query: IncidentQuery) -> list[Incident]:
        where: list[str] = []
        args: list[object] = []
        for column, value in (
            ("status", query.status and query.status.value),
            ("priority", query.priority and query.priority.value),
            ("host", query.host),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if query.before_id is not None:
            where.append("id < ?")
            args.append(query.before_id)
        sql = f"SELECT {_COLS} FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(query.limit)
        return [codec.incident_from_row(r) for r in await self._read(sql, args)]

    async def get_incident(self, incident_id: int) -> Incident | None:
        rows = await self._read(f"SELECT {_COLS} FROM incidents WHERE id = ?", [incident_id])
        return codec.incident_from_row(rows[0]) if rows else None

    # -- outbox (reader side; writes go through the engine's writer) ---------------------------

    async def due_ops(self, now: datetime, limit: int) -> list[OutboxRow]:
        """The first pending operation of each incident, if due; highest priority first."""
        rows = await self._read(
            f"SELECT {_OUTBOX_COLS} FROM outbox o WHERE o.state = 'pending' "
            "AND o.next_attempt_at <= ? AND NOT EXISTS (SELECT 1 FROM outbox p WHERE "
            "p.state = 'pending' AND p.incident_id = o.incident_id AND p.id < o.id) "
            # An incident's turn comes by the highest priority it has waiting, not by that of
            # its first operation: a create queued at Medium must not hold back a later Urgent.
            "ORDER BY (SELECT max(q.priority) FROM outbox q WHERE q.state = 'pending' "
            "AND q.incident_id = o.incident_id) DESC, o.id LIMIT ?",
            [codec.ts(now), limit],
        )
        return [_outbox_row(r) for r in rows]

    async def backed_off(self) -> list[OutboxRow]:
        """Pending operations waiting out a backoff after a transient failure."""
        rows = await self._read(
            f"SELECT {_OUTBOX_COLS} FROM outbox WHERE backoff = 1 AND state = 'pending' "
            "ORDER BY id",
            [],
        )
        return [_outbox_row(r) for r in rows]

    async def next_op_due(self) -> datetime | None:
        rows = await self._read(
            "SELECT min(next_attempt_at) FROM outbox WHERE state = 'pending'", []
        )
        return codec.parse_ts(rows[0][0]) if rows and rows[0][0] else None

    async def ops(
        self, state: OutboxState | None = None, limit: int = 100, before_id: int | None = None
    ) -> list[OutboxRow]:
        where: list[str] = []
        args: list[object] = []
        if state is not None:
            where.append("state = ?")
            args.append(state.value)
        if before_id is not None:
            where.append("id < ?")
            args.append(before_id)
        sql = f"SELECT {_OUTBOX_COLS} FROM outbox"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._read(sql + " ORDER BY id DESC LIMIT ?", [*args, limit])
        return [_outbox_row(r) for r in rows]

    async def op(self, row_id: int) -> OutboxRow | None:
        rows = await self._read(f"SELECT {_OUTBOX_COLS} FROM outbox WHERE id = ?", [row_id])
        return _outbox_row(rows[0]) if rows else None

    async def ops_of(self, incident_id: int) -> list[OutboxRow]:
        rows = await self._read(
            f"SELECT {_OUTBOX_COLS} FROM outbox WHERE incident_id = ? ORDER BY id", [incident_id]
        )
        return [_outbox_row(r) for r in rows]

    async def outbox_stats(self) -> dict[str, Any]:
        """Rows by state and the creation time of the oldest pending one.

        Both without a scan (the dispatcher asks every round, the readiness probe on every
        poll): the counts are kept by triggers in the writer's transactions (`outbox_counts`),
        the oldest comes from a partial index over pending rows only."""
        rows = await self._read("SELECT state, n FROM outbox_counts", [])
        # Named: left to itself the planner reads every pending row through `outbox_queue`.
        oldest = await self._read(
            "SELECT min(created_at) FROM outbox INDEXED BY outbox_pending_created "
            "WHERE state = 'pending'",
            [],
        )
        counts = {**{state.value: 0 for state in OutboxState}, **{r[0]: r[1] for r in rows}}
        return {**counts, "oldest_pending": codec.parse_ts(oldest[0][0]) if oldest else None}

    async def ticket_of(self, incident_id: int) -> TicketLink | None:
        rows = await self._read(
            "SELECT incident_id, ticket_id, priority_sent FROM tickets WHERE incident_id = ?",
            [incident_id],
        )
        return TicketLink(*rows[0]) if rows else None

    async def tickets_of(self, incident_ids: list[int]) -> dict[int, TicketLink]:
        """The ticket of each incident that has one (a page of a listing at a time)."""
        if not incident_ids:
            return {}
        marks = ",".join("?" * len(incident_ids))
        rows = await self._read(
            "SELECT incident_id, ticket_id, priority_sent FROM tickets "
            f"WHERE incident_id IN ({marks})",  # only "?" marks are interpolated
            list(incident_ids),
        )
        return {row[0]: TicketLink(*row) for row in rows}

    # -- silences and heartbeats (reader side) --------------------------------------------------

    async def list_silences(self, ended_after: datetime | None) -> list[Silence]:
        """Silences, newest first; with `ended_after`, only those not ended by then."""
        sql, args = "SELECT body FROM silences", []
        if ended_after is not None:
            sql += " WHERE ends_at IS NULL OR ends_at > ?"
            args.append(codec.ts(ended_after))
        rows = await self._read(sql + " ORDER BY id DESC", args)
        return [silences.from_document(codec.loads(r[0])) for r in rows]

    async def get_silence(self, silence_id: int) -> Silence | None:
        rows = await self._read("SELECT body FROM silences WHERE id = ?", [silence_id])
        return silences.from_document(codec.loads(rows[0][0])) if rows else None

    async def list_heartbeats(self) -> list[Heartbeat]:
        rows = await self._read(f"SELECT {_HEARTBEAT_COLS} FROM heartbeats ORDER BY name", [])
        return [_heartbeat(r) for r in rows]

    # -- the web console's reads (alertd.ui) ---------------------------------------------------
    # Bulk look-ups for one page of incidents: one query per page, never one per incident.

    async def tickets_for(self, incident_ids: Sequence[int]) -> dict[int, int]:
        """incident id -> helpdesk ticket id, for those of `incident_ids` that have a ticket."""
        rows = await self._read(
            "SELECT incident_id, ticket_id FROM tickets "
            f"WHERE incident_id IN ({_marks(incident_ids)})",
            incident_ids,
        )
        return {r[0]: r[1] for r in rows}

    async def ticket_times(self, incident_ids: Sequence[int]) -> dict[int, datetime]:
        """incident id -> when its ticket link was recorded (the time to ticket ends there)."""
        rows = await self._read(
            "SELECT incident_id, created_at FROM tickets "
            f"WHERE incident_id IN ({_marks(incident_ids)})",
            incident_ids,
        )
        return {r[0]: datetime.fromisoformat(r[1]) for r in rows if r[1]}

    async def event_times(
        self, incident_ids: Sequence[int], kind: str, *, first: bool = False
    ) -> dict[int, datetime]:
        """incident id -> the time of its latest (or `first`) event of `kind`."""
        pick = "min" if first else "max"
        rows = await self._read(
            f"SELECT incident_id, {pick}(at) FROM events WHERE kind = ? "
            f"AND incident_id IN ({_marks(incident_ids)}) GROUP BY incident_id",
            [kind, *incident_ids],
        )
        return {r[0]: datetime.fromisoformat(r[1]) for r in rows if r[1]}

    async def events_page(
        self, incident_id: int, limit: int, before_id: int | None = None
    ) -> list[tuple[int, Event]]:
        """(event id, event), newest first; `before_id` pages to older ones."""
        sql = "SELECT id, at, kind, detail FROM events WHERE incident_id = ?"
        args: list[object] = [incident_id]
        if before_id is not None:
            sql += " AND id < ?"
            args.append(before_id)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        if before_id is None:
            # The open run of repeats (kept on the incident row, see MIGRATIONS) is the newest
            # entry: shown as the `deduplicated` event it becomes when the run ends, numbered
            # after the newest real one. One statement, so one snapshot of both.
            sql = (
                "SELECT * FROM (SELECT (SELECT ifnull(max(id), 0) + 1 FROM events WHERE "
                "incident_id = i.id), repeats_from, 'deduplicated', json_object('count', "
                "repeats, 'last_at', repeats_last) FROM incidents i WHERE id = ? AND repeats > 0"
                f") UNION ALL SELECT * FROM ({sql}) ORDER BY 1 DESC LIMIT ?"
            )
            args = [incident_id, *args, limit]
        rows = await self._read(sql, args)
        return [(r[0], codec.event_from_row(r[1], r[2], r[3])) for r in rows]

    async def resolved_between(
        self, since: datetime, until: datetime, limit: int, before_id: int | None = None
    ) -> list[Incident]:
        """Incidents resolved in [since, until), newest first (by id), keyset-paged."""
        sql = (
            f"SELECT {_COLS} FROM incidents WHERE status = 'resolved' "
            "AND resolved_at >= ? AND resolved_at < ?"
        )
        args: list[object] = [codec.ts(since), codec.ts(until)]
        if before_id is not None:
            sql += " AND id < ?"
            args.append(before_id)
        rows = await self._read(sql + " ORDER BY id DESC LIMIT ?", [*args, limit])
        return [codec.incident_from_row(r) for r in rows]

    async def noisiest_by_events(
        self, kind: str, since: datetime, until: datetime, limit: int
    ) -> list[tuple[Incident, int]]:
        """The incidents with the most events of `kind` in [since, until), most first."""
        rows = await self._read(
            f"SELECT n, {_COLS} FROM (SELECT incident_id, count(*) AS n FROM events "
            "WHERE kind = ? AND at >= ? AND at < ? GROUP BY incident_id "
            "ORDER BY n DESC LIMIT ?) JOIN incidents ON incidents.id = incident_id ORDER BY n DESC",
            [kind, codec.ts(since), codec.ts(until), limit],
        )
        return [(codec.incident_from_row(tuple(r)[1:]), r[0]) for r in rows]

    async def noisiest_by_occurrences(
        self, since: datetime, until: datetime, limit: int
    ) -> list[Incident]:
        """Incidents seen in [since, until) with the most occurrences, most first."""
        rows = await self._read(
            f"SELECT {_COLS} FROM incidents WHERE last_seen >= ? AND first_seen < ? "
            "ORDER BY occurrences DESC, id DESC LIMIT ?",
            [codec.ts(since), codec.ts(until), limit],
        )
        return [codec.incident_from_row(r) for r in rows]

    async def _read(self, sql: str, args: Iterable[object]) -> Sequence[sqlite3.Row]:
        try:
            # Execute and fetch in one go on the reader's thread: a statement left open between
            # two awaits keeps a read transaction open, and every other read interleaved on
            # this connection meanwhile sees that old snapshot, not what was just committed.
            return list(await self._reader.execute_fetchall(sql, tuple(args)))
        except sqlite3.Error as exc:
            raise StoreError(f"read failed: {exc}") from exc


_OUTBOX_COLS = (
    "id, incident_id, op, payload, priority, state, attempts, started, next_attempt_at, "
    "created_at, updated_at, last_error, backoff"
)


_HEARTBEAT_COLS = "name, interval_seconds, last_beat, due, missed"


def _marks(values: Sequence[object]) -> str:
    """`?, ?, ?` for an IN list (SQLite allows 32,766 parameters; pages are far smaller)."""
    return ", ".join("?" * len(values))


def lock_path(path: Path) -> Path:
    """The lock file beside the store (`alertd.db` -> `alertd.db.lock`)."""
    return path.with_name(path.name + ".lock")


def _lock(path: Path) -> int:
    """Take the store's lock (an exclusive `flock` on the file beside it) or raise StoreError.

    `flock` belongs to the open file, so the kernel drops it when the process dies, SIGKILL
    included: a crashed daemon never leaves a stale lock behind, and nothing needs cleaning up."""
    where = lock_path(path)
    try:
        fd = os.open(where, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot open the lock file {where}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StoreError(
            f"store {path} is in use by another alertd (pid {holder}); one daemon per store"
        ) from exc
    # Who holds it, for the message above (a hint only: the lock itself is what counts).
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _heartbeat(r: Any) -> Heartbeat:
    return Heartbeat(
        name=r[0], interval=timedelta(seconds=r[1]), last_beat=codec.req_ts(r[2]),
        due=codec.req_ts(r[3]), missed=bool(r[4]),
    )  # fmt: skip


def _outbox_row(r: Any) -> OutboxRow:
    return OutboxRow(
        id=r[0], incident_id=r[1], op=r[2], payload=codec.loads(r[3]), priority=r[4],
        state=OutboxState(r[5]), attempts=r[6], started=bool(r[7]),
        next_attempt_at=codec.req_ts(r[8]), created_at=codec.req_ts(r[9]),
        updated_at=codec.req_ts(r[10]), last_error=r[11], backoff=bool(r[12]),
    )  # fmt: skip


def prepare(batch: WriteBatch) -> Prepared:
    """`batch` encoded into statement parameters, in the columns' order; pure Python. Both
    stores write the same row shapes (alertd.codec), so both commit what this returns."""
    dedup = EventKind.DEDUPLICATED
    runs: dict[int, tuple[int, str | None]] = {}
    events: list[tuple[Any, ...]] = []
    for incident_id, event in batch.events:
        if event.kind is dedup:
            count = int(event.detail.get("count", 1))
            held, at = runs.get(incident_id, (0, None))
            runs[incident_id] = (held + count, at or codec.ts(event.at))
        else:
            events.append(codec.event_row(incident_id, event))
    repeats = []
    for incident, due in batch.repeats:
        count, at = runs.pop(incident.id, (0, None))
        repeats.append((*codec.repeat_row(incident, due)[:6], count, at, at, incident.id))
    now = codec.ts(batch.at)
    return Prepared(
        deletes=[(i,) for i in batch.deletes],
        runs_closed=sorted({e[0] for e in events}),
        upserts=[codec.incident_row(i, due) for i, due in batch.upserts],
        repeats=repeats,
        events=events,
        runs=[(count, at, at, i) for i, (count, at) in runs.items()],
        new_ops=[
            (o.incident_id, o.op, codec.dumps(o.payload), o.priority,
             codec.ts(o.not_before), now, now)
            for o in batch.new_ops
        ],
        op_updates=[
            (u.state.value, u.attempts, int(u.started), codec.ts(u.next_attempt_at),
             u.last_error, now, int(u.backoff), u.row_id)
            for u in batch.op_updates
        ],
        tickets=[(t.incident_id, t.ticket_id, t.priority_sent, now) for t in batch.tickets],
        redrive=[(now, now, row_id) for row_id in batch.redrive],
        silences=[(s.id, codec.ts(s.starts_at), codec.ts(s.ends_at), s.source,
                   codec.dumps(silences.to_document(s))) for s in batch.silences],
        heartbeats=[(h.name, h.interval.total_seconds(), codec.ts(h.last_beat),
                     codec.ts(h.due), int(h.missed)) for h in batch.heartbeats],
        heartbeat_deletes=[(n,) for n in batch.heartbeat_deletes],
        purge=batch.purge,
        journal_upto=batch.journal_upto,
    )  # fmt: skip


def _connect_writer(path: Path, synchronous: str) -> sqlite3.Connection:
    """The write connection, set up and migrated (on the store's thread, its only user)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("PRAGMA busy_timeout=5000")
        _migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def _fetch_all(db: sqlite3.Connection, sql: str, args: tuple[object, ...]) -> list[Any]:
    return db.execute(sql, args).fetchall()


def _migrate(db: sqlite3.Connection) -> None:
    row = db.execute("PRAGMA user_version").fetchone()
    version = int(row[0]) if row else 0
    if version > len(MIGRATIONS):
        raise StoreError(
            f"store schema version {version} is newer than this alertd knows "
            f"({len(MIGRATIONS)}); upgrade alertd"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(script):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise


def _statements(script: str) -> list[str]:
    # executescript would COMMIT on its own; split so a migration stays one transaction.
    # SQLite says where a statement ends (a trigger's body holds `;` of its own).
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    statements, current = [], ""
    for line in lines:
        current += line + "\n"
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements


def _rollback(db: sqlite3.Connection) -> None:
    # No transaction open (BEGIN itself failed) means nothing to undo.
    with contextlib.suppress(sqlite3.Error):
        db.execute("ROLLBACK")
