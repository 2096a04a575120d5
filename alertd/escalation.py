"""Time-driven escalation and situation updates, as pure functions of the incident and time.

The escalation clock runs while an incident's ticket exists and its problem is open, and stops
on recovery, while suppressed and (by default) while acknowledged; it resumes where it stopped,
so a reopened incident continues from its level. Level N fires when the clock has run for the
level's `after`. Situation updates are due every `cadence` (by priority) while the incident is
open. Both are due times on the incident, served by the engine's one timer heap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from alertd.model import Incident, Priority, Status


@dataclass(frozen=True, slots=True)
class EscalationLevel:
    """One tier: when it fires (time the clock has run) and what it does to the ticket."""

    name: str
    after: timedelta
    group_id: int | None = None
    responder_id: int | None = None
    # "raise" = one step up, a Priority = at least that, None = leave the priority alone.
    priority: str | None = None
    note: str = ""
    notify_emails: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


def _tiers(*spec: tuple[str, timedelta]) -> tuple[EscalationLevel, ...]:
    return tuple(
        EscalationLevel(name=name, after=after, tags=(f"escalated-{name.replace(' ', '-')}",))
        for name, after in spec
    )


H, M = timedelta(hours=1), timedelta(minutes=1)
# The tier model of our users' runbooks: tier 1 owns the ticket at first; then tier 2, tier 3,
# onsite, and finally a manager's decision. Lower priorities escalate slower; Low never.
DEFAULT_LEVELS: Mapping[Priority, tuple[EscalationLevel, ...]] = {
    Priority.URGENT: _tiers(
        ("tier 2", 30 * M), ("tier 3", 2 * H), ("onsite", 4 * H), ("manager", 8 * H)
    ),
    Priority.HIGH: _tiers(
        ("tier 2", 1 * H), ("tier 3", 4 * H), ("onsite", 8 * H), ("manager", 24 * H)
    ),
    Priority.MEDIUM: _tiers(("tier 2", 4 * H), ("tier 3", 24 * H)),
    Priority.LOW: (),
}
DEFAULT_CADENCE: Mapping[Priority, timedelta | None] = {
    Priority.URGENT: 30 * M,
    Priority.HIGH: 1 * H,
    Priority.MEDIUM: 4 * H,
    Priority.LOW: None,
}


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    levels: Mapping[Priority, tuple[EscalationLevel, ...]] = field(
        default_factory=lambda: DEFAULT_LEVELS
    )
    stop_on_ack: bool = True
    # Situation updates: how often, by priority (None = never), and whether the requester sees
    # them (public notes) or only agents do.
    cadence: Mapping[Priority, timedelta | None] = field(default_factory=lambda: DEFAULT_CADENCE)
    public_updates: bool = False


def clock_runs(incident: Incident, policy: EscalationPolicy) -> bool:
    return (
        incident.ticket_live
        and incident.status is Status.OPEN
        and not incident.suppressed
        and not (incident.acknowledged and policy.stop_on_ack)
        # An agent resolved the ticket by hand: escalating a closed ticket helps nobody.
        and incident.agent_closed is None
    )


def sync(incident: Incident, policy: EscalationPolicy, now: datetime) -> Incident:
    """Start or stop the escalation clock as the incident's state says, and set due times."""
    running = clock_runs(incident, policy)
    since, spent = incident.escalation_since, incident.escalation_spent
    if running and since is None:
        since = now
    elif not running and since is not None:
        spent, since = spent + (now - since), None
    levels = policy.levels.get(incident.priority, ())
    due = None
    if since is not None and incident.escalation_level < len(levels):
        due = since + max(levels[incident.escalation_level].after - spent, timedelta(0))
    update_due = incident.update_due
    cadence = policy.cadence.get(incident.priority)
    # No updates while suppressed either: maintenance or a host outage calls nobody.
    if (
        incident.status is not Status.OPEN
        or not incident.ticket_live
        or cadence is None
        or incident.suppressed
        or incident.agent_closed is not None
    ):
        update_due = None
    elif update_due is None:
        update_due = now + cadence
    if (since, spent, due, update_due) == (
        incident.escalation_since, incident.escalation_spent, incident.escalation_due,
        incident.update_due,
    ):  # fmt: skip
        return incident
    return incident._replace(
        escalation_since=since, escalation_spent=spent, escalation_due=due, update_due=update_due
    )


def next_level(incident: Incident, policy: EscalationPolicy) -> EscalationLevel | None:
    levels = policy.levels.get(incident.priority, ())
    return levels[incident.escalation_level] if incident.escalation_level < len(levels) else None


def raised(current: Priority, rule: str | None) -> Priority:
    """The priority after a level's `priority` action (never lower than `current`)."""
    order = [Priority.LOW, Priority.MEDIUM, Priority.HIGH, Priority.URGENT]
    if rule is None:
        return current
    if rule == "raise":
        return order[min(order.index(current) + 1, len(order) - 1)]
    target = Priority(rule)
    return target if order.index(target) > order.index(current) else current
