"""Incidents loaded folded at start (alertd.codec `Folded`, alertd.cache): decoded, each is the
incident the store holds, field for field, whatever its body looks like; and a folded
incident's timer comes on time even when the due time stored with it is not its own."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

from alertd import codec
from alertd.cache import IncidentCache
from alertd.clock import ManualClock
from alertd.engine import Engine
from alertd.model import CheckResult, CheckState, Incident, StateType, Status
from alertd.policy import LifecyclePolicy
from alertd.store import SqliteStore, WriteBatch
from tests.support import START
from tests.unit.test_codec import every_field_set

YEAR = timedelta(days=365)


async def loaded(store: SqliteStore) -> list[Incident]:
    """The incidents the start loads, decoded from their folded form."""
    found = []
    async for page in store.load_active(START - timedelta(days=365)):
        for item in page:
            assert isinstance(item, codec.Folded)
            found.append(codec.unfold(item))
    return found


def indexed(folded: codec.Folded) -> tuple[object, ...]:
    """What the writer's indexes take from a folded incident."""
    return (folded.id, folded.key, folded.gauge, folded.suppressed, folded.due, folded.until,
            folded.stream)  # fmt: skip


async def folded_as_written(store: SqliteStore, incident: Incident) -> codec.Folded:
    """The incident folded from what this release writes for it (`codec.fold_row`)."""
    rows = await store._writer_rows("SELECT due_at FROM incidents WHERE id = ?", (incident.id,))
    fold = json.loads(codec.fold_row(incident))
    index = [incident.id, incident.host, incident.service, rows[0][0], int(incident.suppressed),
             *fold]  # fmt: skip
    return codec.fold(index, "", {})


async def test_a_folded_incident_unfolds_to_the_stored_one(tmp_path: Path) -> None:
    """Every field set, odd text (quotes, backslashes, newlines, non-ASCII, a NUL), a plain
    repeat's `hot` overlay, each unfolds to exactly what the store's own reader decodes; so do
    incidents of a store from before the positional body (migrated by the start): a body
    stored as a document, one from a release before some fields existed, and a positional one
    from a release whose fields ended earlier. The migration indexes each as this release's
    writes would, and a row without its index values (written by hand) is indexed alike.
    """
    full = every_field_set()._replace(status=Status.OPEN)
    odd = full._replace(
        id=43, service='"quoted" \\ path\n', last_output="naïve ✓ \x00 end", perfdata="a='1;2'",
        labels={"team": "dba", "é": "\u2028"}, long_output="line 1\nline 2\t\"x\"",
        history=(), flap_history=(), interval=None, stream_seen=None, opened_at=None,
        resolved_at=None,
    )  # fmt: skip
    host = full._replace(id=44, service=None, status=Status.RESOLVED, stale=False)
    repeated = full._replace(id=45, host="web-02", stale=False, acknowledged=False)
    old = full._replace(id=46, host="web-03")
    shorter = full._replace(id=47, host="web-04", ticket_resolved=True, source="nagios")
    store = await SqliteStore.open(tmp_path / "a.db", "NORMAL")
    try:
        written_first = (full, odd, host, repeated, old, shorter)
        await store.write(WriteBatch(upserts=[(i, i.recovery_due) for i in written_first]))
        later = repeated._replace(occurrences=9, last_seen=START + timedelta(days=1),
                                  attempt=4, perfdata="t=9", labels={"n": "2"},
                                  percent_state_change=12.5, interval=30.0,
                                  stream_seen=START + timedelta(days=1))  # fmt: skip
        await store.write(WriteBatch(repeats=[(later, None)]))
        await store._writer_rows("UPDATE incidents SET fold = NULL WHERE id = 43", ())
        fresh = [indexed(f) for page in [p async for p in store.load_active(START - YEAR)]
                 for f in page if isinstance(f, codec.Folded)]  # fmt: skip
        written = [indexed(await folded_as_written(store, i))
                   for i in (full, odd, host, later, old, shorter)]  # fmt: skip
        assert fresh == written
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "a.db") as db:
        # Back to the store as the release before the positional body left it (version 9).
        for id_, body in db.execute("SELECT id, body FROM incidents").fetchall():
            document = dict(zip(codec.BODY_FIELDS, json.loads(body), strict=True))
            if id_ == 46:  # from a release before these fields existed
                for name in ("acknowledged", "stale", "escalation_spent", "source",
                             "summary_from"):  # fmt: skip
                    del document[name]
            text = json.dumps(json.loads(body)[:-2]) if id_ == 47 else json.dumps(document)
            db.execute("UPDATE incidents SET body = ? WHERE id = ?", (text, id_))
        db.execute("ALTER TABLE incidents DROP COLUMN fold")
        db.execute("PRAGMA user_version = 9")
    store = await SqliteStore.open(tmp_path / "a.db", "NORMAL")
    try:
        folded = [f for page in [p async for p in store.load_active(START - YEAR)]
                  for f in page if isinstance(f, codec.Folded)]  # fmt: skip
        unfolded = [codec.unfold(f) for f in folded]
        assert [i.id for i in unfolded] == [42, 43, 44, 45, 46, 47]
        for incident in unfolded:
            assert incident == await store.get_incident(incident.id)
        assert [indexed(f) for f in folded] == [
            indexed(await folded_as_written(store, i)) for i in unfolded
        ]
        assert [indexed(f) for f in folded][:4] == written[:4]
        assert unfolded[3].occurrences == 9 and unfolded[3].labels == {"n": "2"}
        assert unfolded[4].acknowledged is False and unfolded[4].source is None
        assert unfolded[4].escalation_spent == timedelta(0)
        assert unfolded[5] == shorter._replace(ticket_resolved=False, source=None)
    finally:
        await store.close()


