"""The PostgreSQL store: the same interface as the SQLite one (`alertd.store.Store`), for
installations that outgrow one machine.

Rows have the very shape SQLite's have (`alertd.codec` writes both: times as fixed-width
RFC 3339 text that sorts as text, documents as JSON text), so both stores share one codec and
`alertd migrate` copies rows as they are.

Connections: one for the engine's writer task, one that keeps the lease, and a small pool for
reads (the APIs, the console, the dispatcher, readiness probes).

The lease (`alertd_lease`): whoever writes incidents holds it. A daemon takes it at start (when
it is free, or expired: a daemon killed with SIGKILL leaves it to run out), renews it every
third of its length, and releases it on stop. Each take increments a fencing token, and every
write transaction first checks, with a `FOR SHARE` lock on the lease row, that the token it took
is still the current one: a daemon that was paused past its lease and lost it to another cannot
write a single row afterwards, and a take waits for the holder's open transaction to end. The
lease lives in a table, not in a session-level advisory lock, which a pooler or a failover can
drop without either side noticing. Times are the database's own `now()`, one clock for all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from alertd import codec, silences
from alertd.errors import StoreError
from alertd.heartbeats import Heartbeat
from alertd.model import Event, Incident
from alertd.silences import Silence
from alertd.store import (
    LOAD_PAGE,
    IncidentQuery,
    OutboxRow,
    OutboxState,
    Prepared,
    Purge,
    PurgeKind,
    TicketLink,
    WriteBatch,
    _heartbeat,
    _outbox_row,
    prepare,
)

log = logging.getLogger(__name__)

# Each entry moves the schema one version up; `alertd_schema.version` records where a database
# stands. Appended only, like SQLite's (docs/architecture.md, contract 6).
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE incidents (
        id           BIGINT PRIMARY KEY,
        host         TEXT NOT NULL,
        service      TEXT,
        status       TEXT NOT NULL,
        check_state  TEXT NOT NULL,
        priority     TEXT NOT NULL,
        impact       TEXT NOT NULL,
        urgency      TEXT NOT NULL,
        occurrences  BIGINT NOT NULL,
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
    -- One unresolved incident per key, whoever writes: a guard, not a check-then-insert.
    CREATE UNIQUE INDEX incidents_one_unresolved ON incidents (host, coalesce(service, ''))
        WHERE status <> 'resolved';
    CREATE INDEX incidents_status ON incidents (status, id);
    CREATE INDEX incidents_resolved_at ON incidents (resolved_at) WHERE status = 'resolved';
    CREATE TABLE events (
        id           BIGSERIAL PRIMARY KEY,
        incident_id  BIGINT NOT NULL,
        at           TEXT NOT NULL,
        kind         TEXT NOT NULL,
        detail       TEXT NOT NULL
    );
    CREATE INDEX events_incident ON events (incident_id, id);
    CREATE TABLE outbox (
        id               BIGSERIAL PRIMARY KEY,
        incident_id      BIGINT NOT NULL,
        op               TEXT NOT NULL,
        payload          TEXT NOT NULL,
        priority         INTEGER NOT NULL,
        state            TEXT NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        started          INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  TEXT NOT NULL,
        created_at       TEXT NOT NULL,
        updated_at       TEXT NOT NULL,
        last_error       TEXT,
        backoff          INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX outbox_queue ON outbox (state, incident_id, id);
    CREATE INDEX outbox_incident ON outbox (incident_id, id);
    CREATE INDEX outbox_backoff ON outbox (backoff) WHERE backoff = 1;
    CREATE INDEX outbox_done_updated ON outbox (updated_at) WHERE state = 'done';
    CREATE INDEX outbox_pending_created ON outbox (created_at) WHERE state = 'pending';
    CREATE TABLE outbox_counts (state TEXT PRIMARY KEY, n BIGINT NOT NULL);
    INSERT INTO outbox_counts (state, n) VALUES ('pending', 0), ('done', 0), ('dead', 0);
    CREATE FUNCTION outbox_count() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE outbox_counts SET n = n + 1 WHERE state = NEW.state;
        ELSIF TG_OP = 'DELETE' THEN
            UPDATE outbox_counts SET n = n - 1 WHERE state = OLD.state;
        ELSIF OLD.state <> NEW.state THEN
            UPDATE outbox_counts SET n = n - 1 WHERE state = OLD.state;
            UPDATE outbox_counts SET n = n + 1 WHERE state = NEW.state;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER outbox_counts AFTER INSERT OR DELETE OR UPDATE OF state ON outbox
        FOR EACH ROW EXECUTE FUNCTION outbox_count();
    CREATE TABLE tickets (
        incident_id      BIGINT PRIMARY KEY,
        ticket_id        BIGINT NOT NULL,
        priority_sent    INTEGER,
        created_at       TEXT NOT NULL
    );
    CREATE TABLE silences (
        id           BIGINT PRIMARY KEY,
        starts_at    TEXT NOT NULL,
        ends_at      TEXT,
        source       TEXT NOT NULL,
        body         TEXT NOT NULL
    );
    CREATE INDEX silences_ends_at ON silences (ends_at);
    CREATE TABLE heartbeats (
        name             TEXT PRIMARY KEY,
        interval_seconds DOUBLE PRECISION NOT NULL,
        last_beat        TEXT NOT NULL,
        due              TEXT NOT NULL,
        missed           INTEGER NOT NULL
    );
    -- Who writes: one row, its holder, its fencing token and when it runs out (module doc).
    CREATE TABLE alertd_lease (
        name        TEXT PRIMARY KEY,
        holder      TEXT,
        node        TEXT,
        token       BIGINT NOT NULL,
        expires_at  TIMESTAMPTZ NOT NULL
    );
    """,
    """
    -- Inputs accepted by any daemon, applied by the leader (alertd.journal). `journal_seq` is
    -- the id counter: its row lock orders appenders, so ids are given in commit order without
    -- gaps. `journal_state.applied` is the leader's checkpoint, moved in the transaction that
    -- applies the rows (a separate row: appenders never wait for the leader's commit).
    CREATE TABLE journal (
        id    BIGINT PRIMARY KEY,
        node  TEXT NOT NULL,
        body  TEXT NOT NULL
    );
    CREATE TABLE journal_seq (one INTEGER PRIMARY KEY CHECK (one = 1), appended BIGINT NOT NULL);
    INSERT INTO journal_seq (one, appended) VALUES (1, 0);
    CREATE TABLE journal_state (one INTEGER PRIMARY KEY CHECK (one = 1), applied BIGINT NOT NULL);
    INSERT INTO journal_state (one, applied) VALUES (1, 0);
    """,
    """
    -- Plain repeats write a narrow row, and an open run of them is counted on the incident
    -- row, as in SQLite's migration 8 (alertd.store): `hot` overlays `body`; the run becomes
    -- one `deduplicated` event when anything else happens to the incident.
    ALTER TABLE incidents ADD COLUMN hot TEXT;
    ALTER TABLE incidents ADD COLUMN repeats BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN repeats_from TEXT;
    ALTER TABLE incidents ADD COLUMN repeats_last TEXT;
    """,
    """
    -- What a start needs to index an incident without its body (codec.fold_row), as SQLite's
    -- migration 10 (alertd.store) adds. Rows written before it have none until their next
    -- write: a start decodes those to index them (codec.fold).
    ALTER TABLE incidents ADD COLUMN fold TEXT;
    """,
)

