"""The system clock as alertd reads it: never back, and deaf to a wall-clock step that does not
last."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alertd import clock

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Clocks:
    """A wall clock and a monotonic clock the test moves (the wall one can be stepped)."""

    def __init__(self) -> None:
        self.wall_at = START
        self.mono_at = 1000.0

    def wall(self) -> datetime:
        return self.wall_at

    def mono(self) -> float:
        return self.mono_at

    def run(self, seconds: float) -> None:
        """Real time passes: both clocks move."""
        self.wall_at += timedelta(seconds=seconds)
        self.mono_at += seconds


def system(clocks: Clocks) -> clock.SystemClock:
    return clock.SystemClock(wall=clocks.wall, monotonic=clocks.mono)


def test_the_system_clock_never_goes_back() -> None:
    """Results stamped on receipt are compared by time (an older one is late, applied to
    nothing): a wall clock set back for good must not make the next ones look older. Time
    stands still until the wall clock has caught up."""
    clocks = Clocks()
    ours = system(clocks)
    first = ours.now()
    clocks.wall_at -= timedelta(hours=1)  # NTP steps the clock back, for good
    for _ in range(12):
        clocks.run(60)
        assert ours.now() >= first
    clocks.run(3600)
    assert ours.now() == clocks.wall_at  # caught up: the wall clock again


def test_a_step_that_is_undone_never_reaches_the_time() -> None:
    """Forward two hours and back a minute later: alertd's time went on by that minute only,
    so no timer (a reopen window, a hold, an escalation) fired early."""
    clocks = Clocks()
    ours = system(clocks)
    ours.now()
    clocks.wall_at += timedelta(hours=2)
    clocks.run(30)
    assert ours.now() == START + timedelta(seconds=30)
    assert ours.stepped
    clocks.run(30)
    clocks.wall_at -= timedelta(hours=2)
    assert ours.now() == START + timedelta(seconds=60)
    assert not ours.stepped


def test_a_step_that_lasts_is_followed() -> None:
    """A wall clock put right (it was wrong) is believed once the step has lasted
    `STEP_SETTLE`: then the time is the wall clock's again."""
    clocks = Clocks()
    ours = system(clocks)
    ours.now()
    clocks.wall_at += timedelta(hours=2)
    clocks.run(1)
    assert ours.now() == START + timedelta(seconds=1)
    clocks.run(clock.STEP_SETTLE.total_seconds())
    assert ours.now() == clocks.wall_at


def test_drift_within_the_tolerance_follows_the_wall_clock() -> None:
    """NTP's slewing and the clocks' drift are no step: the time is the wall clock's."""
    clocks = Clocks()
    ours = system(clocks)
    clocks.run(10)
    clocks.wall_at += timedelta(milliseconds=300)
    assert ours.now() == clocks.wall_at
