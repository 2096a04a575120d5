"""Heartbeats: things that must check in regularly (a cron job, Nagios itself). Pure.

`POST /api/v1/heartbeats/{name}` is a beat. A heartbeat is missed when no beat came for one
and a half intervals; a miss is a synthetic CRITICAL result for the key
(`alertd-heartbeat`, name), repeated every interval while the beats stay away (so the incident
stays fresh and its summary counts the misses), and the next beat is an OK result for that key:
the incident then recovers and resolves like any other. Beats and misses are a stream with the
heartbeat's interval. Retiring a heartbeat is an OK reported as a change (nothing will beat
again), so an incident its misses opened resolves after the hold.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from alertd.durations import format_duration
from alertd.model import CheckResult, CheckState, Reporting, StateType

HOST = "alertd-heartbeat"
SOURCE = "heartbeat"
# A beat may be this late (x interval) before it counts as missed: cron jitter, slow jobs.
SLACK = 1.5


class Heartbeat(NamedTuple):
    name: str
    interval: timedelta
    last_beat: datetime
    due: datetime  # when the next beat is missed (or, once missed, the next reminder)
    missed: bool = False


class Beat(NamedTuple):
    """Engine input: `name` beat at `at`; `interval` None keeps the known one."""

    name: str
    interval: timedelta | None
    at: datetime


class HeartbeatRemove(NamedTuple):
    """Engine input: forget heartbeat `name` (no more misses)."""

    name: str


def beat(previous: Heartbeat | None, item: Beat) -> tuple[Heartbeat, CheckResult | None]:
    """The heartbeat after a beat, and the OK result that ends a miss (None if none was on).

    A first beat brings an OK too: an incident left open under this name (by a heartbeat of
    the same name retired before) recovers; for a key without one, an OK changes nothing."""
    interval = item.interval or (previous.interval if previous else None)
    if interval is None:
        raise ValueError(f"heartbeat {item.name}: the first beat must give an interval")
    after = Heartbeat(item.name, interval, item.at, item.at + interval * SLACK)
    if previous is not None and not previous.missed:
        return after, None
    output = f"heartbeat from {item.name} received (expected every {format_duration(interval)})"
    return after, _result(item.name, CheckState.OK, output, item.at, interval)


def miss(heartbeat: Heartbeat, now: datetime) -> tuple[Heartbeat, CheckResult]:
    """The heartbeat after its due time passed without a beat, and the CRITICAL it means."""
    output = (
        f"no heartbeat from {heartbeat.name} since {heartbeat.last_beat:%Y-%m-%d %H:%M:%S} UTC "
        f"(expected every {format_duration(heartbeat.interval)})"
    )
    after = heartbeat._replace(missed=True, due=now + heartbeat.interval)
    return after, _result(heartbeat.name, CheckState.CRITICAL, output, now, heartbeat.interval)


def retired(name: str, now: datetime) -> CheckResult:
    """The OK that ends whatever a retired heartbeat's misses opened: a change report, since
    no beat will follow it (docs/architecture.md, "Streams and change reports")."""
    output = f"heartbeat {name} retired: no longer watched"
    return _result(name, CheckState.OK, output, now, None)


def _result(
    name: str, state: CheckState, output: str, at: datetime, interval: timedelta | None
) -> CheckResult:
    return CheckResult(
        host=HOST,
        service=name,
        state=state,
        timestamp=at,
        output=output,
        state_type=StateType.HARD,
        labels={"heartbeat": name},
        source=SOURCE,
        reporting=Reporting.CHANGE if interval is None else Reporting.STREAM,
        interval=interval,
    )