# The tables `alertd migrate` brings over, in this order; the same columns in both stores.
IMPORTED = ("incidents", "events", "outbox", "tickets", "silences", "heartbeats")
# (table, columns, chunks of rows) for `PgStore.import_tables`.
TableRows = tuple[str, Sequence[str], Iterable[list[tuple[Any, ...]]]]

LEASE = "writer"
# Any transaction that migrates takes this transaction-level lock first, so two daemons that
# start together do not both run a migration (released at its COMMIT, never held beyond).
_MIGRATION_LOCK = 0x616C657274640001
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
READ_POOL = 4


def safe_url(url: str) -> str:
    """The URL without a password, should one be in it (config refuses that; this is a guard)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}@" if parts.username else ""
    return parts._replace(netloc=f"{user}{netloc}").geturl()


class PgStore:
    """The PostgreSQL store. Create with `await PgStore.open(...)`, end with `close()`."""

    def __init__(
        self, url: str, password: str, node: str, lease: timedelta, holder: str
    ) -> None:
        self.url = safe_url(url)
        self._dsn = url
        self._password = password or None
        self.node = node
        self._lease_for = lease
        self._holder = holder
        self._token: int | None = None
        self._lost: str | None = None
        self._writer: asyncpg.Connection[Any] | None = None
        self._keeper: asyncpg.Connection[Any] | None = None
        self._pool: asyncpg.Pool[Any] | None = None
        self._renewing: asyncio.Task[None] | None = None
        self._on_lost: Callable[[str], None] | None = None
        # One transaction at a time on the writer's connection (asyncpg refuses a second
        # operation on a busy connection): the engine never overlaps its commits, but an import
        # or a caller of `write` outside the pipeline must wait its turn too.
        self._writing = asyncio.Lock()

    @classmethod
    async def open(
        cls,
        url: str,
        password: str = "",
        *,
        node: str | None = None,
        lease: timedelta = timedelta(seconds=15),
        wait: timedelta | None = None,
        standby: bool = False,
        on_lost: Callable[[str], None] | None = None,
    ) -> PgStore:
        """Connect, migrate, and take the writer's lease, waiting for it at most `wait` (by
        default one lease length and a little: what a killed predecessor leaves behind);
        raise StoreError if another live daemon keeps it. With `standby`, a lease held by
        another is no error: the store opens without it (`leader` False; `try_lease` later).
        `on_lost` is called once if the lease, once held, is lost."""
        node = node or socket.gethostname()
        holder = f"{node}/{os.getpid()}/{secrets.token_hex(4)}"
        store = cls(url, password, node, lease, holder)
        store._on_lost = on_lost
        try:
            store._writer = await store._connect()
            await store._migrate()
            store._keeper = await store._connect()
            store._pool = await asyncpg.create_pool(
                store._dsn, password=store._password, min_size=1, max_size=READ_POOL,
                command_timeout=30,
            )  # fmt: skip
            if standby:
                with contextlib.suppress(StoreError):
                    await store._take_lease(timedelta(0))
            else:
                await store._take_lease(wait if wait is not None else lease + timedelta(seconds=2))
        except BaseException:
            await store._disconnect()
            raise
        if store._token is not None:
            store._renewing = asyncio.create_task(store._renew(), name="store-lease")
        return store

    def describe(self) -> dict[str, str]:
        lease = "lost" if self._lost else ("held" if self._token is not None else "standby")
        return {"kind": "postgresql", "url": self.url, "node": self.node, "lease": lease}

    async def close(self) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
            self._renewing = None
        if self._token is not None and self._keeper is not None and not self._lost:
            # Released, so that a restart (or a standby) need not wait for it to run out.
            with contextlib.suppress(*_DB_ERRORS):
                await self._keeper.execute(
                    "UPDATE alertd_lease SET holder = NULL, expires_at = now() "
                    "WHERE name = $1 AND token = $2",
                    LEASE, self._token,
                )  # fmt: skip
        await self._disconnect()

    async def _disconnect(self) -> None:
        for conn in (self._writer, self._keeper):
            if conn is not None:
                with contextlib.suppress(*_DB_ERRORS):
                    await conn.close(timeout=5)
        if self._pool is not None:
            with contextlib.suppress(*_DB_ERRORS):
                await asyncio.wait_for(self._pool.close(), 5)
        self._writer = self._keeper = self._pool = None

    async def _connect(self) -> asyncpg.Connection[Any]:
        try:
            return await asyncpg.connect(self._dsn, password=self._password, timeout=10)
        except _DB_ERRORS as exc:
            raise StoreError(f"cannot connect to {self.url}: {_reason(exc)}") from exc

    # -- schema -------------------------------------------------------------------------------

    async def _migrate(self) -> None:
        db = self._conn()
        try:
            async with db.transaction():
                await db.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                await db.execute(
                    "CREATE TABLE IF NOT EXISTS alertd_schema (version INTEGER NOT NULL)"
                )
                version = await db.fetchval("SELECT version FROM alertd_schema")
                if version is None:
                    await db.execute("INSERT INTO alertd_schema (version) VALUES (0)")
                    version = 0
                if version > len(MIGRATIONS):
                    raise StoreError(
                        f"store schema version {version} is newer than this alertd knows "
                        f"({len(MIGRATIONS)}); upgrade alertd"
                    )
                for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                    await db.execute(script)
                    await db.execute("UPDATE alertd_schema SET version = $1", number)
        except _DB_ERRORS as exc:
            raise StoreError(f"cannot prepare store {self.url}: {_reason(exc)}") from exc

    # -- the lease ----------------------------------------------------------------------------

    async def _take_lease(self, wait: timedelta) -> None:
        keeper = self._keeper
        assert keeper is not None
        deadline = asyncio.get_running_loop().time() + wait.total_seconds()
        while True:
            try:
                token = await keeper.fetchval(
                    "INSERT INTO alertd_lease (name, holder, node, token, expires_at) "
                    "VALUES ($1, $2, $3, 1, now() + $4::interval) ON CONFLICT (name) DO UPDATE "
                    "SET holder = excluded.holder, node = excluded.node, "
                    "token = alertd_lease.token + 1, expires_at = excluded.expires_at "
                    "WHERE alertd_lease.holder IS NULL OR alertd_lease.expires_at < now() "
                    "RETURNING token",
                    LEASE, self._holder, self.node, self._lease_for,
                )  # fmt: skip
                if token is not None:
                    self._token = int(token)
                    return
                row = await keeper.fetchrow(
                    "SELECT node, expires_at - now() FROM alertd_lease WHERE name = $1", LEASE
                )
            except _DB_ERRORS as exc:
                raise StoreError(f"cannot take the store's lease: {_reason(exc)}") from exc
            if asyncio.get_running_loop().time() >= deadline:
                other = row[0] if row else "unknown"
                raise StoreError(
                    f"store {self.url} is in use by another alertd (node {other}); "
                    "one writer per store"
                )
            await asyncio.sleep(0.25)

    async def _renew(self) -> None:
        """Every third of the lease: extend it, or find it lost (then every write fails)."""
        every = self._lease_for.total_seconds() / 3
        while not self._lost:
            await asyncio.sleep(every)
            try:
                renewed = await self._conn(self._keeper).fetchval(
                    "UPDATE alertd_lease SET expires_at = now() + $3::interval "
                    "WHERE name = $1 AND token = $2 RETURNING token",
                    LEASE, self._token, self._lease_for,
                )  # fmt: skip
            except (*_DB_ERRORS, StoreError) as exc:
                # Not lost yet: the token still fences; the next round tries again.
                log.warning("store lease renewal failed: %s", _reason(exc))
                with contextlib.suppress(StoreError):
                    if self._keeper is None or self._keeper.is_closed():
                        self._keeper = await self._connect()
                continue
            if renewed is None:
                self._lose()

    def _lose(self, reason: str = "another alertd took the store's lease") -> None:
        if self._lost:
            return
        self._lost = reason
        log.error("store lease lost: %s", self._lost)
        if self._on_lost is not None:
            self._on_lost(self._lost)

    def give_up(self, reason: str) -> None:
        """This daemon cannot lead after all (say its state would not load): it must not
        keep the lease alive for nothing. Treated as a loss: no more writes, `on_lost`."""
        self._lose(reason)

    # -- writer side --------------------------------------------------------------------------

    def _conn(self, conn: asyncpg.Connection[Any] | None = None) -> asyncpg.Connection[Any]:
        chosen = conn if conn is not None else self._writer
        if chosen is None:
            raise StoreError(f"store {self.url} is closed")
        return chosen

    async def _write_conn(self) -> asyncpg.Connection[Any]:
        """The writer's connection, opened again if the server dropped it (a restart)."""
        if self._writer is None or self._writer.is_closed():
            self._writer = await self._connect()
        return self._writer

    async def load_active(
        self, resolved_since: datetime, page: int = LOAD_PAGE
    ) -> AsyncIterator[Sequence[Incident | codec.Folded]]:
        """As SQLite's (alertd.store): folded, a page as two texts the server builds, the next
        page's query in flight while this one is folded. A row from before the `fold` column
        (migration 4) is decoded to index it (`codec.fold`), until its next write."""
        since = codec.ts(resolved_since)
        names: dict[str, str] = {}

        async def fetch(after: int) -> tuple[int, int, str, str]:
            rows = await self._writer_rows(_FOLD, after, since, page)
            count, last, lines, indexes = rows[0]
            return int(count), int(last or after), lines or "", indexes or "[]"

        ahead = asyncio.ensure_future(fetch(0))
        try:
            while True:
                count, last, lines, indexes = await ahead
                if count == page:
                    ahead = asyncio.ensure_future(fetch(last))
                    await asyncio.sleep(0)  # the query goes out before this page is folded
                if count:
                    yield codec.fold_page(lines, indexes, names)
                if count < page:
                    return
        finally:
            if not ahead.done():
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ahead

    async def max_incident_id(self) -> int:
        rows = await self._writer_rows("SELECT coalesce(max(id), 0) FROM incidents")
        return int(rows[0][0])

    async def load_silences(self, now: datetime) -> list[Silence]:
        rows = await self._writer_rows(
            "SELECT body FROM silences WHERE ends_at IS NULL OR ends_at > $1 ORDER BY id",
            codec.ts(now),
        )
        return [silences.from_document(codec.loads(r[0])) for r in rows]

    async def max_silence_id(self) -> int:
        rows = await self._writer_rows("SELECT coalesce(max(id), 0) FROM silences")
        return int(rows[0][0])

    async def load_heartbeats(self) -> list[Heartbeat]:
        rows = await self._writer_rows(f"SELECT {_HEARTBEAT_COLS} FROM heartbeats")
        return [_heartbeat(r) for r in rows]

    async def _writer_rows(self, sql: str, *args: object) -> list[Any]:
        try:
            return list(await (await self._write_conn()).fetch(sql, *args))
        except _DB_ERRORS as exc:
            raise StoreError(f"read failed: {_reason(exc)}") from exc

    async def write(self, batch: WriteBatch) -> None:
        """Write the batch in one transaction and commit it durably, or raise StoreError."""
        batch.purged = await self.commit(self.prepare(batch))

    def prepare(self, batch: WriteBatch) -> Prepared:
        """Encode `batch` (pure, on the event loop): the same parameters as SQLite's, since
        both stores hold rows of the same shape (module doc)."""
        return prepare(batch)

    async def commit(self, prepared: Prepared) -> dict[PurgeKind, int]:
        """Write `prepared` in one fenced transaction, the journal checkpoint (if it moves) in
        the same one, and commit it durably; or raise StoreError with nothing written."""
        if self._lost:
            raise StoreError(f"not written: {self._lost}")
        committing = False
        try:
            async with self._writing:
                db = await self._write_conn()
                async with db.transaction():
                    await self._fence(db)
                    purged = await _commit(db, prepared)
                    committing = True  # leaving this block sends COMMIT
                return purged
        except _DB_ERRORS as exc:
            refused = isinstance(exc, asyncpg.PostgresError) and not isinstance(
                exc, asyncpg.PostgresConnectionError
            )  # the server answered the COMMIT with an error: it rolled back
            if committing and not refused:
                # The connection failed after COMMIT left: the server may have committed.
                # Retrying (the engine commits each submission alone after a failure) could
                # apply the same results, or journal rows, twice; and memory no longer
                # matches the store. Stop writing: this daemon ends, and whoever leads next
                # loads the store as it is, the journal from its checkpoint.
                self._lose(f"the outcome of a commit is unknown ({_reason(exc)})")
                raise StoreError(f"write outcome unknown: {_reason(exc)}") from exc
            raise StoreError(f"write failed: {_reason(exc)}") from exc

    async def _fence(self, db: asyncpg.Connection[Any]) -> None:
        """Inside the write transaction: the lease is still ours (its row locked FOR SHARE
        until the commit, so no one can take it while this transaction runs)."""
        held = await db.fetchval(
            "SELECT token FROM alertd_lease WHERE name = $1 AND token = $2 FOR SHARE",
            LEASE, self._token,
        )  # fmt: skip
        if held is None:
            self._lose()
            raise StoreError(f"not written: {self._lost}")

    # -- the journal (several daemons; alertd.journal) ---------------------------------------

    async def append_journal(self, bodies: Sequence[str]) -> int:
        """Append inputs (encoded by alertd.journal) in one transaction; return the last id.
        Committed when this returns: the caller may answer 202."""
        if not bodies:
            return 0
        if self._pool is None:
            raise StoreError(f"store {self.url} is closed")
        try:
            async with self._pool.acquire() as db, db.transaction():
                last = int(await db.fetchval(
                    "UPDATE journal_seq SET appended = appended + $1 RETURNING appended",
                    len(bodies),
                ))  # fmt: skip
                first = last - len(bodies) + 1
                await db.copy_records_to_table(
                    "journal", columns=("id", "node", "body"),
                    records=[(first + n, self.node, b) for n, b in enumerate(bodies)],
                )  # fmt: skip
                await db.execute("SELECT pg_notify('alertd_journal', $1)", str(last))
            return last
        except _DB_ERRORS as exc:
            raise StoreError(f"journal append failed: {_reason(exc)}") from exc

    async def read_journal(self, after: int, limit: int) -> list[tuple[int, str]]:
        rows = await self._read(
            "SELECT id, body FROM journal WHERE id > $1 ORDER BY id LIMIT $2", after, limit
        )
        return [(int(r[0]), str(r[1])) for r in rows]

    async def journal_backlog(self) -> int:
        """Inputs in the journal not applied yet (appended by any daemon, applied by the
        leader): two one-row tables, read on the read pool."""
        rows = await self._read(
            "SELECT s.appended - a.applied FROM journal_seq s CROSS JOIN journal_state a"
        )
        return int(rows[0][0])

    async def journal_applied(self) -> int:
        rows = await self._read("SELECT applied FROM journal_state")
        return int(rows[0][0])

    async def listen_journal(self, wake: asyncio.Event) -> None:
        """Set `wake` on every journal commit (LISTEN on the lease's connection)."""
        keeper = self._conn(self._keeper)
        try:
            await keeper.add_listener("alertd_journal", lambda *_: wake.set())
        except _DB_ERRORS as exc:
            raise StoreError(f"cannot listen for the journal: {_reason(exc)}") from exc

    @property
    def leader(self) -> bool:
        """This daemon holds the writer's lease (and has not lost it)."""
        return self._token is not None and not self._lost

    async def holder(self) -> str | None:
        """The node holding the lease now, if any."""
        rows = await self._read(
            "SELECT node FROM alertd_lease WHERE name = $1 AND holder IS NOT NULL "
            "AND expires_at > now()",
            LEASE,
        )
        return str(rows[0][0]) if rows else None

    async def try_lease(self) -> bool:
        """Take the lease if it is free or expired; start renewing it. For a standby."""
        if self.leader:
            return True
        try:
            await self._take_lease(timedelta(0))
        except StoreError:
            return False
        self._renewing = asyncio.create_task(self._renew(), name="store-lease")
        return True

    # -- a whole store brought in (`alertd migrate`) -----------------------------------------

    async def import_tables(self, tables: Sequence[TableRows]) -> dict[str, int]:
        """Copy whole tables into this (empty) store in ONE transaction, fenced like a write:
        all of it or nothing. Row ids are kept (tickets, notes and links name them), the id
        sequences go on after them, and the outbox counts are taken from what arrived."""
        copied: dict[str, int] = {}
        try:
            async with self._writing, (db := await self._write_conn()).transaction():
                await self._fence(db)
                for table in IMPORTED:
                    if await db.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                        raise StoreError(f"{self.url} already holds {table}: not overwritten")
                for table, columns, chunks in tables:
                    if table not in IMPORTED:
                        raise StoreError(f"unknown table {table}")
                    copied[table] = 0
                    for chunk in chunks:
                        await db.copy_records_to_table(table, records=chunk, columns=columns)
                        copied[table] += len(chunk)
                for table in ("events", "outbox"):
                    await db.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
                    )
                await db.execute(
                    "UPDATE outbox_counts SET n = (SELECT count(*) FROM outbox "
                    "WHERE outbox.state = outbox_counts.state)"
                )
        except _DB_ERRORS as exc:
            raise StoreError(f"import failed: {_reason(exc)}") from exc
        return copied

    # -- reader side --------------------------------------------------------------------------

    async def _read(self, sql: str, *args: object) -> list[Any]:
        if self._pool is None:
            raise StoreError(f"store {self.url} is closed")
        try:
            return list(await self._pool.fetch(sql, *args))
        except _DB_ERRORS as exc:
            raise StoreError(f"read failed: {_reason(exc)}") from exc

    async def check_readable(self) -> None:
        await self._read("SELECT 1")
        if self._lost:
            raise StoreError(self._lost)

    async def list_incidents(self, query: IncidentQuery) -> list[Incident]:
        where: list[str] = []
        args: list[object] = []
        for column, value in (
            ("status", query.status and query.status.value),
            ("priority", query.priority and query.priority.value),
            ("host", query.host),
        ):
            if value is not None:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        if query.before_id is not None:
            args.append(query.before_id)
            where.append(f"id < ${len(args)}")
        sql = f"SELECT {_COLS} FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        args.append(query.limit)
        sql += f" ORDER BY id DESC LIMIT ${len(args)}"
        return [codec.incident_from_row(r) for r in await self._read(sql, *args)]

    async def get_incident(self, incident_id: int) -> Incident | None:
        rows = await self._read(f"SELECT {_COLS} FROM incidents WHERE id = $1", incident_id)
        return codec.incident_from_row(rows[0]) if rows else None

    async def due_ops(self, now: datetime, limit: int) -> list[OutboxRow]:
        rows = await self._read(
            f"SELECT {_OUTBOX_COLS} FROM outbox o WHERE o.state = 'pending' "
            "AND o.next_attempt_at <= $1 AND NOT EXISTS (SELECT 1 FROM outbox p WHERE "
            "p.state = 'pending' AND p.incident_id = o.incident_id AND p.id < o.id) "
            # As SQLite's: an incident's turn comes by the highest priority it has waiting.
            "ORDER BY (SELECT max(q.priority) FROM outbox q WHERE q.state = 'pending' "
            "AND q.incident_id = o.incident_id) DESC, o.id LIMIT $2",
            codec.ts(now), limit,
        )  # fmt: skip
        return [_outbox_row(r) for r in rows]

    async def backed_off(self) -> list[OutboxRow]:
        rows = await self._read(
            f"SELECT {_OUTBOX_COLS} FROM outbox WHERE backoff = 1 AND state = 'pending' "
            "ORDER BY id"
        )
        return [_outbox_row(r) for r in rows]

    async def next_op_due(self) -> datetime | None:
        rows = await self._read("SELECT min(next_attempt_at) FROM outbox WHERE state = 'pending'")
        return codec.parse_ts(rows[0][0]) if rows and rows[0][0] else None

    async def ops(
        self, state: OutboxState | None = None, limit: int = 100, before_id: int | None = None
    ) -> list[OutboxRow]:
        where: list[str] = []
        args: list[object] = []
        if state is not None:
            args.append(state.value)
            where.append(f"state = ${len(args)}")
        if before_id is not None:
            args.append(before_id)
            where.append(f"id < ${len(args)}")
        sql = f"SELECT {_OUTBOX_COLS} FROM outbox"
        if where:
            sql += " WHERE " + " AND ".join(where)
        args.append(limit)
        rows = await self._read(sql + f" ORDER BY id DESC LIMIT ${len(args)}", *args)
        return [_outbox_row(r) for r in rows]

    async def op(self, row_id: int) -> OutboxRow | None:
        rows = await self._read(f"SELECT {_OUTBOX_COLS} FROM outbox WHERE id = $1", row_id)
        return _outbox_row(rows[0]) if rows else None

    async def ops_of(self, incident_id: int) -> list[OutboxRow]:
        rows = await self._read(
            f"SELECT {_OUTBOX_COLS} FROM outbox WHERE incident_id = $1 ORDER BY id", incident_id
        )
        return [_outbox_row(r) for r in rows]

    async def outbox_stats(self) -> dict[str, Any]:
        """Rows by state (kept by a trigger) and the oldest pending one (a partial index)."""
        rows = await self._read("SELECT state, n FROM outbox_counts")
        oldest = await self._read(
            "SELECT min(created_at) FROM outbox WHERE state = 'pending'"
        )
        counts = {**{s.value: 0 for s in OutboxState}, **{r[0]: int(r[1]) for r in rows}}
        return {**counts, "oldest_pending": codec.parse_ts(oldest[0][0]) if oldest else None}

    async def ticket_of(self, incident_id: int) -> TicketLink | None:
        rows = await self._read(
            "SELECT incident_id, ticket_id, priority_sent FROM tickets WHERE incident_id = $1",
            incident_id,
        )
        return TicketLink(*rows[0]) if rows else None

    async def tickets_of(self, incident_ids: list[int]) -> dict[int, TicketLink]:
        if not incident_ids:
            return {}
        rows = await self._read(
            "SELECT incident_id, ticket_id, priority_sent FROM tickets "
            "WHERE incident_id = ANY($1::bigint[])",
            list(incident_ids),
        )
        return {row[0]: TicketLink(*row) for row in rows}

    async def list_silences(self, ended_after: datetime | None) -> list[Silence]:
        if ended_after is None:
            rows = await self._read("SELECT body FROM silences ORDER BY id DESC")
        else:
            rows = await self._read(
                "SELECT body FROM silences WHERE ends_at IS NULL OR ends_at > $1 "
                "ORDER BY id DESC",
                codec.ts(ended_after),
            )
        return [silences.from_document(codec.loads(r[0])) for r in rows]

    async def get_silence(self, silence_id: int) -> Silence | None:
        rows = await self._read("SELECT body FROM silences WHERE id = $1", silence_id)
        return silences.from_document(codec.loads(rows[0][0])) if rows else None

    async def list_heartbeats(self) -> list[Heartbeat]:
        rows = await self._read(f"SELECT {_HEARTBEAT_COLS} FROM heartbeats ORDER BY name")
        return [_heartbeat(r) for r in rows]

    async def tickets_for(self, incident_ids: Sequence[int]) -> dict[int, int]:
        rows = await self._read(
            "SELECT incident_id, ticket_id FROM tickets WHERE incident_id = ANY($1::bigint[])",
            list(incident_ids),
        )
        return {r[0]: r[1] for r in rows}

    async def ticket_times(self, incident_ids: Sequence[int]) -> dict[int, datetime]:
        rows = await self._read(
            "SELECT incident_id, created_at FROM tickets WHERE incident_id = ANY($1::bigint[])",
            list(incident_ids),
        )
        return {r[0]: datetime.fromisoformat(r[1]) for r in rows if r[1]}

    async def event_times(
        self, incident_ids: Sequence[int], kind: str, *, first: bool = False
    ) -> dict[int, datetime]:
        pick = "min" if first else "max"
        rows = await self._read(
            f"SELECT incident_id, {pick}(at) FROM events WHERE kind = $1 "
            "AND incident_id = ANY($2::bigint[]) GROUP BY incident_id",
            kind, list(incident_ids),
        )  # fmt: skip
        return {r[0]: datetime.fromisoformat(r[1]) for r in rows if r[1]}

    async def events_page(
        self, incident_id: int, limit: int, before_id: int | None = None
    ) -> list[tuple[int, Event]]:
        if before_id is None:
            # As SQLite's: the open run of repeats (on the incident row) is the newest entry,
            # shown as the `deduplicated` event it becomes, numbered after the newest real one;
            # one statement, so one snapshot of both.
            rows = await self._read(
                "SELECT * FROM (SELECT (SELECT coalesce(max(id), 0) + 1 FROM events WHERE "
                "incident_id = i.id) AS id, repeats_from AS at, 'deduplicated' AS kind, "
                "json_build_object('count', repeats, 'last_at', repeats_last)::text AS detail "
                "FROM incidents i WHERE id = $1 AND repeats > 0 UNION ALL "
                "SELECT id, at, kind, detail FROM events WHERE incident_id = $1) AS t "
                "ORDER BY id DESC LIMIT $2",
                incident_id, limit,
            )  # fmt: skip
        else:
            rows = await self._read(
                "SELECT id, at, kind, detail FROM events WHERE incident_id = $1 AND id < $2 "
                "ORDER BY id DESC LIMIT $3",
                incident_id, before_id, limit,
            )  # fmt: skip
        return [(r[0], codec.event_from_row(r[1], r[2], r[3])) for r in rows]

    async def resolved_between(
        self, since: datetime, until: datetime, limit: int, before_id: int | None = None
    ) -> list[Incident]:
        sql = (
            f"SELECT {_COLS} FROM incidents WHERE status = 'resolved' "
            "AND resolved_at >= $1 AND resolved_at < $2"
        )
        args: list[object] = [codec.ts(since), codec.ts(until)]
        if before_id is not None:
            args.append(before_id)
            sql += f" AND id < ${len(args)}"
        args.append(limit)
        rows = await self._read(sql + f" ORDER BY id DESC LIMIT ${len(args)}", *args)
        return [codec.incident_from_row(r) for r in rows]

    async def noisiest_by_events(
        self, kind: str, since: datetime, until: datetime, limit: int
    ) -> list[tuple[Incident, int]]:
        rows = await self._read(
            f"SELECT c.n, {_QCOLS} FROM (SELECT incident_id, count(*) AS n FROM events "
            "WHERE kind = $1 AND at >= $2 AND at < $3 GROUP BY incident_id "
            "ORDER BY n DESC LIMIT $4) AS c JOIN incidents i ON i.id = c.incident_id "
            "ORDER BY c.n DESC",
            kind, codec.ts(since), codec.ts(until), limit,
        )  # fmt: skip
        return [(codec.incident_from_row(tuple(r)[1:]), int(r[0])) for r in rows]

    async def noisiest_by_occurrences(
        self, since: datetime, until: datetime, limit: int
    ) -> list[Incident]:
        rows = await self._read(
            f"SELECT {_COLS} FROM incidents WHERE last_seen >= $1 AND first_seen < $2 "
            "ORDER BY occurrences DESC, id DESC LIMIT $3",
            codec.ts(since), codec.ts(until), limit,
        )  # fmt: skip
        return [codec.incident_from_row(r) for r in rows]


