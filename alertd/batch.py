"""One group commit's in-memory side: the staged incidents and the rows the writer will commit.

The engine builds one per commit; its collaborators (the watch) stage into the same one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from alertd.model import Event, Incident, IncidentKey
from alertd.store import WriteBatch


@dataclass(slots=True)
class Batch:
    """The in-memory side of one group commit: incidents as they will be after it."""

    now: datetime
    staged: dict[IncidentKey, Incident | None] = field(default_factory=dict)
    expired: list[IncidentKey] = field(default_factory=list)
    write: WriteBatch = field(default_factory=WriteBatch)
    dedup_counts: dict[int, tuple[int, datetime]] = field(default_factory=dict)
    # Late results per (incident id, source): how many, and the first one's event.
    late_counts: dict[tuple[int, str], tuple[int, Event]] = field(default_factory=dict)
    timers_taken: list[tuple[datetime, int, IncidentKey]] = field(default_factory=list)
    # Keys staged by plain repeats only (narrow rows), and keys staged by anything else.
    plain: set[IncidentKey] = field(default_factory=set)
    full: set[IncidentKey] = field(default_factory=set)
