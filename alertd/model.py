"""Value types of the incident domain: check results, states, incidents and their events.

Everything here is immutable data. Behaviour lives in `alertd.lifecycle` (pure) and the I/O
around it (`alertd.engine`, `alertd.store`, `alertd.app`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple


class CheckState(StrEnum):
    """A check's state, in the vocabulary of the object it describes (service or host)."""

    OK = "OK"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"
    UNKNOWN = "UNKNOWN"
    UP = "UP"
    DOWN = "DOWN"
    UNREACHABLE = "UNREACHABLE"

    @property
    def is_ok(self) -> bool:
        return self in (CheckState.OK, CheckState.UP)

    @property
    def is_host_problem(self) -> bool:
        return self in (CheckState.DOWN, CheckState.UNREACHABLE)


SERVICE_STATES: tuple[CheckState, ...] = (
    CheckState.OK,
    CheckState.WARNING,
    CheckState.CRITICAL,
    CheckState.UNKNOWN,
)
HOST_STATES: tuple[CheckState, ...] = (CheckState.UP, CheckState.DOWN, CheckState.UNREACHABLE)


class Reporting(StrEnum):
    """What kind of source sent a check result (docs/architecture.md, "Streams and change
    reports").

    A *stream* reports the check every time it runs (Nagios's OCSP/OCHP, NRDP passive results,
    heartbeats, native results that give an `interval`): silence means something, and its
    sequence of states is what Nagios measures for flapping. A *change report* says only that
    the state changed (notifications, Alertmanager, native results by default): silence is its
    normal, and every entry is a transition.
    """

    STREAM = "stream"
    CHANGE = "change"


class StateType(StrEnum):
    SOFT = "SOFT"
    HARD = "HARD"


class Status(StrEnum):
    """Where an incident stands in its lifecycle (docs/architecture.md, "The incident
    lifecycle")."""

    PENDING = "pending"
    OPEN = "open"
    RECOVERING = "recovering"
    RESOLVED = "resolved"


class Level(StrEnum):
    """Impact and urgency share one three-step scale."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Priority(StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Freshdesk's numbering: 4 Urgent .. 1 Low; higher is more important."""
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.URGENT: 4, Priority.HIGH: 3, Priority.MEDIUM: 2, Priority.LOW: 1}


class EventKind(StrEnum):
    """Reason codes of the incident event log (the audit trail)."""

    OPENED = "opened"
    DEDUPLICATED = "deduplicated"
    STATE_CHANGED = "state_changed"
    RECURRED = "recurred"
    REOPENED = "reopened"
    RECOVERING = "recovering"
    RESOLVED = "resolved"
    PRIORITY_CHANGED = "priority_changed"
    FLAPPING_STARTED = "flapping_started"
    FLAPPING_STOPPED = "flapping_stopped"
    SUPPRESSED = "suppressed"
    UNSUPPRESSED = "unsuppressed"
    ACKNOWLEDGED = "acknowledged"
    UNACKNOWLEDGED = "unacknowledged"
    NOTE = "note"
    ESCALATED = "escalated"
    STALE = "stale"  # the check stopped reporting: no data is not OK
    FRESH = "fresh"  # data came back after `stale`
    # An agent resolved or closed the incident's ticket by hand (alertd.agent_actions).
    TICKET_CLOSED = "ticket_closed"
    LATE = "late"  # a result older than the newest applied for the key: recorded, not applied


class NoticeKind(StrEnum):
    """What a notice (an input that is not a check result) says about a key."""

    ACKNOWLEDGED = "acknowledged"
    UNACKNOWLEDGED = "unacknowledged"
    FLAPPING_STARTED = "flapping_started"
    FLAPPING_STOPPED = "flapping_stopped"
    FLAPPING_DISABLED = "flapping_disabled"
    DOWNTIME_STARTED = "downtime_started"
    DOWNTIME_ENDED = "downtime_ended"
    DOWNTIME_CANCELLED = "downtime_cancelled"
    CUSTOM = "custom"
    ESCALATE = "escalate"  # a person asks for the next level now (relationship/customer)
    # An agent resolved or closed the ticket (`ticket_id`) while alertd still tracked it.
    TICKET_CLOSED = "ticket_closed"


NO_LABELS: Mapping[str, str] = MappingProxyType({})