_COLS = ", ".join(codec.INCIDENT_COLUMNS)
# A start's page (alertd.store, `_FOLD`, in this server's SQL): the lines and the indexes,
# each aggregated in id order.
_FOLD = (
    "SELECT count(*), max(id), string_agg(line, chr(30) ORDER BY id), "
    "'[' || string_agg(fold, ',' ORDER BY id) || ']' FROM "
    f"(SELECT id, left(json_build_array({', '.join(codec.FOLDED_COLUMNS)})::text, -1) || ',' "
    "|| body || ',' || coalesce(hot, 'null') || ']' AS line, "
    f"left(json_build_array({', '.join(codec.FOLD_COLUMNS)})::text, -1) || ',' || "
    "coalesce(substr(fold, 2), 'null]') AS fold FROM incidents WHERE id > $1 "
    "AND (status <> 'resolved' OR resolved_at >= $2) ORDER BY id LIMIT $3) AS page"
)
_QCOLS = ", ".join(f"i.{c}" for c in codec.INCIDENT_COLUMNS)
_OUTBOX_COLS = (
    "id, incident_id, op, payload, priority, state, attempts, started, next_attempt_at, "
    "created_at, updated_at, last_error, backoff"
)
_HEARTBEAT_COLS = "name, interval_seconds, last_beat, due, missed"
_UPSERT = (
    f"INSERT INTO incidents ({_COLS}) VALUES "
    f"({', '.join(f'${n}' for n in range(1, len(codec.INCIDENT_COLUMNS) + 1))}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in codec.INCIDENT_COLUMNS[1:])
)


