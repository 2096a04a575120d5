"""What the helpdesk agent gets: incident changes planned into ticket operations (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from alertd.config import HelpdeskConfig
from alertd.lifecycle import apply, suppress, tick, unsuppress
from alertd.model import CheckResult, CheckState, Event, EventKind, Incident, Transition
from alertd.tickets import Op, PlannedOp, TicketPlanner
from tests.support.lifecycle import HOLD, POLICY, T0

CONFIG = HelpdeskConfig(
    url="https://acme.freshdesk.com",
    api_key="k",
    api_key_source="test",
    requester_email="noc@example.com",
    monitoring_url="https://nagios.example/cgi-bin/extinfo.cgi?host={host}&service={service}",
    service_grace=timedelta(0),  # these tests are about the ticket itself, not its timing
)
PLANNER = TicketPlanner(CONFIG, HOLD)


def result(state: CheckState, output: str = "connection refused", **kw: object) -> CheckResult:
    return CheckResult("web-01", "HTTP", state, T0, output=output, **kw)  # type: ignore[arg-type]


def planned(transition: Transition, minutes: float = 0) -> tuple[Incident, list[PlannedOp]]:
    assert transition.incident is not None
    return PLANNER.plan(transition.incident, transition.events, T0 + timedelta(minutes=minutes))


def opened() -> tuple[Incident, list[PlannedOp]]:
    return planned(apply(None, result(CheckState.CRITICAL), POLICY, T0, new_id=7))


def test_an_opened_incident_becomes_one_readable_ticket() -> None:
    """Opening creates one ticket: clear subject, priority, tags, escaped HTML with the why."""
    incident, ops = planned(
        apply(
            None,
            result(CheckState.CRITICAL, "<b>503</b> & down", perfdata="t=1s"),
            POLICY,
            T0,
            new_id=7,
        )
    )
    (create,) = ops
    assert create.op is Op.CREATE
    p = create.payload
    assert p["subject"] == "[CRITICAL] web-01 / HTTP: <b>503</b> & down"
    assert p["priority"] == 3  # medium impact x high urgency = High
    assert p["tags"] == ["alertd", "alertd-main-7"]
    html = p["description"]
    assert "&lt;b&gt;503&lt;/b&gt; &amp; down" in html and "<b>503" not in html
    assert "High: impact medium x urgency high, default impact" in html
    assert "host=web-01&amp;service=HTTP" in html  # the monitoring link, escaped in HTML
    assert "resolves this ticket once the check has been OK for 5m" in html
    assert incident.ticket_requested


def test_repeats_make_at_most_one_summary_note_per_interval() -> None:
    """1,000 repeats add no note at once; one summary note falls due after note_interval."""
    incident, _ = opened()
    for n in range(1000):
        incident, ops = planned(
            apply(incident, result(CheckState.CRITICAL), POLICY, T0, new_id=99), n / 100
        )
        assert ops == []
    assert incident.summary_due == T0 + CONFIG.note_interval
    summed, (note,), _ = PLANNER.summary(incident, T0 + CONFIG.note_interval)
    assert "1000 more occurrences" in note.payload["body"]
    assert "(1001 in all)" in note.payload["body"]
    assert summed.summary_due is None and summed.summary_from == 1001


def test_priority_recovery_resolution_and_reopening_reach_the_same_ticket() -> None:
    """A priority change updates the ticket; recovery notes; resolution resolves; a recurrence
    reopens the same ticket (status Open again) rather than creating another."""
    incident, _ = opened()
    incident, (up,) = planned(apply(incident, result(CheckState.WARNING), POLICY, T0, new_id=9))
    assert up.op is Op.UPDATE  # state note and priority change: one call, not two
    assert up.payload["fields"] == {
        "subject": "[WARNING] web-01 / HTTP: connection refused",  # the subject stays true
        "priority": 2,
    }
    assert up.payload["lowers"] is True
    assert "State changed from CRITICAL to WARNING" in up.payload["note"]
    assert "Priority changed from High to Medium" in up.payload["note"]

    incident, (note,) = planned(
        apply(incident, result(CheckState.OK, "HTTP OK"), POLICY, T0, new_id=99)
    )
    assert note.op is Op.NOTE and "stays OK for 5m" in note.payload["body"]

    incident, (resolve,) = planned(tick(incident, POLICY, T0 + HOLD), 5)
    assert resolve.payload["fields"] == {"status": 4}
    assert "OK for 5m" in resolve.payload["note"]

    later = T0 + timedelta(hours=1)
    back = apply(incident, result(CheckState.CRITICAL), POLICY, later, new_id=8)
    incident, ops = planned(back, 60)
    assert [o.op for o in ops] == [Op.UPDATE]
    assert ops[0].payload["fields"] == {
        "status": 2,
        "priority": 3,
        "subject": "[CRITICAL] web-01 / HTTP: connection refused",
    }
    assert incident.id == 7


def test_suppressed_problems_get_no_ticket_until_released() -> None:
    """A problem absorbed by its host's outage makes no ticket; released and still failing, it
    gets one; released after recovering, none."""
    fresh = apply(None, result(CheckState.CRITICAL), POLICY, T0, new_id=7)
    assert fresh.incident is not None
    muted = suppress(fresh.incident, "host web-01 is DOWN (incident 6)", T0)
    incident, ops = PLANNER.plan(muted.incident, (*fresh.events, *muted.events), T0)  # type: ignore[arg-type]
    assert ops == [] and not incident.ticket_requested

    released, ops = planned(unsuppress(incident, T0))
    assert ops == [] and released.ticket_due == T0 + CONFIG.release_grace  # services recheck
    created, ops, _ = PLANNER.release(released, T0 + CONFIG.release_grace)
    assert [o.op for o in ops] == [Op.CREATE] and created.ticket_requested
    assert created.ticket_due is None

    recovered = apply(released, result(CheckState.OK), POLICY, T0, new_id=99)
    assert recovered.incident is not None
    _, ops, _ = PLANNER.release(recovered.incident, T0 + CONFIG.release_grace)
    assert ops == []  # recovered within the grace: nobody is called


GRACE = TicketPlanner(replace(CONFIG, service_grace=timedelta(seconds=30)), HOLD)


def test_a_service_ticket_waits_the_service_grace_and_a_hosts_does_not() -> None:
    """A service incident is visible at once but its ticket waits `service_grace`, in which its
    host's problem may absorb it; a host's ticket, and a heartbeat's, come at once."""
    fresh = apply(None, result(CheckState.CRITICAL), POLICY, T0, new_id=7)
    assert fresh.incident is not None
    waiting, ops = GRACE.plan(fresh.incident, fresh.events, T0)
    assert ops == [] and waiting.ticket_due == T0 + timedelta(seconds=30)
    created, ops, _ = GRACE.release(waiting, T0 + timedelta(seconds=30))
    assert [o.op for o in ops] == [Op.CREATE] and created.ticket_requested

    absorbed = suppress(waiting, "host web-01 is DOWN (incident 6)", T0 + timedelta(seconds=1))
    assert absorbed.incident is not None
    _, ops, _ = GRACE.release(absorbed.incident, T0 + timedelta(seconds=30))
    assert ops == []

    for host, service in (("web-01", None), ("alertd-heartbeat", "backup")):
        state = CheckState.DOWN if service is None else CheckState.CRITICAL
        check = CheckResult(host, service, state, T0, output="down")
        opened_now = apply(None, check, POLICY, T0, new_id=8)
        assert opened_now.incident is not None
        _, ops = GRACE.plan(opened_now.incident, opened_now.events, T0)
        assert [o.op for o in ops] == [Op.CREATE], host


