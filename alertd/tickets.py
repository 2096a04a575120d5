"""What the helpdesk agent sees: incident changes -> ticket operations, rendered. Pure.

The engine calls `TicketPlanner.plan` for every incident a commit changes, with the events of
that commit; the operations it returns are written to the outbox in the same transaction. The
dispatcher (`alertd.outbox`) later sends them. Rendering happens here, at plan time, so the
outbox holds exactly what will be sent and an audit can read it.

Rules (issue "Helpdesk tickets", section 2): a ticket is created when an incident opens (not
while suppressed: a host-down or maintenance incident surfaces when released; a service's after
`service_grace`, so that its host's problem arriving just after absorbs it; never for a check
that is OK); every change of state, priority, flapping, suppression or acknowledgement is one
private note; repeats are summed up in at most one note per `note_interval`; resolution
resolves the ticket and a reopening reopens the same one, by the same rules as a creation.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NotRequired, TypedDict, cast
from urllib.parse import quote

from alertd import escalation, heartbeats, routing
from alertd.config import HelpdeskConfig
from alertd.durations import human
from alertd.escalation import EscalationLevel, EscalationPolicy
from alertd.model import Event, EventKind, Incident, Status
from alertd.silences import MAINTENANCE

SUBJECT_MAX = 255
OUTPUT_IN_SUBJECT = 120
STATUS_OPEN = 2


class Op(StrEnum):
    CREATE = "create"  # payload: CreatePayload
    UPDATE = "update"  # payload: UpdatePayload
    NOTE = "note"  # payload: NotePayload


# The payloads are stored as JSON in the outbox and read back by the dispatcher: their keys are
# part of the on-disk format (queued operations must stay sendable across upgrades).
class CreatePayload(TypedDict):
    subject: str
    description: str  # HTML
    priority: int  # the helpdesk's priority number (1 Low .. 4 Urgent)
    tags: list[str]  # the configured tags, then the incident's tag (last)
    impact: str  # the incident's Level values (low/medium/high), for Freshservice
    urgency: str
    # The ticket an agent closed that this one replaces (a recurrence after an agent's close):
    # the dispatcher creates this ticket although the incident already has one.
    replaces: NotRequired[int]
    # Ticket fields of the routing rule that matched (alertd.routing): they override the
    # configured ones; `custom_fields` is merged over the configured custom fields.
    fields: NotRequired[dict[str, Any]]


class UpdatePayload(TypedDict):
    fields: dict[str, Any]  # ticket fields to PUT (priority, status, group_id, responder_id)
    note: str | None  # a private note (HTML) added after the PUT
    lowers: NotRequired[bool]  # the PUT lowers the priority (an agent's may be kept)
    add_tags: NotRequired[list[str]]  # merged into the ticket's current tags
    notify_emails: NotRequired[list[str]]  # the note notifies these


class NotePayload(TypedDict):
    body: str  # HTML
    private: NotRequired[bool]
    notify_emails: NotRequired[list[str]]


OpPayload = CreatePayload | UpdatePayload | NotePayload


@dataclass(frozen=True, slots=True)
class PlannedOp:
    op: Op
    payload: OpPayload
    priority: int  # the incident's priority rank when planned: the dispatcher serves high first
    not_before: datetime | None = None


@dataclass(slots=True)
class _Plan:
    incident: Incident
    ops: list[PlannedOp] = field(default_factory=list)
    # When the incident's ticket should be created or brought back, by this commit's events:
    # the latest time any of them asks for (each reason to wait must be met).
    bring_up_at: datetime | None = None


# What a timer of the planner returns: the incident after it, operations, audit events.
Fired = tuple[Incident, list[PlannedOp], tuple[Event, ...]]


class TicketPlanner:
    def __init__(
        self,
        config: HelpdeskConfig,
        recovery_hold: timedelta,
        escalation: EscalationPolicy | None = None,
    ) -> None:
        self.config = config
        self.recovery_hold = recovery_hold
        self.escalation = escalation or EscalationPolicy()

    def reconfigure(self, config: HelpdeskConfig, escalation: EscalationPolicy) -> None:
        """Templates, fields, intervals and the escalation policy of what is planned from now on
        (operations already queued keep what they were given)."""
        self.config, self.escalation = config, escalation

    def plan(
        self, incident: Incident, events: Sequence[Event], now: datetime
    ) -> tuple[Incident, list[PlannedOp]]:
        """The ticket operations `events` imply for `incident` (its state after them)."""
        plan = _Plan(incident)
        for event in events:
            self._on_event(plan, event, now)
        if plan.bring_up_at is not None:
            self._schedule(plan, plan.bring_up_at, now)
        return escalation.sync(plan.incident, self.escalation, now), _compact(plan.ops)

    def timers(self, incident: Incident) -> tuple[datetime | None, ...]:
        return (
            incident.ticket_due, incident.summary_due, incident.escalation_due,
            incident.update_due,
        )  # fmt: skip

    def fire(self, incident: Incident, now: datetime) -> Fired:
        """Every ticket timer of the incident that is due at `now` (an engine wake-up)."""
        ops: list[PlannedOp] = []
        events: list[Event] = []
        timers: tuple[tuple[str, Callable[[Incident, datetime], Fired]], ...] = (
            ("ticket_due", self.release),
            ("summary_due", self.summary),
            ("escalation_due", self._escalate_on_time),
            ("update_due", self.situation),
        )
        for name, timer in timers:
            due: datetime | None = getattr(incident, name)
            if due is not None and due <= now:
                incident, more_ops, more_events = timer(incident, now)
                ops += more_ops
                events += more_events
        return escalation.sync(incident, self.escalation, now), _compact(ops), tuple(events)

    def summary(self, incident: Incident, now: datetime) -> Fired:
        """The recurrence summary note that fell due (an engine timer)."""
        cleared = incident._replace(summary_due=None)
        new = incident.occurrences - incident.summary_from
        if (
            not incident.ticket_live
            or incident.status is not Status.OPEN
            or new <= 0
            or incident.agent_closed is not None
        ):
            return cleared, [], ()
        since = incident.summary_last_at or incident.opened_at or incident.first_seen
        body = _p(
            f"{new} more {_plural(new, 'occurrence')} since {_when(since)} "
            f"({incident.occurrences} in all). Latest: {incident.check_state.value}"
        ) + _output(incident.last_output)
        note = self._note(incident, body)
        summed = cleared._replace(summary_from=incident.occurrences, summary_last_at=now)
        return summed, [note], ()

    # -- events -> operations -------------------------------------------------------------------

    def release(self, incident: Incident, now: datetime) -> Fired:
        """A grace fell due (an engine timer: after a release, or a service's opening): the
        ticket is created, or brought back if alertd resolved it, if the problem still fails."""
        cleared = incident._replace(ticket_due=None)
        if incident.ticket_live or not _wants_ticket(incident):
            return cleared, [], ()
        plan = _Plan(cleared)
        self._bring_up(plan, now)
        return plan.incident, plan.ops, ()

    def situation(self, incident: Incident, now: datetime) -> Fired:
        """The situation update that fell due: where things stand, and when the next comes."""
        cadence = self.escalation.cadence.get(incident.priority)
        if (
            incident.status is not Status.OPEN
            or not incident.ticket_live
            or not cadence
            or incident.suppressed
            or incident.agent_closed is not None
        ):
            return incident._replace(update_due=None), [], ()
        opened = incident.opened_at or incident.first_seen
        new = incident.occurrences - incident.update_from
        level = incident.escalation_level
        levels = self.escalation.levels.get(incident.priority, ())
        # The level reached may be beyond this priority's levels (the priority fell since, or
        # a reload removed levels): name it by number then.
        reached = (
            None
            if not level
            else levels[level - 1].name
            if level <= len(levels)
            else (f"level {level}")
        )
        upcoming = escalation.next_level(incident, self.escalation)
        lines = [
            f"Situation update: {incident.check_state.value} for {human(now - opened)} "
            f"(open since {_when(opened)}).",
            f"{new} {_plural(new, 'occurrence')} since the last update "
            f"({incident.occurrences} in all).",
            f"Escalation: {reached or 'tier 1 (not escalated)'}"
            + (
                f"; next: {upcoming.name} at {_when(incident.escalation_due)}."
                if upcoming is not None and incident.escalation_due is not None
                else "."
            ),
            f"Next update in {human(cadence)}.",
        ]
        body = "".join(_p(line) for line in lines) + _output(incident.last_output)
        note = PlannedOp(
            Op.NOTE,
            {"body": body, "private": not self.escalation.public_updates},
            incident.priority.rank,
        )
        updated = incident._replace(update_due=now + cadence, update_from=incident.occurrences)
        return updated, [note], ()

    def _escalate_on_time(self, incident: Incident, now: datetime) -> Fired:
        level = escalation.next_level(incident, self.escalation)
        if level is None or not escalation.clock_runs(incident, self.escalation):
            return incident._replace(escalation_due=None), [], ()
        ran = incident.escalation_spent + (now - (incident.escalation_since or now))
        reason = f"open and unacknowledged for {human(ran)}"
        return self._escalate(incident, level, reason, now, manual=False)

    def _escalate(
        self, incident: Incident, level: EscalationLevel, reason: str, now: datetime, *,
        manual: bool,
    ) -> Fired:  # fmt: skip
        """Carry out one level: the ticket's group, agent, priority and tags, and a note."""
        fields: dict[str, Any] = {}
        if level.group_id is not None:
            fields["group_id"] = level.group_id
        if level.responder_id is not None:
            fields["responder_id"] = level.responder_id
        priority = escalation.raised(incident.priority, level.priority)
        if priority is not incident.priority:
            fields["priority"] = priority.rank
        text = level.note or f"Escalated to {level.name}: {reason}."
        payload: UpdatePayload = {"fields": fields, "note": _p(text), "lowers": False}
        if level.tags:
            payload["add_tags"] = list(level.tags)
        if level.notify_emails:
            payload["notify_emails"] = list(level.notify_emails)
        op = PlannedOp(Op.UPDATE, payload, max(priority.rank, incident.priority.rank))
        detail: dict[str, Any] = {"level": incident.escalation_level + 1, "name": level.name,
                                  "reason": reason, "manual": manual}  # fmt: skip
        event = Event(EventKind.ESCALATED, now, detail)
        return incident._replace(escalation_level=incident.escalation_level + 1), [op], (event,)

    def _on_event(self, plan: _Plan, event: Event, now: datetime) -> None:
        incident, kind = plan.incident, event.kind
        if not incident.ticket_live:
            self._without_ticket(plan, event, now)
            return
        if incident.agent_closed is not None:
            self._after_agent_close(plan, event, now)
            return
        if incident.flapping and kind in _SWINGS:
            return  # the flapping note said it: no note per swing
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, plan, event, now)

    def _after_agent_close(self, plan: _Plan, event: Event, now: datetime) -> None:
        """An agent resolved or closed the ticket by hand: alertd writes nothing to it (no notes,
        no resolve, no escalation) until the problem recurs after the check was OK; then
        `on_agent_close` decides: a new ticket naming the old one, or the old one reopened."""
        if event.kind not in (EventKind.RECURRED, EventKind.REOPENED):
            return
        incident = plan.incident
        old = incident.agent_closed
        if old is None:
            return
        merged = incident.agent_closed_merged
        if self.config.on_agent_close == "reopen" and merged is None:
            body = _p(
                f"The problem came back at {_when(now)} ({incident.check_state.value}) after "
                "an agent had resolved this ticket: reopened."
            ) + _output(incident.last_output)
            fields = {"status": STATUS_OPEN, "priority": incident.priority.rank,
                      "subject": self.subject(incident)}  # fmt: skip
            plan.ops.append(
                PlannedOp(Op.UPDATE, {"fields": fields, "note": body}, incident.priority.rank)
            )
            plan.incident = incident._replace(
                agent_closed=None, agent_closed_merged=None,
                summary_from=incident.occurrences, summary_last_at=now, summary_due=None,
            )  # fmt: skip
            return
        how = f"merged ticket #{old} into #{merged}" if merged else f"resolved ticket #{old}"
        intro = _p(
            f"The problem came back after an agent {how} (the check had been OK in between): "
            "alertd opened this new ticket for it."
        )
        payload = self.create_payload(incident, intro)
        payload["replaces"] = old
        plan.ops.append(PlannedOp(Op.CREATE, payload, incident.priority.rank))
        # A new ticket starts the tier process afresh: tier 1 owns it, whatever the old one
        # had reached.
        plan.incident = incident._replace(
            agent_closed=None, agent_closed_merged=None,
            summary_from=incident.occurrences, summary_last_at=now,
            summary_due=None, update_from=incident.occurrences, update_due=None,
            escalation_level=0, escalation_since=None, escalation_spent=timedelta(0),
            escalation_due=None,
        )  # fmt: skip

    def _without_ticket(self, plan: _Plan, event: Event, now: datetime) -> None:
        """An event of an incident with no open ticket (none yet, or alertd resolved it): whether
        and when the ticket is created or brought back. Nothing else is sent meanwhile."""
        incident, kind = plan.incident, event.kind
        if not _wants_ticket(incident):
            # Suppressed, not open, or OK (kept open by flapping): nobody is called. A problem
            # that reopens inside a maintenance window still reopens its ticket, with a note
            # that says so; one absorbed by its host's outage waits for the host's recovery.
            if (
                kind is EventKind.REOPENED
                and incident.ticket_requested
                and _in_maintenance(incident)
            ):
                self._reopened(plan, event, now)
            return
        if kind in (EventKind.OPENED, EventKind.REOPENED):
            wait = self._grace(incident)
        elif kind is EventKind.UNSUPPRESSED and _after_maintenance(event):
            wait = timedelta(0)  # the window is over and the check still fails: call now
        elif kind is EventKind.UNSUPPRESSED:
            # Released because its host is back: services are rechecked in the next minute or
            # two, so wait that long before calling anyone.
            wait = self.config.release_grace
        elif incident.ticket_due is None:
            # Failing again after its wait ended at OK (a flapping check held open): the wait
            # was served, and a real problem gets its ticket.
            wait = timedelta(0)
        else:
            return
        at = now + wait
        plan.bring_up_at = at if plan.bring_up_at is None else max(plan.bring_up_at, at)

    def _schedule(self, plan: _Plan, at: datetime, now: datetime) -> None:
        """Create or bring back the ticket at `at` (now, or by the `ticket_due` timer), unless
        a grace already running ends later, or the incident no longer calls for one."""
        incident = plan.incident
        if incident.ticket_live or not _wants_ticket(incident):
            return
        if incident.ticket_due is not None:
            at = max(at, incident.ticket_due)
        if at <= now:
            self._bring_up(plan, now)
        else:
            plan.incident = incident._replace(ticket_due=at)

    def _grace(self, incident: Incident) -> timedelta:
        """How long a newly (re)opened incident waits for its ticket: a service's waits for its
        host's result, which Nagios may deliver just after it (OCSP and OCHP are separate
        jobs); a host's, and a heartbeat's (no host check stands behind it), do not wait."""
        if incident.service is None or incident.host == heartbeats.HOST:
            return timedelta(0)
        return self.config.service_grace

    def _bring_up(self, plan: _Plan, now: datetime) -> None:
        """Create the ticket, or reopen the one alertd resolved."""
        if not plan.incident.ticket_requested:
            self._create(plan, now)
        else:
            self._reopened(plan, Event(EventKind.REOPENED, now), now)

    def _create(self, plan: _Plan, now: datetime) -> None:
        incident = plan.incident
        rule = routing.route(self.config.rules, incident)
        if not routing.wants_ticket(rule, incident):
            return  # the rule keeps it out of the helpdesk: visible in alertd only
        payload = self.create_payload(incident)
        plan.ops.append(PlannedOp(Op.CREATE, payload, incident.priority.rank))
        plan.incident = incident._replace(
            ticket_recovery=None if rule is None else rule.recovery,
            ticket_requested=True,
            ticket_resolved=False,
            summary_from=incident.occurrences,
            summary_last_at=now,
            summary_due=None,
            ticket_due=None,
            update_from=incident.occurrences,  # the description already counts these
        )

    def _repeat(self, plan: _Plan, event: Event, now: datetime) -> None:
        incident = plan.incident
        if incident.summary_due is None and incident.status is Status.OPEN:
            last = incident.summary_last_at or now
            plan.incident = incident._replace(
                summary_due=max(now, last + self.config.note_interval)
            )

    def _state_note(self, plan: _Plan, event: Event, now: datetime) -> None:
        incident = plan.incident
        lead = {
            EventKind.STATE_CHANGED: f"State changed from {event.detail.get('from')} to "
            f"{event.detail.get('to')}.",
            EventKind.RECURRED: f"The problem is back before the recovery was confirmed: "
            f"{incident.check_state.value}.",
        }[event.kind]
        body = _p(lead) + _output(incident.last_output)
        # The subject names the state: keep it true, so the ticket list does not mislead.
        fields = {"subject": self.subject(incident)}
        plan.ops.append(
            PlannedOp(Op.UPDATE, {"fields": fields, "note": body}, incident.priority.rank)
        )

    def _priority(self, plan: _Plan, event: Event, now: datetime) -> None:
        incident, d = plan.incident, event.detail
        rule = f', rule "{d["rule"]}"' if d.get("rule") else ""
        body = _p(
            f"Priority changed from {str(d['from']).title()} to {str(d['to']).title()}: impact "
            f"{d['impact']} x urgency {d['urgency']} (state {d['state']}{rule})."
        )
        lowers = incident.priority.rank < _rank(str(d["from"]))
        fields: dict[str, Any] = {"priority": incident.priority.rank}
        payload: UpdatePayload = {"fields": fields, "note": body, "lowers": lowers}
        plan.ops.append(PlannedOp(Op.UPDATE, payload, incident.priority.rank))

    def _recovering(self, plan: _Plan, event: Event, now: datetime) -> None:
        incident = plan.incident
        body = _p(
            f"Recovered at {_when(now)}: {incident.check_state.value}. The ticket will be "
            f"resolved if the check stays OK for {human(self.recovery_hold)}."
        ) + _output(incident.last_output)
        plan.ops.append(self._note(incident, body))

    def _resolved(self, plan: _Plan, event: Event, now: datetime) -> None:
        incident = plan.incident
        if incident.ticket_resolved:
            return  # its reopening was held back (absorbed): the ticket is resolved already
        since = incident.recovering_since or now
        body = _p(
            f"Recovered at {_when(since)}, OK for {human(now - since)}: resolved by alertd. "
            "If the problem comes back, this ticket is reopened."
        )
        recovery = incident.ticket_recovery
        if recovery == "note":
            # The team closes its tickets itself: say so, leave the status to them.
            body = _p(
                f"Recovered at {_when(since)}, OK for {human(now - since)}: the problem is "
                "over as far as monitoring can tell. alertd leaves closing this ticket to you."
            )
            plan.ops.append(self._note(incident, body))
        else:
            status = {"resolve": 4, "close": 5}.get(recovery or "", self.config.resolve_status)
            plan.ops.append(
                PlannedOp(
                    Op.UPDATE, {"fields": {"status": status}, "note": body},
                    incident.priority.rank,
                )
            )  # fmt: skip
        plan.incident = incident._replace(summary_due=None, ticket_resolved=True)

    def _reopened(self, plan: _Plan, event: Event, now: datetime) -> None:
        incident = plan.incident
        body = _p(
            f"The problem came back at {_when(now)} ({incident.check_state.value}), "
            f"after the ticket was resolved: reopened (reopening {incident.reopen_count})."
        ) + _output(incident.last_output)
        fields = {
            "status": STATUS_OPEN,
            "priority": incident.priority.rank,
            "subject": self.subject(incident),
        }
        plan.ops.append(
            PlannedOp(Op.UPDATE, {"fields": fields, "note": body}, incident.priority.rank)
        )
        plan.incident = incident._replace(
            summary_from=incident.occurrences, summary_last_at=now, summary_due=None,
            ticket_resolved=False, ticket_due=None,
        )  # fmt: skip

    def _manual_escalation(self, plan: _Plan, event: Event, now: datetime) -> None:
        if not event.detail.get("manual") or "level" in event.detail:
            return  # a timer's own event: already carried out
        incident = plan.incident
        level = escalation.next_level(incident, self.escalation) or EscalationLevel(
            name="manual escalation", after=timedelta(0)
        )
        who = event.detail.get("author") or "someone"
        reason = f"asked by {who}: {event.detail.get('comment') or 'no reason given'}"
        updated, ops, _ = self._escalate(incident, level, reason, now, manual=True)
        plan.incident = updated
        plan.ops += ops

    def _flag_note(self, plan: _Plan, event: Event, now: datetime) -> None:
        d = event.detail
        who = f" by {d['author']}" if d.get("author") else ""
        comment = f": {d['comment']}" if d.get("comment") else ""
        text = {
            EventKind.FLAPPING_STARTED: "The check started flapping (changing state often); "
            "alertd keeps the ticket open until it settles.",
            EventKind.FLAPPING_STOPPED: "The check stopped flapping.",
            EventKind.SUPPRESSED: f"Suppressed: {d.get('reason')}.",
            EventKind.UNSUPPRESSED: f"No longer suppressed ({d.get('reason')}).",
            EventKind.ACKNOWLEDGED: f"Acknowledged{who}{comment}.",
            EventKind.UNACKNOWLEDGED: "Acknowledgement ended"
            + (f" ({d['reason']})." if d.get("reason") else "."),
            EventKind.NOTE: f"Comment{who}{comment}.",
        }[event.kind]
        if event.kind in (EventKind.FLAPPING_STARTED, EventKind.FLAPPING_STOPPED):
            # No note per swing while it flaps, so the subject would keep whichever state it
            # had when flapping began: it says FLAPPING instead, and the state once it settles.
            fields = {"subject": self.subject(plan.incident)}
            plan.ops.append(
                PlannedOp(
                    Op.UPDATE, {"fields": fields, "note": _p(text)}, plan.incident.priority.rank
                )
            )
            return
        plan.ops.append(self._note(plan.incident, _p(text)))

    def _stale_note(self, plan: _Plan, event: Event, now: datetime) -> None:
        incident, d = plan.incident, event.detail
        if event.kind is EventKind.STALE:
            seconds = d.get("interval_seconds")
            every = f" (it reported every {human(timedelta(seconds=seconds))})" if seconds else ""
            text = (
                f"No data from the check since {_when(incident.last_seen)}{every}. No data is "
                "not OK: alertd keeps this ticket open until the check reports again."
            )
        else:
            text = (
                f"The check reports again ({d.get('state')}), after a silence since "
                f"{_when(datetime.fromisoformat(str(d['silent_since'])))}."
            )
        plan.ops.append(self._note(incident, _p(text)))

    def _note(self, incident: Incident, body: str) -> PlannedOp:
        return PlannedOp(Op.NOTE, {"body": body}, incident.priority.rank)

    def create_payload(self, incident: Incident, intro: str = "") -> CreatePayload:
        """The ticket for `incident` as it stands, routed by the first matching rule; `intro`
        (HTML) goes before the description."""
        rule = routing.route(self.config.rules, incident)
        extra = () if rule is None else rule.tags
        payload: CreatePayload = {
            "subject": self.subject(incident),
            "description": intro + self.description(incident),
            "priority": incident.priority.rank,
            # The incident's tag stays last: the dispatcher finds tickets by it.
            "tags": [*dict.fromkeys([*self.config.tags, *extra]), self.tag(incident)],
            "impact": incident.reason.impact.value,
            "urgency": incident.reason.urgency.value,
        }
        if rule is not None and (rule.fields or rule.custom_fields):
            fields = dict(rule.fields)
            if rule.custom_fields:
                fields["custom_fields"] = {**self.config.custom_fields, **rule.custom_fields}
            payload["fields"] = fields
        return payload

    def recreate(self, incident: Incident, gone_ticket_id: int) -> CreatePayload:
        """A new ticket for an incident whose ticket was deleted or archived, naming the old."""
        intro = (
            f"<p>This incident's earlier ticket #{gone_ticket_id} no longer exists (deleted or "
            "archived); alertd opened this one to go on tracking it.</p>"
        )
        return self.create_payload(incident, intro)

    # -- rendering ------------------------------------------------------------------------------

    def tag(self, incident: Incident) -> str:
        """The unique per-incident tag that makes creates findable after an unknown outcome."""
        return f"alertd-{self.config.instance}-{incident.id}"

    def subject(self, incident: Incident) -> str:
        output = (
            incident.last_output.strip().splitlines()[0] if incident.last_output.strip() else ""
        )
        if len(output) > OUTPUT_IN_SUBJECT:
            output = output[: OUTPUT_IN_SUBJECT - 1] + "…"
        text = self.config.subject_template.format_map(_fields(incident, output))
        return text[:SUBJECT_MAX]

    def description(self, incident: Incident) -> str:
        r = incident.reason
        rule = f', rule "{r.rule}"' if r.rule else ", default impact"
        service = incident.service or "(host check)"
        priority = (
            f"{incident.priority.value.title()}: impact {r.impact.value} x "
            f"urgency {r.urgency.value}{rule}"
        )
        rows = [
            ("Host", incident.host),
            ("Service", service),
            ("State", f"{incident.check_state.value} ({incident.state_type.value})"),
            ("Priority", priority),
            ("First seen", _when(incident.first_seen)),
            ("Occurrences", str(incident.occurrences)),
            ("Incident", f"alertd #{incident.id} ({self.tag(incident)})"),
        ]
        if incident.perfdata:
            rows.insert(3, ("Performance data", incident.perfdata))
        table = "".join(
            f'<tr><th align="left">{html.escape(k)}</th><td>{html.escape(v)}</td></tr>'
            for k, v in rows
        )
        parts = [
            _p(f"{incident.check_state.value} on {incident.host} / {service}"),
            _output(incident.last_output),
        ]
        if incident.long_output:
            parts.append(f"<pre>{html.escape(incident.long_output)}</pre>")
        parts.append(f"<table>{table}</table>")
        link = self.monitoring_link(incident)
        if link:
            parts.append(f'<p><a href="{html.escape(link)}">Open in monitoring</a></p>')
        cadence = self.escalation.cadence.get(incident.priority)
        rhythm = (
            f"Situation updates every {human(cadence)} while the problem lasts"
            if cadence
            else f"No scheduled situation updates at {incident.priority.value.title()} priority"
        )
        parts.append(
            _p(
                f"{rhythm}. alertd also adds a private note on every change of state or "
                "priority and sums up repeats at most every "
                f"{human(self.config.note_interval)}. It resolves this ticket once the check "
                f"has been OK for {human(self.recovery_hold)}, and reopens it if the problem "
                "returns."
            )
        )
        return "".join(parts)

    def monitoring_link(self, incident: Incident) -> str:
        template = self.config.monitoring_url
        if not template:
            return ""
        quoted = {k: quote(str(v), safe="") for k, v in _fields(incident, "").items()}
        return template.format_map(quoted)


