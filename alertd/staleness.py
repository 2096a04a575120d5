"""Staleness as pure functions: a check's rhythm, and when its silence makes the incident stale.

Only a stream has a rhythm (`Reporting`): each stream result gives the check's interval, as the
source states it or as the smoothed gap between stream results (`observed_interval`, on the
ingest path). A change report's silence is its normal, so an incident fed only by change reports
is never stale. The engine's stale sweep (alertd.watch) asks `stale_deadline` and marks an open
incident past it with `mark_stale`. A recovering incident is never marked: its last word was OK,
and its hold resolves it (a problem that returns reopens it). A fresh result on a stale incident
is the lifecycle's to announce (alertd.lifecycle `apply`). No I/O and no clock: time arrives as
`now`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from alertd.model import CheckResult, Event, EventKind, Incident, Status, Transition
from alertd.policy import STALE_FACTOR, STALE_MINIMUM, LifecyclePolicy

_OPEN = Status.OPEN

Detail = dict[str, Any]


def stale_deadline(
    incident: Incident, policy: LifecyclePolicy, since: datetime | None = None
) -> datetime | None:
    """When an open incident whose check stays silent becomes stale; None if it cannot (not
    open, already stale, never fed by a stream, or "auto" with no interval known yet).

    The silence counts from the newest result, or from `since` if later: the daemon's start,
    since alertd's own downtime is not the check's silence.
    """
    if incident.stale or incident.status is not _OPEN or incident.stream_seen is None:
        return None
    return silence_deadline(incident.last_seen, incident.interval, policy, since)


def silence_deadline(
    last_seen: datetime, interval: float | None, policy: LifecyclePolicy, since: datetime | None
) -> datetime | None:
    """`stale_deadline` of an open incident fed by a stream and not stale, from the two fields
    it depends on (a start computes it for incidents it has not decoded, alertd.codec)."""
    after = policy.stale_after
    if after is None:
        if interval is None:
            return None
        after = max(STALE_MINIMUM, timedelta(seconds=interval * STALE_FACTOR))
    start = last_seen if since is None else max(last_seen, since)
    try:
        return start + after
    except OverflowError:  # past year 9999: never, as far as a datetime can say
        return None


def mark_stale(incident: Incident, now: datetime) -> Transition:
    """The check stopped reporting: flag the incident (it is not resolved by silence)."""
    detail: Detail = {
        "last_seen": incident.last_seen.isoformat(),
        "interval_seconds": None if incident.interval is None else round(incident.interval),
        "status": incident.status.value,
    }
    return Transition(incident._replace(stale=True), (Event(EventKind.STALE, now, detail),))


# Results closer than this are one batch of a spool or a retry, not the check's rhythm.
_MIN_GAP = 1.0
# Weight of the newest gap in the smoothed interval.
_GAP_WEIGHT = 0.3


def observed_interval(incident: Incident, result: CheckResult) -> float | None:
    """The check's interval with stream result `result` counted: the one it states, else the
    smoothed gap between the stream's results."""
    if result.interval is not None:
        return result.interval.total_seconds()
    previous = incident.interval
    if incident.stream_seen is None:
        return previous
    gap = (result.timestamp - incident.stream_seen).total_seconds()
    if gap < _MIN_GAP:
        return previous
    return gap if previous is None else previous + _GAP_WEIGHT * (gap - previous)
