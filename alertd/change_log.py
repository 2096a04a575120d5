"""The operator's log of incident changes: one line per audit event of each committed batch.

Runs as part of the engine's batch hook, after the commit, so a line is only written for what
is on disk. Each line carries the incident id, its key and the input source that caused it
(`engine` when alertd itself did: a timer fired, or a host's incident absorbed its services).
Repeats (`deduplicated`) are counted by metrics, not logged: there can be thousands a second.
The lines' level is `[log] changes` ("info" by default; "debug" keeps them out of an info log).
"""

from __future__ import annotations

from collections.abc import Sequence

from alertd import logs
from alertd.engine import Input
from alertd.model import CheckResult, EventKind, IncidentKey, Notice, key_text
from alertd.store import WriteBatch

# Constant event names, one per audit event kind: incident_opened, incident_resolved, ...
EVENT_NAMES = {kind: f"incident_{kind.value}" for kind in EventKind}
ENGINE_SOURCE = "engine"


def log_changes(write: WriteBatch, inputs: Sequence[Sequence[Input]]) -> None:
    """Log every non-repeat event that `write` committed."""
    events = [(i, e) for i, e in write.events if e.kind is not EventKind.DEDUPLICATED]
    if not events:
        return  # the common case: repeats only; skip the walk over the inputs
    incidents = {incident.id: incident for incident, _ in write.upserts}
    sources = _sources({incident.key for incident in incidents.values()}, inputs)
    lines = []
    for incident_id, event in events:
        incident = incidents.get(incident_id)
        if incident is None:  # every event belongs to an upserted incident; be safe anyway
            continue
        lines.append((EVENT_NAMES[event.kind], {
            "incident_id": incident_id,
            "key": key_text(incident.key),
            "source": sources.get(incident.key, ENGINE_SOURCE),
            "status": incident.status.value,
            "priority": incident.priority.value,
            "detail": dict(event.detail),
        }))  # fmt: skip
    logs.log_many(logs.changes_level(), lines)

def _sources(keys: set[IncidentKey], inputs: Sequence[Sequence[Input]]) -> dict[IncidentKey, str]:
    """The source of the last input of this batch for each key."""
    found: dict[IncidentKey, str] = {}
    for submission in inputs:
        for item in submission:
            if not isinstance(item, CheckResult | Notice):
                continue  # the outbox's own records: no incident source
            key = item.key
            if key in keys:
                found[key] = item.source
    return found