# Events that a flapping check produces on every swing.
_SWINGS = frozenset({EventKind.STATE_CHANGED, EventKind.RECURRED, EventKind.RECOVERING})

_HANDLERS = {
    EventKind.DEDUPLICATED: TicketPlanner._repeat,
    EventKind.STATE_CHANGED: TicketPlanner._state_note,
    EventKind.RECURRED: TicketPlanner._state_note,
    EventKind.PRIORITY_CHANGED: TicketPlanner._priority,
    EventKind.RECOVERING: TicketPlanner._recovering,
    EventKind.RESOLVED: TicketPlanner._resolved,
    EventKind.REOPENED: TicketPlanner._reopened,
    EventKind.FLAPPING_STARTED: TicketPlanner._flag_note,
    EventKind.FLAPPING_STOPPED: TicketPlanner._flag_note,
    EventKind.SUPPRESSED: TicketPlanner._flag_note,
    EventKind.UNSUPPRESSED: TicketPlanner._flag_note,
    EventKind.ACKNOWLEDGED: TicketPlanner._flag_note,
    EventKind.UNACKNOWLEDGED: TicketPlanner._flag_note,
    EventKind.NOTE: TicketPlanner._flag_note,
    EventKind.ESCALATED: TicketPlanner._manual_escalation,
    EventKind.STALE: TicketPlanner._stale_note,
    EventKind.FRESH: TicketPlanner._stale_note,
}


