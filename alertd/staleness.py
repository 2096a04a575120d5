"""Staleness as pure functions: a check's observed rhythm, and when its silence makes the
incident stale.

Each result updates the smoothed gap between the check's results (`observed_interval`, on the
ingest path); the engine's stale sweep (alertd.watch) asks `stale_deadline` and marks an
incident past it with `mark_stale`. A fresh result on a stale incident is the lifecycle's to
announce (alertd.lifecycle `apply`). No I/O and no clock: time arrives as `now`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from alertd.model import CheckResult, Event, EventKind, Incident, Status, Transition
from alertd.policy import STALE_FACTOR, STALE_MINIMUM, LifecyclePolicy

_OPEN, _RECOVERING = Status.OPEN, Status.RECOVERING

Detail = dict[str, Any]


def stale_deadline(incident: Incident, policy: LifecyclePolicy) -> datetime | None:
    """When an open or recovering incident whose check stays silent becomes stale; None if
    it cannot (other status, already stale, or "auto" with no interval observed yet)."""
    status = incident.status
    if incident.stale or (status is not _OPEN and status is not _RECOVERING):
        return None
    after = policy.stale_after
    if after is None:
        if incident.interval is None:
            return None
        after = max(STALE_MINIMUM, timedelta(seconds=incident.interval * STALE_FACTOR))
    try:
        return incident.last_seen + after
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
    """The smoothed gap between the check's results, with `result` counted."""
    gap = (result.timestamp - incident.last_seen).total_seconds()
    previous = incident.interval
    if gap < _MIN_GAP:
        return previous
    return gap if previous is None else previous + _GAP_WEIGHT * (gap - previous)
