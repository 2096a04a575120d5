"""The writer's indexes at scale: a stale sweep, a silence change and a Nagios downtime cost
what they touch, not every incident or every silence.

These count the pure functions the writer calls (a spy around them, the real ones still run),
since a time limit would be a flaky stand-in for the same property; the figures at a million
incidents are in bench/README.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alertd import engine as engine_module
from alertd import staleness, watch
from alertd.clock import ManualClock
from alertd.engine import Engine
from alertd.gauges import GaugeKey, gauge_key
from alertd.model import (
    CheckResult,
    CheckState,
    Notice,
    NoticeKind,
    Reporting,
    StateType,
    Status,
)
from alertd.policy import LifecyclePolicy, Pattern
from alertd.silences import Silence, SilenceChange, SilenceExpire
from alertd.store import SqliteStore

HOSTS = 300


def crit(host: str, clock: ManualClock) -> CheckResult:
    return CheckResult(host, "HTTP", CheckState.CRITICAL, clock.now(), output="down",
                       reporting=Reporting.STREAM)  # fmt: skip


class Calls:
    """Counts the calls of a function it wraps (the function still runs)."""

    def __init__(self) -> None:
        self.count = 0

    def wrap(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return real(*args, **kwargs)

        return counted


@pytest.fixture
async def engine(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Engine]:
    store = await SqliteStore.open(tmp_path / "alertd.db")
    engine = Engine(store, LifecyclePolicy(stale_after=timedelta(minutes=5)), clock)
    await engine.start()
    yield engine
    await engine.stop()
    await store.close()


async def test_a_stale_sweep_looks_at_the_incidents_due_not_at_every_one(
    engine: Engine, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 streams one second apart: when the first one's deadline passes, the sweep marks it
    and looks at a handful of others, not at all 300 (at 100,000 incidents a look at every
    one was 0.4 s of the event loop on each sweep)."""
    for n in range(HOSTS):
        await engine.submit([crit(f"host-{n}", clock)])
        clock.advance(timedelta(seconds=1))
    clock.advance(timedelta(minutes=5) - timedelta(seconds=HOSTS) + timedelta(milliseconds=1))
    calls = Calls()
    monkeypatch.setattr(staleness, "stale_deadline", calls.wrap(staleness.stale_deadline))
    await engine.run_timers()
    first = engine.cached(("host-0", "HTTP"))
    second = engine.cached(("host-1", "HTTP"))
    assert first is not None and first.stale
    assert second is not None and not second.stale
    assert calls.count < 10, calls.count
    # The next wake is the next deadline, not "soon" over and over.
    assert engine.next_due() == second.last_seen + timedelta(minutes=5)


async def test_once_every_stream_is_stale_the_writer_sleeps(
    engine: Engine, clock: ManualClock
) -> None:
    """After an outage of the monitoring where every stream went quiet, all are marked in one
    look, and then nothing is due: the writer does not wake to sweep again and again."""
    await engine.submit([crit(f"host-{n}", clock) for n in range(HOSTS)])
    clock.advance(timedelta(hours=1))
    await engine.run_timers()
    assert all(i.stale for i in engine.incidents())
    assert engine.next_due() is None


async def test_a_stale_deadline_moved_by_new_results_is_honoured(
    engine: Engine, clock: ManualClock
) -> None:
    """A stream that keeps reporting is never marked stale by an old deadline, and goes stale
    five minutes after its last result."""
    await engine.submit([crit("web", clock)])
    for _ in range(10):
        clock.advance(timedelta(minutes=1))
        await engine.submit([crit("web", clock)])
    clock.advance(timedelta(minutes=4, seconds=59))
    await engine.run_timers()
    web = engine.cached(("web", "HTTP"))
    assert web is not None and not web.stale
    clock.advance(timedelta(seconds=1))
    await engine.run_timers()
    web = engine.cached(("web", "HTTP"))
    assert web is not None and web.stale


def window(silence_id: int, host: str, clock: ManualClock) -> Silence:
    return Silence(silence_id, clock.now(), None, "bob", "patching", clock.now(),
                   host=Pattern.compile(host))  # fmt: skip


