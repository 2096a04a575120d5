"""Where time comes from. The lifecycle never reads a clock; the engine asks one of these."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, aware, in UTC."""
        ...


class SystemClock:
    """The wall clock, never going back: results stamped on receipt are compared by time (a
    result older than the newest for its key is late, alertd.lifecycle), so a wall clock set
    back (NTP stepping it) must not make the next results look older than the last ones. Time
    stands still until the wall clock has caught up."""

    def __init__(self) -> None:
        self._last = datetime.now(UTC)

    def now(self) -> datetime:
        now = datetime.now(UTC)
        if now < self._last:
            return self._last
        self._last = now
        return now


class ManualClock:
    """A clock that moves only when told to: tests drive timers with it instead of sleeping."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now