# A dedup key: (host, service); service is None for a host check.
IncidentKey = tuple[str, str | None]


def key_text(key: IncidentKey) -> str:
    """The key as users read it: `host` or `host/service`."""
    host, service = key
    return host if service is None else f"{host}/{service}"


class CheckResult(NamedTuple):
    """One check result from any source, already validated and normalised.

    A NamedTuple rather than a frozen dataclass, like `Incident`: both are built once or more
    per ingested result, and a tuple is built and copied 3-5x faster (bench/README.md).
    """

    host: str
    service: str | None
    state: CheckState
    timestamp: datetime
    output: str = ""
    long_output: str = ""
    perfdata: str = ""
    state_type: StateType | None = None
    attempt: int | None = None
    max_attempts: int | None = None
    labels: Mapping[str, str] = NO_LABELS
    source: str = "api"
    # A stream or a change report (see `Reporting`); the check's interval when the source
    # states it (a stream only).
    reporting: Reporting = Reporting.CHANGE
    interval: timedelta | None = None

    @property
    def key(self) -> IncidentKey:
        return (self.host, self.service)

    @property
    def is_stream(self) -> bool:
        return self.reporting is Reporting.STREAM


class Notice(NamedTuple):
    """Something a monitoring system says about a key that is not a check result: an
    acknowledgement, a downtime, flapping as it detected it, or a custom comment."""

    kind: NoticeKind
    host: str
    service: str | None
    at: datetime
    author: str = ""
    comment: str = ""
    sticky: bool = False
    source: str = "api"
    # The helpdesk ticket the notice is about (helpdesk notices only).
    ticket_id: int | None = None
    # Set when a person acts on one incident by id (API ack, escalate): the writer applies the
    # notice only if that incident still holds the key, never to a successor that took it.
    incident_id: int | None = None
    # An agents' close that was a merge: the ticket it was merged into (helpdesk notices only).
    merged_into: int | None = None

    @property
    def key(self) -> IncidentKey:
        return (self.host, self.service)


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of an incident's audit trail."""

    kind: EventKind
    at: datetime
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StateChange:
    """One entry of the bounded history of state changes kept on an incident."""

    at: datetime
    state: CheckState
    state_type: StateType


@dataclass(frozen=True, slots=True)
class PriorityReason:
    """Why an incident has its priority: the impact rule that matched and the urgency's source."""

    impact: Level
    urgency: Level
    rule: str | None  # name of the impact rule that matched; None = default impact
    state: CheckState  # the state the urgency was derived from