# The narrow-repeat statements, as SQLite's (`alertd.store`: `_CLOSE_RUNS`, `_RESET_RUNS`,
# `_RUN`, `_REPEAT`), over an id array instead of chunked `IN (...)` lists.
_CLOSE_RUNS = (
    "INSERT INTO events (incident_id, at, kind, detail) SELECT id, repeats_from, "
    "'deduplicated', json_build_object('count', repeats, 'last_at', repeats_last)::text "
    "FROM incidents WHERE id = ANY($1::bigint[]) AND repeats > 0 ORDER BY id"
)
_RESET_RUNS = (
    "UPDATE incidents SET repeats = 0, repeats_from = NULL, repeats_last = NULL "
    "WHERE id = ANY($1::bigint[]) AND repeats > 0"
)
_RUN = (
    "UPDATE incidents SET repeats = repeats + $1, repeats_from = coalesce(repeats_from, $2), "
    "repeats_last = $3 WHERE id = $4"
)
_REPEAT = (
    "UPDATE incidents SET occurrences = $1, last_seen = $2, last_output = $3, due_at = $4, "
    "hot = $5, fold = $6, repeats = repeats + $7, repeats_from = coalesce(repeats_from, $8), "
    "repeats_last = $9 WHERE id = $10"
)


async def _commit(db: asyncpg.Connection[Any], p: Prepared) -> dict[PurgeKind, int]:
    """The statements of one write transaction, in SQLite's order (`SqliteStore._commit`)."""
    if p.deletes:
        ids = [d[0] for d in p.deletes]
        await db.execute("DELETE FROM events WHERE incident_id = ANY($1::bigint[])", ids)
        await db.execute("DELETE FROM incidents WHERE id = ANY($1::bigint[])", ids)
    if p.runs_closed:
        # Before this commit's events, so the closed run reads before them.
        await db.execute(_CLOSE_RUNS, p.runs_closed)
        await db.execute(_RESET_RUNS, p.runs_closed)
    if p.upserts:
        await db.executemany(_UPSERT, p.upserts)
    if p.repeats:
        await db.executemany(_REPEAT, p.repeats)
    if p.events:
        await db.executemany(
            "INSERT INTO events (incident_id, at, kind, detail) VALUES ($1, $2, $3, $4)", p.events
        )
    if p.runs:
        await db.executemany(_RUN, p.runs)
    await _write_outbox(db, p)
    await _write_watch(db, p)
    purged = await _purge(db, p.purge) if p.purge else {}
    if p.journal_upto is not None:
        # Exactly once: the checkpoint moves with what the rows changed.
        await db.execute(
            "UPDATE journal_state SET applied = $1 WHERE applied < $1", p.journal_upto
        )
        await db.execute("DELETE FROM journal WHERE id <= $1", p.journal_upto)
    return purged