def test_a_check_that_is_ok_never_gets_a_ticket() -> None:
    """A service held open at OK by its stream's flapping, released by its host's recovery:
    when the release grace ends it is OK, so no ticket ("[OK] web-01 / HTTP: fine")."""
    fresh = apply(None, result(CheckState.CRITICAL), POLICY, T0, new_id=7)
    assert fresh.incident is not None
    held = fresh.incident._replace(check_state=CheckState.OK, flapping=True, last_output="fine")
    muted = suppress(held, "host web-01 is DOWN (incident 6)", T0)
    assert muted.incident is not None
    incident, ops = PLANNER.plan(muted.incident, (*fresh.events, *muted.events), T0)
    assert ops == []
    released, ops = planned(unsuppress(incident, T0))
    assert ops == []
    _, ops, _ = PLANNER.release(released, T0 + CONFIG.release_grace)
    assert ops == []


def test_a_resolved_ticket_is_brought_back_by_the_rules_of_a_new_one() -> None:
    """A service whose ticket alertd resolved comes back: its ticket is reopened after the
    service grace, not at once, and not at all if its host's problem absorbs it meanwhile;
    released by the host later, still failing, it is reopened then. Nothing else is sent to the
    resolved ticket in between."""
    incident, _ = opened()
    recovering = apply(incident, result(CheckState.OK), POLICY, T0, new_id=9)
    incident, _ = planned(recovering)
    resolved = tick(incident, POLICY, T0 + HOLD)
    assert resolved.incident is not None
    incident, ops = GRACE.plan(resolved.incident, resolved.events, T0 + HOLD)
    assert incident.ticket_resolved

    later = T0 + timedelta(hours=1)
    back = apply(incident, result(CheckState.CRITICAL)._replace(timestamp=later), POLICY, later,
                 new_id=8)  # fmt: skip
    assert back.incident is not None
    incident, ops = GRACE.plan(back.incident, back.events, later)
    assert ops == [] and incident.ticket_due == later + timedelta(seconds=30)
    assert not incident.ticket_live  # held resolved while the grace runs
    absorbed = suppress(incident, "host web-01 is DOWN (incident 6)", later)
    assert absorbed.incident is not None
    incident, ops = GRACE.plan(absorbed.incident, absorbed.events, later)
    assert ops == []  # no "Suppressed" note on a resolved ticket
    incident, ops, _ = GRACE.release(incident, later + timedelta(seconds=30))
    assert ops == [] and incident.ticket_resolved

    recovered = apply(incident, result(CheckState.OK)._replace(timestamp=later), POLICY, later,
                      new_id=8)  # fmt: skip
    assert recovered.incident is not None
    held, ops = GRACE.plan(recovered.incident, recovered.events, later)
    assert ops == []
    quiet = tick(held, POLICY, later + HOLD)
    assert quiet.incident is not None
    _, ops = GRACE.plan(quiet.incident, quiet.events, later + HOLD)
    assert ops == []  # resolved again while held back: the ticket is resolved already

    released = unsuppress(incident, later + timedelta(minutes=10))
    incident, ops = GRACE.plan(released.incident, released.events, later + timedelta(minutes=10))  # type: ignore[arg-type]
    assert ops == []
    due = later + timedelta(minutes=10) + CONFIG.release_grace
    assert incident.ticket_due == due
    incident, ops, _ = GRACE.release(incident, due)
    assert [o.op for o in ops] == [Op.UPDATE] and ops[0].payload["fields"]["status"] == 2
    assert incident.ticket_live


