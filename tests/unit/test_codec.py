"""The stored form of an incident: what is written is what is read back, field for field."""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType

import pytest

from alertd import codec, inbox
from alertd.model import (
    CheckResult,
    CheckState,
    Incident,
    Level,
    Notice,
    NoticeKind,
    Priority,
    PriorityReason,
    Reporting,
    StateChange,
    StateType,
    Status,
)
from tests.support import START


def every_field_set() -> Incident:
    """An incident whose fields all differ from their defaults, and times from each other."""
    at = [START + timedelta(minutes=n + 1) for n in range(20)]
    return Incident(
        id=42, host="db-01", service="MySQL", status=Status.OPEN,
        check_state=CheckState.WARNING, state_type=StateType.HARD, priority=Priority.HIGH,
        reason=PriorityReason(Level.HIGH, Level.MEDIUM, "databases", CheckState.WARNING),
        first_seen=at[0], last_seen=at[1], occurrences=7, attempt=3,
        last_hard_state=CheckState.CRITICAL, last_output="slow", long_output="very slow",
        perfdata="t=3s", labels=MappingProxyType({"team": "dba"}), opened_at=at[2],
        resolved_at=at[3], recovering_since=at[4], recovery_due=at[5], reopen_until=at[6],
        reopen_count=2, flapping=True, percent_state_change=31.5,
        flap_history=(CheckState.OK, CheckState.WARNING), suppressed=True,
        suppressed_reason="maintenance (silence 3, by bob)",
        history=(StateChange(at[7], CheckState.WARNING, StateType.HARD),),
        acknowledged=True, ack_author="bob", ack_comment="on it", ack_sticky=True,
        ack_source="api", ticket_requested=True, summary_from=4, summary_due=at[8],
        summary_last_at=at[9], ticket_due=at[10], escalation_level=2, escalation_since=at[11],
        escalation_spent=timedelta(seconds=90), escalation_due=at[12], update_due=at[13],
        update_from=5, interval=60.0, stale=True, agent_closed=17, agent_closed_merged=18,
        ticket_recovery="close", stream_seen=at[14], ticket_resolved=True, source="nagios",
    )  # fmt: skip


def test_an_incident_reads_back_as_it_was_written() -> None:
    """The row decoder builds the incident positionally (for speed at start): every field must
    land where it belongs, and a field added to the model must be added to the codec."""
    incident = every_field_set()
    defaults = Incident(0, "", None, Status.PENDING, CheckState.OK, StateType.SOFT,
                        Priority.LOW, incident.reason, START, START)  # fmt: skip
    unset = [f for f in Incident._fields[3:] if getattr(incident, f) == getattr(defaults, f)]
    assert unset == ["reason"], "set every field in every_field_set()"
    row = codec.incident_row(incident, None)
    decoded = codec.incident_from_row(row)
    assert decoded._asdict() == {**incident._asdict(), "labels": {"team": "dba"}}


def test_an_inbox_row_reads_back_as_the_inputs_written() -> None:
    """What a crash leaves in the inbox is replayed from its row: every field of every result
    and notice must come back equal, in order (alertd.inbox)."""
    items: list[inbox.Inbound] = [
        CheckResult(
            host="db-01", service="MySQL", state=CheckState.WARNING,
            timestamp=START + timedelta(microseconds=123_456), output="slow \ufffd",
            long_output="line 1\nline 2", perfdata="t=1s;2;3", state_type=StateType.SOFT,
            attempt=2, max_attempts=3, labels=MappingProxyType({"hostgroup": "db"}),
            source="nrdp", reporting=Reporting.STREAM, interval=timedelta(seconds=90),
        ),
        CheckResult("web-01", None, CheckState.DOWN, START),
        Notice(
            kind=NoticeKind.ACKNOWLEDGED, host="db-01", service="MySQL", at=START,
            author="ops", comment="on it", sticky=True, source="nagios", ticket_id=17,
            merged_into=9,
        ),
    ]  # fmt: skip
    back = inbox.decode(inbox.encode(items))
    assert back == items
    assert [type(i) for i in back] == [type(i) for i in items]
    assert back[0].labels == {"hostgroup": "db"} and back[1].labels == {}


def test_an_incident_replaced_keeps_every_other_field() -> None:
    """`Incident._replace` is alertd's own (alertd.model, faster than the stock one): the
    fields named change, every other stays, and a name that is no field is refused."""
    incident = every_field_set()
    changed = incident._replace(occurrences=8, source=None, id=7)
    assert type(changed) is Incident
    assert (changed.occurrences, changed.source, changed.id) == (8, None, 7)
    for name in Incident._fields:
        if name not in ("occurrences", "source", "id"):
            assert getattr(changed, name) == getattr(incident, name), name
    with pytest.raises(ValueError, match="nope"):
        incident._replace(nope=1)