def _wants_ticket(incident: Incident) -> bool:
    """Whether the incident calls for an open ticket: a confirmed problem, still failing, that
    nobody muted. A check that is OK never gets a ticket (one kept open by flapping included)."""
    return (
        incident.status is Status.OPEN
        and not incident.suppressed
        and not incident.check_state.is_ok
    )


def _in_maintenance(incident: Incident) -> bool:
    return str(incident.suppressed_reason or "").startswith(MAINTENANCE)


def _after_maintenance(event: Event) -> bool:
    """Whether an `unsuppressed` event ends a maintenance window (not a host's outage)."""
    return str(event.detail.get("reason") or "").startswith(MAINTENANCE)


def _compact(ops: list[PlannedOp]) -> list[PlannedOp]:
    """One commit's notes and updates for an incident as one operation: a state change that
    also changes the priority is one ticket update with one note, not two calls (the helpdesk's
    rate limit is shared by the whole account)."""
    if len(ops) < 2:
        return ops
    out: list[PlannedOp] = []
    for op in ops:
        last = out[-1] if out else None
        if last is None or op.op is Op.CREATE or last.op is Op.CREATE:
            out.append(op)
            continue
        fields = {**_fields_of(last), **_fields_of(op)}
        notes = [n for o in (last, op) if (n := _note_of(o))]
        if fields:
            lowers = _lowers(last) or _lowers(op)
            payload: UpdatePayload = {"fields": fields, "note": "".join(notes), "lowers": lowers}
            merged = PlannedOp(Op.UPDATE, payload, max(last.priority, op.priority))
        else:
            merged = PlannedOp(Op.NOTE, {"body": "".join(notes)}, max(last.priority, op.priority))
        out[-1] = merged
    return out


