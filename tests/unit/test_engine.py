"""The one writer: group commit, failure isolation, and timers driven by the clock."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from alertd import codec
from alertd.clock import ManualClock
from alertd.engine import Engine
from alertd.errors import StoreError
from alertd.model import (
    CheckResult,
    CheckState,
    Notice,
    NoticeKind,
    Reporting,
    StateType,
    Status,
)
from alertd.policy import LifecyclePolicy
from alertd.store import SqliteStore


def crit(host: str, clock: ManualClock, service: str = "HTTP") -> CheckResult:
    return CheckResult(host, service, CheckState.CRITICAL, clock.now(), output="down")


@pytest.fixture
async def engine(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Engine]:
    store = await SqliteStore.open(tmp_path / "alertd.db")
    engine = Engine(store, LifecyclePolicy(), clock)
    await engine.start()
    yield engine
    await engine.stop()
    await store.close()


async def test_concurrent_submissions_share_one_commit(engine: Engine, clock: ManualClock) -> None:
    """Fifty requests that arrive together are written in one transaction, not fifty."""
    await asyncio.gather(*(engine.submit([crit(f"h{n}", clock)]) for n in range(50)))
    assert engine.last_batch is not None
    assert engine.last_batch.submissions == 50
    assert engine.last_batch.incidents_written == 50
    assert engine.active_incidents == 50


async def test_a_commit_that_fails_fails_only_its_own_submission(
    engine: Engine, clock: ManualClock, tmp_path: Path
) -> None:
    """When SQLite refuses a group commit, each submission is retried alone: the one that
    cannot be stored gets StoreError and leaves memory as it was (so its retry counts once);
    the others, which shared its transaction by chance, are committed."""
    with sqlite3.connect(tmp_path / "alertd.db") as db:
        db.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON incidents WHEN NEW.host = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    await engine.submit([crit("web", clock)])
    bad, good = await asyncio.gather(
        engine.submit([crit("web", clock), crit("poison", clock)]),
        engine.submit([crit("web", clock)]),
        return_exceptions=True,
    )
    assert isinstance(bad, StoreError) and "disk says no" in str(bad)
    assert good is None
    web = engine.cached(("web", "HTTP"))
    assert web is not None and web.occurrences == 2
    assert engine.cached(("poison", "HTTP")) is None

    await engine.submit([crit("web", clock)])  # the writer survived and goes on
    with sqlite3.connect(tmp_path / "alertd.db") as db:
        assert db.execute("SELECT occurrences FROM incidents").fetchall() == [(3,)]


async def test_host_down_absorbs_and_releases_its_services(
    engine: Engine, clock: ManualClock
) -> None:
    """Services of a DOWN host are suppressed, also those already open; UP releases them."""
    await engine.submit([crit("db", clock, "MySQL")])
    down = CheckResult("db", None, CheckState.DOWN, clock.now(), output="no ping")
    await engine.submit([down, crit("db", clock, "Disk")])
    mysql, disk = engine.cached(("db", "MySQL")), engine.cached(("db", "Disk"))
    assert mysql is not None and mysql.suppressed
    assert disk is not None and disk.suppressed
    assert mysql.suppressed_reason == "host db is DOWN (incident 2)"

    await engine.submit([CheckResult("db", None, CheckState.UP, clock.now())])
    mysql = engine.cached(("db", "MySQL"))
    assert mysql is not None and not mysql.suppressed and mysql.status is Status.OPEN


async def test_resolved_incidents_leave_memory_when_their_reopen_window_ends(
    engine: Engine, clock: ManualClock
) -> None:
    """Memory holds only live incidents: a resolved one is dropped after its reopen window."""
    await engine.submit([crit("web", clock)])
    await engine.submit([CheckResult("web", "HTTP", CheckState.OK, clock.now())])
    clock.advance(timedelta(minutes=5))
    await engine.run_timers()
    resolved = engine.cached(("web", "HTTP"))
    assert resolved is not None and resolved.status is Status.RESOLVED
    clock.advance(timedelta(hours=24))
    await engine.run_timers()
    assert engine.cached(("web", "HTTP")) is None
    assert engine.active_incidents == 0
    await engine.submit([crit("web", clock)])  # after the window: a new incident
    fresh = engine.cached(("web", "HTTP"))
    assert fresh is not None and fresh.id == 2


async def test_notices_go_through_the_same_commit_and_are_stored(
    engine: Engine, clock: ManualClock, tmp_path: Path
) -> None:
    """An ack submitted beside results is applied in order and is on disk after submit."""
    ack = Notice(NoticeKind.ACKNOWLEDGED, "web", "HTTP", clock.now(), "bob", "looking", True)
    await engine.submit([crit("web", clock), ack])
    # A separate connection, not a second Store: the store's lock admits one owner at a time.
    with sqlite3.connect(tmp_path / "alertd.db") as db:
        columns = ", ".join(codec.INCIDENT_COLUMNS)
        row = db.execute(f"SELECT {columns} FROM incidents WHERE id = 1").fetchone()
    stored = codec.incident_from_row(row)
    assert stored.acknowledged
    assert (stored.ack_author, stored.ack_comment, stored.ack_sticky) == ("bob", "looking", True)


async def test_a_soft_host_down_already_absorbs_its_services(
    engine: Engine, clock: ManualClock
) -> None:
    """As seen with a real Nagios: the host is DOWN but still SOFT when its service's check,
    forced HARD by Nagios, arrives through OCSP. The service is absorbed at once (no ticket
    storm); when the host recovers before it was confirmed, the service is released."""
    soft_down = CheckResult("db", None, CheckState.DOWN, clock.now(), state_type=StateType.SOFT,
                            attempt=1, max_attempts=3)  # fmt: skip
    await engine.submit([soft_down])
    host = engine.cached(("db", None))
    assert host is not None and host.status is Status.PENDING
    await engine.submit([crit("db", clock, "MySQL")])
    mysql = engine.cached(("db", "MySQL"))
    assert mysql is not None and mysql.status is Status.OPEN and mysql.suppressed
    assert mysql.suppressed_reason == "host db is DOWN (incident 1)"

    await engine.submit([CheckResult("db", None, CheckState.UP, clock.now())])
    assert engine.cached(("db", None)) is None  # a soft recovery: no host incident remains
    mysql = engine.cached(("db", "MySQL"))
    assert mysql is not None and not mysql.suppressed


async def test_a_service_and_its_hosts_problem_in_one_commit_absorb_in_either_order(
    engine: Engine, clock: ManualClock
) -> None:
    """`[service CRITICAL, host DOWN]` in one commit absorbs the service (the host's change
    used to see only services of earlier commits); so do two requests that share a group
    commit."""
    down = CheckResult("db", None, CheckState.DOWN, clock.now(), state_type=StateType.HARD)
    await engine.submit([crit("db", clock, "MySQL"), down])
    mysql = engine.cached(("db", "MySQL"))
    assert mysql is not None and mysql.suppressed

    other = CheckResult("web", None, CheckState.DOWN, clock.now(), state_type=StateType.HARD)
    await asyncio.gather(engine.submit([crit("web", clock)]), engine.submit([other]))
    assert engine.last_batch is not None and engine.last_batch.submissions == 2
    http = engine.cached(("web", "HTTP"))
    assert http is not None and http.suppressed


async def test_a_new_service_and_its_hosts_recovery_in_one_commit_leave_it_released(
    engine: Engine, clock: ManualClock
) -> None:
    """The host is DOWN; one commit brings a new service problem (absorbed) and the host's UP:
    the service is released, not left suppressed for ever."""
    down = CheckResult("db", None, CheckState.DOWN, clock.now(), state_type=StateType.HARD)
    await engine.submit([down])
    up = CheckResult("db", None, CheckState.UP, clock.now())
    await engine.submit([crit("db", clock, "MySQL"), up])
    mysql = engine.cached(("db", "MySQL"))
    assert mysql is not None and mysql.status is Status.OPEN and not mysql.suppressed


async def test_a_resolved_host_going_soft_down_absorbs_its_services(
    engine: Engine, clock: ManualClock
) -> None:
    """A host resolved within its reopen window that goes SOFT DOWN stays resolved (only a
    HARD problem reopens it) but its services are absorbed as for any host problem; its UP
    releases them, and so does the end of its reopen window."""
    hard = {"state_type": StateType.HARD}
    await engine.submit([CheckResult("db", None, CheckState.DOWN, clock.now(), **hard)])
    await engine.submit([CheckResult("db", None, CheckState.UP, clock.now(), **hard)])
    clock.advance(timedelta(minutes=5))
    await engine.run_timers()
    soft = CheckResult("db", None, CheckState.DOWN, clock.now(), state_type=StateType.SOFT)
    await engine.submit([soft, crit("db", clock, "MySQL")])
    host, mysql = engine.cached(("db", None)), engine.cached(("db", "MySQL"))
    assert host is not None and host.status is Status.RESOLVED
    assert mysql is not None and mysql.suppressed
    clock.advance(timedelta(hours=24))
    await engine.run_timers()  # the host's reopen window ends while it is SOFT DOWN
    assert engine.cached(("db", None)) is None
    mysql = engine.cached(("db", "MySQL"))
    assert mysql is not None and not mysql.suppressed


async def test_the_stale_look_comes_at_the_earliest_deadline(
    tmp_path: Path, clock: ManualClock
) -> None:
    """The writer wakes for staleness exactly at the earliest deadline of an open stream, not
    once a minute counted from its start; silence counts from its start at the earliest."""
    store = await SqliteStore.open(tmp_path / "alertd.db")
    engine = Engine(store, LifecyclePolicy(stale_after=timedelta(minutes=5)), clock)
    await engine.start()
    try:
        assert engine.next_due() is None  # nothing can turn stale
        clock.advance(timedelta(seconds=10))
        stream = crit("web", clock)._replace(reporting=Reporting.STREAM)
        await engine.submit([stream])
        deadline = clock.now() + timedelta(minutes=5)
        assert engine.next_due() == deadline
        clock.advance(timedelta(minutes=5))
        await engine.run_timers()
        web = engine.cached(("web", "HTTP"))
        assert web is not None and web.stale
        assert engine.next_due() is None
    finally:
        await engine.stop()
        await store.close()


async def test_plain_repeats_are_written_narrow_and_read_back_whole(
    engine: Engine, clock: ManualClock, tmp_path: Path
) -> None:
    """Repeats of an open incident write only what they change (the body stays as the open
    wrote it, the changes ride in `hot`), and count their run on the incident row, not in an
    event row per commit; read back, the incident is the cached one, field for field."""
    await engine.submit([crit("web", clock)._replace(reporting=Reporting.STREAM)])
    db_path = tmp_path / "alertd.db"
    with sqlite3.connect(db_path) as db:
        (body,) = db.execute("SELECT body FROM incidents WHERE id = 1").fetchone()
    for n in range(3):
        clock.advance(timedelta(seconds=10))
        repeat = CheckResult("web", "HTTP", CheckState.CRITICAL, clock.now(),
                             output=f"down {n}", perfdata=f"t={n}s", labels={"n": str(n)},
                             reporting=Reporting.STREAM)  # fmt: skip
        await engine.submit([repeat])
    columns = ", ".join(codec.INCIDENT_COLUMNS)
    with sqlite3.connect(db_path) as db:
        row = db.execute(f"SELECT {columns} FROM incidents WHERE id = 1").fetchone()
        run = db.execute("SELECT repeats FROM incidents WHERE id = 1").fetchone()
        kinds = [k for (k,) in db.execute("SELECT kind FROM events WHERE incident_id = 1")]
    body_at, hot_at = codec.INCIDENT_COLUMNS.index("body"), codec.INCIDENT_COLUMNS.index("hot")
    assert row[body_at] == body and row[hot_at] is not None  # narrow: the body stays
    assert run == (3,) and kinds == ["opened"]
    stored = codec.incident_from_row(row)
    assert stored == engine.cached(("web", "HTTP"))
    assert (stored.occurrences, stored.last_output, stored.perfdata) == (4, "down 2", "t=2s")
    assert stored.labels == {"n": "2"} and stored.stream_seen == clock.now()
    # Anything else that happens closes the run into one event, in order.
    ack = Notice(NoticeKind.ACKNOWLEDGED, "web", "HTTP", clock.now(), "bob", "looking", True)
    await engine.submit([ack])
    with sqlite3.connect(db_path) as db:
        trail = db.execute("SELECT kind, detail FROM events WHERE incident_id = 1 ORDER BY id")
        kinds = [(k, codec.loads(d).get("count")) for k, d in trail]
        body_again, hot = db.execute("SELECT body, hot FROM incidents WHERE id = 1").fetchone()
    assert kinds == [("opened", None), ("deduplicated", 3), ("acknowledged", None)]
    assert hot is None and body_again != body  # a full write folds `hot` back into the body