async def test_a_silence_change_touches_its_hosts_incidents_not_every_one(
    engine: Engine, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Creating and ending a window for one host compares that host's incidents with it, not
    all 300 open incidents (100,000 took 0.57 s of the writer per change)."""
    await engine.submit([crit(f"host-{n}", clock) for n in range(HOSTS)])
    matches = Calls()
    monkeypatch.setattr(Silence, "matches", matches.wrap(Silence.matches))
    sid = engine.new_silence_id()
    await engine.submit([SilenceChange(window(sid, "host-7", clock))])
    held = engine.cached(("host-7", "HTTP"))
    assert held is not None and held.suppressed
    other = engine.cached(("host-8", "HTTP"))
    assert other is not None and not other.suppressed
    clock.advance(timedelta(minutes=1))
    await engine.submit([SilenceExpire(sid)])
    released = engine.cached(("host-7", "HTTP"))
    assert released is not None and not released.suppressed
    assert matches.count < 10, matches.count


async def test_a_changed_window_releases_what_it_no_longer_matches(
    engine: Engine, clock: ManualClock
) -> None:
    """A window edited from host-1 to host-2 holds host-2's incident and lets host-1's go."""
    await engine.submit([crit("host-1", clock), crit("host-2", clock)])
    sid = engine.new_silence_id()
    await engine.submit([SilenceChange(window(sid, "host-1", clock))])
    one = engine.cached(("host-1", "HTTP"))
    assert one is not None and one.suppressed
    await engine.submit([SilenceChange(window(sid, "host-2", clock))])
    one, two = engine.cached(("host-1", "HTTP")), engine.cached(("host-2", "HTTP"))
    assert one is not None and not one.suppressed
    assert two is not None and two.suppressed


async def test_nagios_downtimes_cost_each_downtime_not_every_silence(
    engine: Engine, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """400 host downtimes, one request each, then their ends: each start and end looks at its
    own silence, not at every silence open (2,000 downtimes took 44 s of writer time)."""
    looks = Calls()
    monkeypatch.setattr(Silence, "window", looks.wrap(Silence.window))
    for n in range(400):
        await engine.submit([Notice(NoticeKind.DOWNTIME_STARTED, f"host-{n}", None, clock.now(),
                                    "nagiosadmin", "patching")])  # fmt: skip
    assert engine.silence(400) is not None and engine.silence(400).is_active(clock.now())
    for n in range(400):
        await engine.submit([Notice(NoticeKind.DOWNTIME_ENDED, f"host-{n}", None, clock.now())])
    assert engine.silence(1) is None and engine.silence(400) is None
    assert looks.count < 20 * 800, looks.count  # was ~ 400 x 400


def recount(engine: Engine) -> dict[GaugeKey, int]:
    counted: dict[GaugeKey, int] = {}
    for incident in engine.incidents():
        key = gauge_key(incident)
        if key is not None:
            counted[key] = counted.get(key, 0) + 1
    return counted


async def test_the_gauge_counts_follow_every_change_of_the_cache(
    engine: Engine, clock: ManualClock
) -> None:
    """The counts a scrape reads (instead of walking every incident) equal a recount after
    opens, an ack, a window, a recovery, a resolve, a discarded pending one and a stale one."""
    ok = CheckState.OK
    await engine.submit([crit(f"host-{n}", clock) for n in range(5)])
    assert engine.gauge_counts() == recount(engine) and sum(recount(engine).values()) == 5
    ack = Notice(NoticeKind.ACKNOWLEDGED, "host-1", "HTTP", clock.now(), "bob", "on it")
    sid = engine.new_silence_id()
    await engine.submit([ack, SilenceChange(window(sid, "host-2", clock))])
    assert engine.gauge_counts() == recount(engine)
    clock.advance(timedelta(seconds=5))
    await engine.submit([crit("host-3", clock)._replace(state=ok)])
    assert engine.gauge_counts() == recount(engine)
    clock.advance(timedelta(minutes=10))  # host-3's hold ends (resolved); the streams go stale
    await engine.run_timers()
    assert engine.gauge_counts() == recount(engine)
    pending = CheckResult("db", None, CheckState.DOWN, clock.now(), state_type=StateType.SOFT)
    await engine.submit([pending])
    await engine.submit([pending._replace(state=CheckState.UP)])  # a soft recovery: discarded
    assert engine.gauge_counts() == recount(engine)
    counts = recount(engine)
    assert sum(n for k, n in counts.items() if k[3]) == 1  # suppressed: host-2
    assert sum(n for k, n in counts.items() if k[4]) == 1  # acknowledged: host-1
    assert sum(n for k, n in counts.items() if k[5]) == 4  # stale: all open streams


async def test_a_reloaded_shorter_stale_after_applies_to_the_incidents_already_open(
    engine: Engine, clock: ManualClock
) -> None:
    """stale_after 5 min -> 2 min by a reload: a stream quiet for 2 min is stale at the next
    look, though its queued deadline said 5."""
    await engine.submit([crit("web", clock)])
    engine.reconfigure(LifecyclePolicy(stale_after=timedelta(minutes=2)))
    clock.advance(timedelta(minutes=2))
    await engine.run_timers()
    web = engine.cached(("web", "HTTP"))
    assert web is not None and web.stale


async def test_a_window_over_every_host_goes_through_them_a_chunk_per_commit(
    engine: Engine, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A glob window compares every incident: a chunk per commit, the writer going on by itself
    until all are held, and its end releases them the same way."""
    monkeypatch.setattr(watch, "SWEEP_CHUNK", 50)
    await engine.submit([crit(f"host-{n}", clock) for n in range(HOSTS)])
    sid = engine.new_silence_id()
    await engine.submit([SilenceChange(window(sid, "host-*", clock))])
    held = sum(i.suppressed for i in engine.incidents())
    assert 0 < held < HOSTS  # the first chunk at once; the rest follows

    async def all_are(suppressed: bool) -> None:
        for _ in range(1000):  # the writer wakes by itself for the next chunk
            if all(i.suppressed is suppressed for i in engine.incidents()):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{sum(i.suppressed for i in engine.incidents())} held")

    await all_are(True)
    await engine.submit([SilenceExpire(sid)])
    await all_are(False)
    assert engine.next_due() != datetime.min.replace(tzinfo=UTC)  # nothing left to go on with


async def test_many_streams_going_quiet_at_once_are_marked_a_chunk_per_commit(
    engine: Engine, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Monitoring down: every stream goes quiet at the same moment. They are marked stale a
    chunk per commit, the writer going on at once by itself until all are."""
    monkeypatch.setattr(watch, "SWEEP_CHUNK", 50)
    await engine.submit([crit(f"host-{n}", clock) for n in range(HOSTS)])
    clock.advance(timedelta(minutes=6))
    await engine.run_timers()
    assert 0 < sum(i.stale for i in engine.incidents()) < HOSTS
    for _ in range(1000):
        if all(i.stale for i in engine.incidents()):
            break
        await asyncio.sleep(0.01)
    assert all(i.stale for i in engine.incidents())


async def test_holds_that_ended_while_down_all_fire_at_start_a_chunk_per_commit(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 recovering incidents whose holds end while alertd is down: all are resolved when
    the start returns, though a commit fires at most 50 timers."""
    monkeypatch.setattr(engine_module, "TIMER_CHUNK", 50)
    store = await SqliteStore.open(tmp_path / "alertd.db")
    first = Engine(store, LifecyclePolicy(), clock)
    await first.start()
    await first.submit([crit(f"host-{n}", clock) for n in range(HOSTS)])
    await first.submit([crit(f"host-{n}", clock)._replace(state=CheckState.OK)
                        for n in range(HOSTS)])  # fmt: skip
    await first.stop()
    clock.advance(timedelta(hours=1))
    second = Engine(store, LifecyclePolicy(), clock)
    await second.start()
    try:
        statuses = {i.status for i in second.incidents()}
        assert statuses == {Status.RESOLVED}, statuses
    finally:
        await second.stop()
        await store.close()