async def _write_outbox(db: asyncpg.Connection[Any], p: Prepared) -> None:
    if p.new_ops:
        await db.executemany(
            "INSERT INTO outbox (incident_id, op, payload, priority, state, next_attempt_at, "
            "created_at, updated_at) VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7)",
            p.new_ops,
        )
    if p.op_updates:
        await db.executemany(
            "UPDATE outbox SET state = $1, attempts = $2, started = $3, next_attempt_at = $4, "
            "last_error = $5, updated_at = $6, backoff = $7 WHERE id = $8",
            p.op_updates,
        )
    if p.tickets:
        await db.executemany(
            "INSERT INTO tickets (incident_id, ticket_id, priority_sent, created_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (incident_id) DO UPDATE SET "
            "ticket_id = excluded.ticket_id, "
            "priority_sent = coalesce(excluded.priority_sent, tickets.priority_sent)",
            p.tickets,
        )
    if p.redrive:
        await db.executemany(
            "UPDATE outbox SET attempts = CASE state WHEN 'dead' THEN 0 ELSE attempts END, "
            "state = 'pending', next_attempt_at = $1, updated_at = $2 "
            "WHERE id = $3 AND state IN ('dead', 'pending')",
            p.redrive,
        )


async def _write_watch(db: asyncpg.Connection[Any], p: Prepared) -> None:
    if p.silences:
        await db.executemany(
            "INSERT INTO silences (id, starts_at, ends_at, source, body) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET "
            "starts_at = excluded.starts_at, ends_at = excluded.ends_at, body = excluded.body",
            p.silences,
        )
    if p.heartbeats:
        await db.executemany(
            "INSERT INTO heartbeats (name, interval_seconds, last_beat, due, missed) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET "
            "interval_seconds = excluded.interval_seconds, last_beat = excluded.last_beat, "
            "due = excluded.due, missed = excluded.missed",
            p.heartbeats,
        )
    if p.heartbeat_deletes:
        await db.execute(
            "DELETE FROM heartbeats WHERE name = ANY($1::text[])",
            [n for (n,) in p.heartbeat_deletes],
        )