class Incident(NamedTuple):
    """One problem on one key, from first non-OK result to resolution (and reopenings).

    Immutable; the lifecycle derives the next version with `_replace` (a NamedTuple for speed,
    see `CheckResult`).
    """

    id: int
    host: str
    service: str | None
    status: Status
    check_state: CheckState
    state_type: StateType
    priority: Priority
    reason: PriorityReason
    first_seen: datetime
    last_seen: datetime
    occurrences: int = 1
    # Consecutive non-OK results and the Nagios-style attempt counter, for soft/hard emulation.
    attempt: int = 1
    last_hard_state: CheckState | None = None
    last_output: str = ""
    long_output: str = ""
    perfdata: str = ""
    labels: Mapping[str, str] = NO_LABELS
    opened_at: datetime | None = None
    resolved_at: datetime | None = None
    recovering_since: datetime | None = None
    # Timers are data: when the recovery hold ends, and until when a resolved incident may reopen.
    recovery_due: datetime | None = None
    reopen_until: datetime | None = None
    reopen_count: int = 0
    flapping: bool = False
    percent_state_change: float = 0.0
    # Recorded states for flap detection, oldest first, at most 21 (Nagios's MAX_STATE_HISTORY).
    flap_history: tuple[CheckState, ...] = ()
    suppressed: bool = False
    suppressed_reason: str | None = None
    history: tuple[StateChange, ...] = ()
    acknowledged: bool = False
    ack_author: str | None = None
    ack_comment: str | None = None
    # Nagios's rules for its own acks: a normal one ends on any state change, a sticky one
    # only at OK. Acks from elsewhere (API, helpdesk) end at recovery.
    ack_sticky: bool = False
    ack_source: str | None = None
    # Helpdesk bookkeeping (alertd.tickets): whether a ticket create was queued, and the
    # recurrence summary note: occurrences already reported, when the next note is due.
    ticket_requested: bool = False
    summary_from: int = 0
    summary_due: datetime | None = None
    summary_last_at: datetime | None = None
    # A service released by its host's recovery gets its ticket only if still failing then.
    ticket_due: datetime | None = None
    # Escalation (alertd.escalation): levels fired, and the clock that paces them, which runs
    # only while the problem is open, unsuppressed and unacknowledged; situation updates.
    escalation_level: int = 0
    escalation_since: datetime | None = None
    escalation_spent: timedelta = timedelta(0)
    escalation_due: datetime | None = None
    update_due: datetime | None = None
    update_from: int = 0
    # Staleness: the check's interval (seconds: as its stream states it, else the observed gap
    # between stream results, smoothed), the time of the newest stream result (None: only
    # change reports so far), and whether the check has stopped reporting
    # (alertd.staleness.stale_deadline).
    interval: float | None = None
    stale: bool = False
    # The ticket an agent resolved or closed by hand while alertd still tracked the problem:
    # alertd stops writing to it, and a recurrence follows `helpdesk.on_agent_close`.
    agent_closed: int | None = None
    # The ticket it was merged into, when the agents' close was a merge: a merged ticket is
    # never reopened, whatever `on_agent_close` says (the agents chose where the work goes on).
    agent_closed_merged: int | None = None
    # What the recovery does to the ticket, from the routing rule matched at its create
    # (alertd.routing: resolve, close, note); None = `helpdesk.resolve_status`.
    ticket_recovery: str | None = None
    stream_seen: datetime | None = None
    # alertd resolved the ticket (`resolved`); it is brought back if the problem returns.
    ticket_resolved: bool = False
    # The input that created the incident ("nagios", "nrdp", "alertmanager", "api",
    # "heartbeat": `CheckResult.source`); None for incidents stored before it was recorded.
    # What may be acknowledged back in Nagios (alertd.nagios_ack) depends on it.
    source: str | None = None

    @property
    def key(self) -> IncidentKey:
        return (self.host, self.service)

    @property
    def ticket_live(self) -> bool:
        """Whether the incident has a ticket that follows it: one was created, and it is not
        held resolved while the problem is back (a reopening waits like a creation: for the
        service grace, or for the host whose outage absorbs it)."""
        return self.ticket_requested and (
            not self.ticket_resolved or self.status is Status.RESOLVED
        )

    @property
    def fed_by_stream(self) -> bool:
        """Whether the newest result applied came from a stream (see `Reporting`)."""
        return self.stream_seen is not None and self.stream_seen >= self.last_seen

    @property
    def impact(self) -> Level:
        return self.reason.impact

    @property
    def urgency(self) -> Level:
        return self.reason.urgency


_FIELD_AT = {name: at for at, name in enumerate(Incident._fields)}
_new_tuple = tuple.__new__


def _replace_incident(self: Incident, /, **changes: Any) -> Incident:
    """`Incident._replace`, ~2.5x faster: the lifecycle makes every change this way, a few
    times per result (the stock one rebuilds the tuple through `map` over all 53 fields,
    ~2.4 us; this copies it and sets the changed ones, ~1 us)."""
    values = list(self)
    try:
        for name, value in changes.items():
            values[_FIELD_AT[name]] = value
    except KeyError:
        unknown = sorted(set(changes) - set(_FIELD_AT))
        raise ValueError(f"Got unexpected field names: {unknown!r}") from None
    return _new_tuple(Incident, values)


# Set after the class: NamedTuple refuses an `_replace` of its own in the class body.
setattr(Incident, "_replace", _replace_incident)  # noqa: B010


class Transition(NamedTuple):
    """What applying one input to one incident produced: the incident after, and its events.

    `incident` is None when no incident exists after the input (an OK for an unknown key, or a
    pending problem that recovered before it was confirmed: `discarded` is then True).

    A NamedTuple rather than a frozen dataclass, like `CheckResult`: one is built per applied
    result, and a tuple is built in half the time (0.7 vs 1.5 us; bench/README.md).
    """

    incident: Incident | None
    events: tuple[Event, ...] = ()
    discarded: bool = False
    # A plain repeat (lifecycle `_repeat`): only counters, output and the check's rhythm moved,
    # so the store may write the narrow repeat row instead of the whole incident.
    repeat: bool = False
