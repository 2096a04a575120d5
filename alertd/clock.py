"""Where time comes from. The lifecycle never reads a clock; the engine asks one of these."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, aware, in UTC."""
        ...


def wall_time() -> datetime:
    return datetime.now(UTC)


# The wall clock and the monotonic clock may drift apart this much between two readings before
# the difference counts as a step (NTP slews far less than a second per reading).
STEP_TOLERANCE = timedelta(seconds=1)
# How long a step must last before alertd believes it: a wall clock set wrong and put right
# within this never reaches the incidents' timers.
STEP_SETTLE = timedelta(minutes=5)


class SystemClock:
    """The wall clock, advanced by the monotonic clock, never going back.

    Timers and windows (recovery holds, reopen windows, graces, escalations) are due times, so a
    wall clock stepped forward would fire them at once: a resolved incident would leave memory
    and its next problem open a second ticket. So the time runs on the monotonic clock from the
    last wall reading both agreed on, and follows the wall clock again as soon as they agree
    (within `STEP_TOLERANCE`: drift and NTP's slewing), or once a step has lasted `settle` (the
    wall clock was put right: alertd follows, and timers due meanwhile fire).

    Results stamped on receipt are compared by time (a result older than the newest for its key
    is late, alertd.lifecycle), so the time never goes back: after a wall clock set back for
    good it stands still until the wall clock has caught up.
    """

    def __init__(
        self,
        *,
        wall: Callable[[], datetime] = wall_time,
        monotonic: Callable[[], float] = time.monotonic,
        settle: timedelta = STEP_SETTLE,
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._settle = settle.total_seconds()
        self._anchor = wall()  # a wall time both clocks agreed on, and the monotonic time then
        self._anchor_mono = monotonic()
        self._last = self._anchor
        self._step_since: float | None = None  # monotonic time the wall clock left ours

    @property
    def stepped(self) -> bool:
        """Whether the wall clock disagrees with alertd's time now (a step not yet believed)."""
        return self._step_since is not None

    def now(self) -> datetime:
        wall, mono = self._wall(), self._monotonic()
        ours = self._anchor + timedelta(seconds=mono - self._anchor_mono)
        if abs(wall - ours) <= STEP_TOLERANCE:
            self._step_since = None
            self._anchor, self._anchor_mono, ours = wall, mono, wall
        elif self._step_since is None:
            self._step_since = mono
        elif mono - self._step_since >= self._settle:
            self._step_since = None
            self._anchor, self._anchor_mono, ours = wall, mono, wall
        if ours < self._last:
            return self._last
        self._last = ours
        return ours


class ManualClock:
    """A clock that moves only when told to: tests drive timers with it instead of sleeping."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now
