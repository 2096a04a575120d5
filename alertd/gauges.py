"""What the incident gauges count per unresolved incident (alertd.metrics reads the counts the
engine keeps as its cache changes, so a scrape never walks every incident). Pure."""

from __future__ import annotations

from alertd.model import Incident, Priority, Status

# Status, priority, and whether it is flapping, suppressed, acknowledged, stale.
GaugeKey = tuple[Status, Priority, bool, bool, bool, bool]


def gauge_key(incident: Incident) -> GaugeKey | None:
    """What `incident` adds to the incident gauges (None: nothing, it is resolved)."""
    if incident.status is Status.RESOLVED:
        return None
    return (incident.status, incident.priority, incident.flapping, incident.suppressed,
            incident.acknowledged, incident.stale)  # fmt: skip
