"""`alertd migrate --from sqlite:PATH --to postgresql://...`: move an installation's store to
PostgreSQL, whole, in one transaction.

The SQLite file is opened as the daemon opens it (its lock taken, so a daemon still running on
it is refused, and its schema brought up to date); the PostgreSQL store too (migrated, its
writer's lease taken, so no daemon writes there meanwhile), and it must be empty. Rows go over
as they are (both stores keep the same columns, `alertd.codec` shapes), ids included: ticket
links, note markers (`alertd-op-<id>`) and queued operations stay valid. The password comes from
`--password-file` or $ALERTD_STORE_PASSWORD, never from the command line, where `ps` shows it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite3

# The CLI's modules load only light parts of the standard library up front: `alertd notify`
# (once per Nagios notification, under a timeout) imports this module too, so asyncio, sqlite3
# and the stores are imported when the command runs. The daemon's variable (config.secrets).
DEFAULT_PASSWORD_ENV = "ALERTD_STORE_PASSWORD"
SCHEMES = ("postgresql", "postgres")
CHUNK = 5000  # rows per COPY: bounded memory whatever the store holds

HELP = (
    "Copy a stopped alertd's SQLite store into an empty PostgreSQL database, in one "
    "transaction. Then set [store] url (and password_file or password_env) and start alertd. "
    f"The password: --password-file, else ${DEFAULT_PASSWORD_ENV}."
)


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("migrate", help="move the store from SQLite to PostgreSQL",
                            description=HELP)  # fmt: skip
    parser.add_argument("--from", dest="source", required=True, metavar="sqlite:PATH",
                        help="the SQLite store (alertd stopped)")  # fmt: skip
    parser.add_argument("--to", dest="target", required=True,
                        metavar="postgresql://USER@HOST:PORT/DATABASE",
                        help="the PostgreSQL database (empty; no password in the URL)")  # fmt: skip
    parser.add_argument("--password-file", type=Path, help="file holding the password")


def main(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if not args.source.startswith("sqlite:") or not args.source[len("sqlite:") :]:
        return _fail("--from must be sqlite:PATH")
    source = Path(args.source[len("sqlite:") :])
    if not source.is_file():
        return _fail(f"{source} is not a file")
    from alertd.errors import StoreError
    from alertd.store_pg import safe_url

    target = args.target
    if target.partition("://")[0] not in SCHEMES:
        return _fail("--to must be a postgresql:// URL")
    if safe_url(target) != target:
        return _fail("--to must not hold a password: use --password-file or "
                     f"${DEFAULT_PASSWORD_ENV}")  # fmt: skip
    if args.password_file is not None:
        try:
            password = args.password_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            return _fail(f"cannot read {args.password_file}: {type(exc).__name__}")
    else:
        password = env.get(DEFAULT_PASSWORD_ENV, "").strip()
    import asyncio

    try:
        copied = asyncio.run(_migrate(source, target, password))
    except StoreError as exc:
        return _fail(str(exc))
    counts = ", ".join(f"{n} {table}" for table, n in copied.items())
    print(f"alertd migrate: copied {counts} from {source} to {target}")
    return 0


async def _migrate(source: Path, target: str, password: str) -> dict[str, int]:
    import sqlite3

    from alertd.errors import StoreError
    from alertd.inbox_file import inbox_path, waiting
    from alertd.store import SqliteStore
    from alertd.store_pg import IMPORTED, PgStore

    sqlite_store = await SqliteStore.open(source)  # the lock: no daemon runs on it meanwhile
    try:
        unapplied = waiting(source, await sqlite_store.inbox_applied())
        if unapplied:
            raise StoreError(
                f"{unapplied} acknowledged requests wait in {inbox_path(source)} to be applied: "
                "start alertd on the SQLite store once (it applies them first), stop it, and "
                "migrate then"
            )
        pg = await PgStore.open(target, password, node="alertd-migrate")
        try:
            db = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
            try:
                tables = [(t, _columns(db, t), _chunks(db, t)) for t in IMPORTED]
                copied = await pg.import_tables(tables)
            finally:
                db.close()
            _check(source, copied)
            return copied
        finally:
            await pg.close()
    finally:
        await sqlite_store.close()


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def _chunks(db: sqlite3.Connection, table: str) -> Iterator[list[tuple[Any, ...]]]:
    cursor = db.execute(f"SELECT * FROM {table} ORDER BY rowid")
    while chunk := cursor.fetchmany(CHUNK):
        yield chunk


def _check(source: Path, copied: dict[str, int]) -> None:
    """Every row arrived: the source's counts, read again, are the copied ones."""
    import sqlite3

    from alertd.errors import StoreError

    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as db:
        for table, n in copied.items():
            (have,) = db.execute(f"SELECT count(*) FROM {table}").fetchone()
            if have != n:
                raise StoreError(f"{table}: {have} rows in {source}, {n} copied")


def _fail(message: str) -> int:
    print(f"alertd migrate: {message}", file=sys.stderr)
    return 1