def test_a_flapping_check_that_was_ok_when_its_grace_ended_gets_a_ticket_when_it_fails() -> None:
    """Its grace ended while a flapping stream held it open at OK: no ticket then; its next
    problem gets one at once (the wait was served)."""
    fresh = apply(None, result(CheckState.CRITICAL), POLICY, T0, new_id=7)
    assert fresh.incident is not None
    waiting, _ = GRACE.plan(fresh.incident, fresh.events, T0)
    held = waiting._replace(check_state=CheckState.OK, flapping=True)
    held, ops, _ = GRACE.release(held, T0 + timedelta(seconds=30))
    assert ops == [] and held.ticket_due is None
    later = T0 + timedelta(minutes=1)
    swing = apply(held, result(CheckState.CRITICAL)._replace(timestamp=later), POLICY, later,
                  new_id=8)  # fmt: skip
    assert swing.incident is not None
    incident, ops = GRACE.plan(swing.incident, swing.events, later)
    assert [o.op for o in ops] == [Op.CREATE] and incident.ticket_live


def test_the_subject_of_a_flapping_ticket_says_flapping_then_the_state_it_settles_in() -> None:
    """Swings add no note, so a subject naming the state at the first swing would go stale (a
    ticket reading CRITICAL while the check is OK): it says FLAPPING until the check settles."""
    incident, _ = opened()
    swinging = incident._replace(check_state=CheckState.OK, flapping=True, last_output="fine")
    started = Event(EventKind.FLAPPING_STARTED, T0)
    incident, (update,) = PLANNER.plan(swinging, (started,), T0)
    assert update.op is Op.UPDATE
    assert update.payload["fields"] == {"subject": "[FLAPPING] web-01 / HTTP: fine"}
    assert "started flapping" in update.payload["note"]
    settled = incident._replace(check_state=CheckState.CRITICAL, flapping=False, last_output="x")
    _, (update,) = PLANNER.plan(settled, (Event(EventKind.FLAPPING_STOPPED, T0),), T0)
    assert update.payload["fields"] == {"subject": "[CRITICAL] web-01 / HTTP: x"}
