"""The inbox's own SQLite file, beside the store's (`alertd.db` -> `alertd.db-inbox`).

Its own file, connection and thread: an append (a small row per request, then fsync) commits
beside the store's transactions instead of waiting behind them for the database lock, and the
two fsyncs overlap. The store keeps the mark of the last row applied (`inbox_applied`, moved
in the same transaction as what the rows changed); rows up to it are deleted here afterwards,
and a start skips any still present, so each row applies once whatever a crash interrupts.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from alertd.errors import StoreError
from alertd.worker import Worker

_T = TypeVar("_T")
# Rows per INSERT statement. One statement per append (not a statement per row, nor BEGIN and
# COMMIT around it): each statement the thread runs releases the GIL and takes it back from
# the busy event loop, and every such switch costs both threads (and the answers wait for it).
# SQLite binds at most 32,766 parameters per statement.
_INSERT_ROWS = 500
# Applied rows are deleted once this many wait to go, in the transaction of an append: a
# DELETE with every append was a second statement and more pages written and fsync'd each
# time. Rows at or below the store's mark are never applied again, whenever they go.
DELETE_EVERY = 1_000
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL)"
)


def inbox_path(store: Path) -> Path:
    return store.with_name(store.name + "-inbox")


def waiting(store: Path, applied: int) -> int:
    """Rows of the inbox of the store at `store` after the mark `applied` (not applied yet),
    read without writing; 0 if it has no inbox."""
    path = inbox_path(store)
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'inbox'").fetchone():
            return 0
        (rows,) = db.execute("SELECT count(*) FROM inbox WHERE id > ?", (applied,)).fetchone()
        return int(rows)
    finally:
        db.close()


class InboxFile:
    """Appends and reads of the inbox rows; one writer (this daemon holds the store's lock)."""

    def __init__(self, path: Path, db: sqlite3.Connection, thread: Worker) -> None:
        self.path = path
        self._db = db
        self._thread = thread
        self._applied = 0  # the store's mark, as last told (`applied`)
        self._deleted = 0  # rows up to this one are deleted (or were never here)

    @classmethod
    async def open(cls, store: Path, synchronous: str, applied: int) -> InboxFile:
        """Open (or create) the inbox of the store at `store`, whose mark says rows up to
        `applied` are applied. Call only while holding the store's lock."""
        path = inbox_path(store)
        thread = Worker("alertd-inbox")
        try:
            db = await thread.call(_connect, path, synchronous, applied)
        except (OSError, sqlite3.Error) as exc:
            thread.shutdown(wait=False)
            raise StoreError(f"cannot open the inbox {path}: {exc}") from exc
        return cls(path, db, thread)

    async def append(self, bodies: Sequence[bytes]) -> int:
        """Append rows in one durable transaction (fsync'd); the id of the last one."""
        upto = self._applied if self._applied - self._deleted >= DELETE_EVERY else 0
        try:
            last = await self._call(_append, self._db, bodies, upto)
        except sqlite3.Error as exc:
            raise StoreError(f"write failed: {exc}") from exc
        self._deleted = max(self._deleted, upto)
        return last

    async def read(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """Rows after id `after`, in id order."""
        try:
            rows = await self._call(_read, self._db, after, limit)
        except sqlite3.Error as exc:
            raise StoreError(f"read failed: {exc}") from exc
        return rows

    def applied(self, upto: int) -> None:
        """The store committed the mark `upto`: those rows may go."""
        self._applied = max(self._applied, upto)

    async def close(self) -> None:
        try:
            if self._applied > self._deleted:
                with contextlib.suppress(sqlite3.Error):
                    await self._call(_delete, self._db, self._applied)
            await self._call(self._db.close)
        finally:
            self._thread.shutdown(wait=True)

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run `fn(*args)` on the inbox connection's thread (its only user)."""
        return await self._thread.call(fn, *args)


def _connect(path: Path, synchronous: str, applied: int) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute(_SCHEMA)
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM inbox WHERE id <= ?", (applied,))
        # Ids only grow past the store's mark, even in an inbox file made anew (deleted by
        # hand): a new row numbered at or below the mark would be taken as applied.
        seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'inbox'").fetchone()
        if seq is None:
            db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('inbox', ?)", (applied,))
        elif seq[0] < applied:
            db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'inbox'", (applied,))
        db.execute("COMMIT")
    except BaseException:
        db.close()
        raise
    return db


def _append(db: sqlite3.Connection, bodies: Sequence[bytes], delete_upto: int) -> int:
    # One statement is a transaction of its own (autocommit: fsync'd before it returns);
    # more than one are made one, so an append is all there or not at all.
    alone = not delete_upto and len(bodies) <= _INSERT_ROWS
    if not alone:
        db.execute("BEGIN IMMEDIATE")
    try:
        if delete_upto:
            db.execute("DELETE FROM inbox WHERE id <= ?", (delete_upto,))
        last = 0
        for at in range(0, len(bodies), _INSERT_ROWS):
            chunk = bodies[at : at + _INSERT_ROWS]
            last = db.execute(_insert(len(chunk)), chunk).lastrowid or 0
        if not alone:
            db.execute("COMMIT")
        return last
    except BaseException:
        if not alone:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


@functools.cache
def _insert(rows: int) -> str:
    """INSERT of `rows` rows in one statement (cached: SQLite's statement cache keys on it)."""
    return "INSERT INTO inbox (body) VALUES " + ", ".join(["(?)"] * rows)


def _read(db: sqlite3.Connection, after: int, limit: int) -> list[tuple[int, bytes]]:
    rows = db.execute(
        "SELECT id, body FROM inbox WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
    ).fetchall()
    return [(int(r[0]), bytes(r[1])) for r in rows]


def _delete(db: sqlite3.Connection, upto: int) -> None:
    db.execute("DELETE FROM inbox WHERE id <= ?", (upto,))