async def test_a_folded_timer_comes_on_time_when_the_stored_due_time_is_earlier(
    tmp_path: Path,
) -> None:
    """A due time stored by a daemon with a helpdesk includes its ticket timers: restarted
    without one, the start wakes at that time for nothing, and must still resolve the
    incident when its own recovery hold ends."""
    clock = ManualClock(START)
    policy = LifecyclePolicy(recovery_hold=timedelta(minutes=5))
    store = await SqliteStore.open(tmp_path / "a.db", "NORMAL")
    engine = Engine(store, policy, clock)
    await engine.start()
    crit = CheckResult("web", "HTTP", CheckState.CRITICAL, START, state_type=StateType.HARD)
    await engine.submit([crit])
    await engine.submit([crit._replace(state=CheckState.OK)])  # the hold ends at 5m
    await engine.stop()
    await store.close()
    with sqlite3.connect(tmp_path / "a.db") as db:  # a ticket timer was due at 2m
        db.execute("UPDATE incidents SET due_at = ?", (codec.ts(START + timedelta(minutes=2)),))

    store = await SqliteStore.open(tmp_path / "a.db", "NORMAL")
    engine = Engine(store, policy, clock)
    await engine.start()
    try:
        assert engine.folded_incidents == 1
        clock.advance(timedelta(minutes=2))
        await engine.run_timers()  # wakes for the stored time: nothing to do yet
        incident = engine.cached(("web", "HTTP"))
        assert incident is not None and incident.status is Status.RECOVERING
        assert engine.next_due() == START + timedelta(minutes=5)
        clock.advance(timedelta(minutes=3))
        await engine.run_timers()
        incident = engine.cached(("web", "HTTP"))
        assert incident is not None and incident.status is Status.RESOLVED
    finally:
        await engine.stop()
        await store.close()


async def test_the_cache_decodes_a_folded_incident_once_and_counts_what_is_left(
    tmp_path: Path,
) -> None:
    """`entry` never decodes, `peek` decodes without keeping, `get` and `values` decode and
    keep; the count of folded entries follows every change."""
    store = await SqliteStore.open(tmp_path / "a.db", "NORMAL")
    try:
        incidents = [every_field_set()._replace(id=n, host=f"h{n}") for n in (1, 2, 3)]
        await store.write(WriteBatch(upserts=[(i, None) for i in incidents]))
        folded = [f for page in [p async for p in store.load_active(START)] for f in page]
    finally:
        await store.close()
    unfolded: list[int] = []
    cache = IncidentCache(lambda f, i: unfolded.append(i.id))
    for item in folded:
        assert isinstance(item, codec.Folded)
        cache.fold(item)
    assert cache.folded() == 3 and len(cache) == 3
    first, second, third = (i.key for i in incidents)
    assert cache.entry(first) is folded[0] and cache.peek(first) == incidents[0]
    assert cache.folded() == 3 and unfolded == []
    got = cache.get(first)
    assert got == incidents[0] and cache.get(first) is got and unfolded == [1]
    assert cache.folded() == 2
    cache[second] = incidents[1]  # replaced by the writer: no longer folded
    assert cache.folded() == 1
    assert cache.pop(third) is folded[2] and cache.folded() == 0 and len(cache) == 2
    assert list(cache.values()) == incidents[:2] and unfolded == [1]
    cache.fold(folded[2])
    assert list(cache.values()) == incidents and cache.folded() == 0 and unfolded == [1, 3]
    cache.clear()
    assert cache.folded() == 0 and len(cache) == 0