# The op names its payload's shape; these read an UPDATE's or a NOTE's parts.
def _fields_of(op: PlannedOp) -> dict[str, Any]:
    return cast(UpdatePayload, op.payload)["fields"] if op.op is Op.UPDATE else {}


def _note_of(op: PlannedOp) -> str | None:
    if op.op is Op.UPDATE:
        return cast(UpdatePayload, op.payload)["note"]
    return cast(NotePayload, op.payload)["body"]


def _lowers(op: PlannedOp) -> bool:
    return op.op is Op.UPDATE and cast(UpdatePayload, op.payload).get("lowers", False)


def _fields(incident: Incident, output: str) -> dict[str, object]:
    return {
        "state": "FLAPPING" if incident.flapping else incident.check_state.value,
        "host": incident.host,
        "service": incident.service or "",
        "slash_service": f" / {incident.service}" if incident.service else "",
        "output": output,
        "priority": incident.priority.value.title(),
        "id": incident.id,
        "status": incident.status.value,
    }


def _rank(priority: str) -> int:
    return {"urgent": 4, "high": 3, "medium": 2, "low": 1}.get(priority, 0)


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def _output(output: str) -> str:
    return f"<pre>{html.escape(output)}</pre>" if output else ""


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _plural(n: int, noun: str) -> str:
    return noun if n == 1 else noun + "s"
