"""Helpers for the pure lifecycle tests: a fixed start time, the default policy, and one-line
ways to apply a result to an incident."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from alertd.lifecycle import apply
from alertd.model import (
    CheckResult,
    CheckState,
    EventKind,
    Incident,
    Reporting,
    StateType,
    Status,
    Transition,
)
from alertd.policy import LifecyclePolicy

OK, WARN, CRIT = CheckState.OK, CheckState.WARNING, CheckState.CRITICAL
SOFT, HARD = StateType.SOFT, StateType.HARD
# A result from a stream (every check, e.g. OCSP) or a change report (e.g. a notification); a
# result is a change report unless told (as native results are).
STREAM, CHANGE = Reporting.STREAM, Reporting.CHANGE
K = EventKind
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
POLICY = LifecyclePolicy()
HOLD, WINDOW = POLICY.recovery_hold, POLICY.reopen_window
NEW_ID = 99


def check(
    state: CheckState, at: datetime = T0, service: str | None = "http", **fields: Any
) -> CheckResult:
    """A check result for web01 (service `http` unless given) observed at `at`."""
    fields.setdefault("output", f"{state} - output")
    return CheckResult("web01", service, state, at, **fields)


def step(
    incident: Incident | None,
    state: CheckState,
    at: datetime = T0,
    policy: LifecyclePolicy = POLICY,
    *,
    new_id: int = NEW_ID,
    host_problem: Incident | None = None,
    **fields: Any,
) -> Transition:
    """Apply one result received at `at` (the clock and the check time agree)."""
    result = check(state, at, **fields)
    return apply(incident, result, policy, at, new_id=new_id, host_problem=host_problem)


def kinds(transition: Transition) -> list[EventKind]:
    return [event.kind for event in transition.events]


def opened(state: CheckState = CRIT, at: datetime = T0, **fields: Any) -> Incident:
    """A freshly opened incident (id 1)."""
    incident = step(None, state, at, new_id=1, **fields).incident
    assert incident is not None and incident.status is Status.OPEN
    return incident
