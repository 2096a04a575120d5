"""The system clock as alertd reads it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

import pytest

from alertd import clock


def test_the_system_clock_never_goes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Results stamped on receipt are compared by time (an older one is late, applied to
    nothing): a wall clock set back must not make the next ones look older. Time stands still
    until the wall clock has caught up."""
    wall = [datetime(2026, 1, 5, 9, 0, tzinfo=UTC)]

    class Wall(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Wall:
            return wall[0]  # type: ignore[return-value]

    monkeypatch.setattr(clock, "datetime", Wall)
    system = clock.SystemClock()
    first = system.now()
    wall[0] = first - timedelta(seconds=2)  # NTP steps the clock back
    assert system.now() == first
    wall[0] = first + timedelta(seconds=1)
    assert system.now() == first + timedelta(seconds=1)