async def _purge(db: asyncpg.Connection[Any], purge: Purge) -> dict[PurgeKind, int]:
    """As SQLite's `_purge`: at most `purge.limit` rows retention no longer keeps."""
    budget = purge.limit
    deleted = dict.fromkeys(PurgeKind, 0)
    rows = await db.fetch(
        "SELECT id, host, service FROM incidents i WHERE status = 'resolved' "
        "AND resolved_at < $1 AND NOT EXISTS (SELECT 1 FROM outbox o WHERE "
        "o.incident_id = i.id AND o.state <> 'done') ORDER BY resolved_at LIMIT $2",
        codec.ts(purge.resolved_before), budget,
    )  # fmt: skip
    ids = [r[0] for r in rows if not purge.live(r[0], r[1], r[2])]
    if ids:
        status = await db.execute(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE "
            "incident_id = ANY($1::bigint[]) ORDER BY incident_id, id LIMIT $2)",
            ids, budget,
        )  # fmt: skip
        deleted[PurgeKind.EVENTS] = _count(status)
        budget -= deleted[PurgeKind.EVENTS]
        rows = await db.fetch(
            "SELECT id FROM incidents i WHERE id = ANY($1::bigint[]) AND NOT EXISTS "
            "(SELECT 1 FROM events e WHERE e.incident_id = i.id) ORDER BY id LIMIT $2",
            ids, max(budget, 0),
        )  # fmt: skip
        empty = [r[0] for r in rows]
        if empty:
            for table, column in (("outbox", "incident_id"), ("tickets", "incident_id"),
                                  ("incidents", "id")):  # fmt: skip
                await db.execute(f"DELETE FROM {table} WHERE {column} = ANY($1::bigint[])", empty)
            deleted[PurgeKind.INCIDENTS] = len(empty)
            budget -= len(empty)
    if budget > 0:
        status = await db.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state = 'done' "
            "AND updated_at < $1 ORDER BY updated_at LIMIT $2)",
            codec.ts(purge.done_before), budget,
        )  # fmt: skip
        deleted[PurgeKind.OUTBOX] = _count(status)
    return deleted


def _count(status: str) -> int:
    """Rows a statement touched, from its command tag ("DELETE 12")."""
    tail = status.rpartition(" ")[2]
    return int(tail) if tail.isdigit() else 0


def _reason(exc: BaseException) -> str:
    """The driver's words for a failure (asyncpg never puts the password in them)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
