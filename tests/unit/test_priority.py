"""Tests of alertd.priority: urgency, impact rules and the impact x urgency matrix."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from alertd.lifecycle import apply
from alertd.model import CheckResult, CheckState, EventKind, Level, Priority, PriorityReason
from alertd.policy import ImpactRule, LifecyclePolicy, Pattern, PriorityPolicy
from alertd.priority import evaluate, impact_of, urgency_of

H, M, L = Level.HIGH, Level.MEDIUM, Level.LOW
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def pattern(source: str) -> Pattern:
    """A Pattern as configuration builds it: `re:` for a regex, else a glob."""
    if source.startswith("re:"):
        return Pattern(source, re.compile(source[3:]))
    return Pattern(source, re.compile(fnmatch.translate(source)))


def rule(impact: Level, name: str, **matchers: str) -> ImpactRule:
    """An impact rule from keyword matchers: host=, service=, and label_<name>= patterns."""
    labels = {k[6:]: pattern(v) for k, v in matchers.items() if k.startswith("label_")}
    host, service = matchers.get("host"), matchers.get("service")
    return ImpactRule(
        impact=impact,
        name=name,
        host=None if host is None else pattern(host),
        service=None if service is None else pattern(service),
        labels=labels,
    )


@pytest.mark.parametrize(
    ("impact", "state", "expected"),
    [
        (H, CheckState.CRITICAL, Priority.URGENT),
        (H, CheckState.WARNING, Priority.HIGH),
        (H, CheckState.UNKNOWN, Priority.MEDIUM),
        (M, CheckState.CRITICAL, Priority.HIGH),
        (M, CheckState.WARNING, Priority.MEDIUM),
        (M, CheckState.UNKNOWN, Priority.LOW),
        (L, CheckState.CRITICAL, Priority.MEDIUM),
        (L, CheckState.WARNING, Priority.LOW),
        (L, CheckState.UNKNOWN, Priority.LOW),
    ],
)
def test_default_matrix(impact: Level, state: CheckState, expected: Priority) -> None:
    """Every cell of the default 3x3 matrix, with urgency from CRITICAL/WARNING/UNKNOWN."""
    policy = PriorityPolicy(rules=(rule(impact, "all"),))
    priority, reason = evaluate("web01", "http", {}, state, policy)
    assert priority is expected
    assert reason == PriorityReason(impact, urgency_of(state, policy), "all", state)


@pytest.mark.parametrize(
    ("state", "urgency"),
    [
        (CheckState.CRITICAL, H),
        (CheckState.DOWN, H),
        (CheckState.WARNING, M),
        (CheckState.UNREACHABLE, M),
        (CheckState.UNKNOWN, L),
    ],
)
def test_default_urgency(state: CheckState, urgency: Level) -> None:
    """CRITICAL/DOWN are high, WARNING/UNREACHABLE medium, UNKNOWN low."""
    assert urgency_of(state, PriorityPolicy()) is urgency


@pytest.mark.parametrize("state", [CheckState.OK, CheckState.UP])
def test_ok_states_have_no_urgency(state: CheckState) -> None:
    """Asking the urgency of OK or UP is a caller error, reported as ValueError."""
    with pytest.raises(ValueError, match="no urgency"):
        urgency_of(state, PriorityPolicy())


RULES = (
    rule(H, "payments-db", host="db-*", label_team="payments"),
    rule(H, "web-frontends", host="web-??", service="re:https?"),
    rule(L, "dev-anything", label_env="re:dev|test"),
    rule(M, "shadowed", host="web-01"),
    rule(L, "all-disks", service="disk *"),
)


@pytest.mark.parametrize(
    ("host", "service", "labels", "expected"),
    [
        pytest.param("db-3", "pg", {"team": "payments"}, (H, "payments-db"), id="glob+label"),
        pytest.param("db-3", "pg", {"team": "search"}, (M, None), id="label-mismatch"),
        pytest.param("db-3", "pg", {}, (M, None), id="label-missing"),
        pytest.param("web-01", "https", {}, (H, "web-frontends"), id="regex-service"),
        pytest.param("web-01", "https-adm", {}, (M, "shadowed"), id="regex-is-anchored"),
        pytest.param("web-01", "https", {"env": "dev"}, (H, "web-frontends"), id="first-wins"),
        pytest.param("web-001", "http", {"env": "test"}, (L, "dev-anything"), id="regex-label"),
        pytest.param("web-01", None, {}, (M, "shadowed"), id="host-check-skips-service"),
        pytest.param("app-7", "disk /var", {}, (L, "all-disks"), id="glob-service"),
        pytest.param("app-7", "load", {"env": "prod"}, (M, None), id="default-impact"),
    ],
)
def test_impact_rules(
    host: str,
    service: str | None,
    labels: Mapping[str, str],
    expected: tuple[Level, str | None],
) -> None:
    """The first rule whose matchers all match gives the impact; none matching gives default."""
    assert impact_of(host, service, labels, PriorityPolicy(rules=RULES)) == expected


def test_configured_default_impact() -> None:
    """Without a matching rule the configured default impact applies, with no rule name."""
    policy = PriorityPolicy(default_impact=H)
    assert evaluate("x", "y", {}, CheckState.WARNING, policy) == (
        Priority.HIGH,
        PriorityReason(H, M, None, CheckState.WARNING),
    )


def test_state_change_on_open_incident_changes_priority() -> None:
    """WARNING -> CRITICAL on an open incident raises the priority and says why in the event."""
    policy = LifecyclePolicy(priority=PriorityPolicy(rules=(rule(H, "web", host="web*"),)))

    def check(state: CheckState) -> CheckResult:
        return CheckResult("web01", "http", state, T0)

    opened = apply(None, check(CheckState.WARNING), policy, T0, new_id=1).incident
    assert opened is not None and opened.priority is Priority.HIGH
    transition = apply(opened, check(CheckState.CRITICAL), policy, T0, new_id=2)
    incident = transition.incident
    assert incident is not None and incident.priority is Priority.URGENT
    assert incident.reason == PriorityReason(H, H, "web", CheckState.CRITICAL)
    assert [e.kind for e in transition.events] == [
        EventKind.STATE_CHANGED,
        EventKind.PRIORITY_CHANGED,
    ]
    assert transition.events[1].detail == {
        "from": "high",
        "to": "urgent",
        "impact": "high",
        "urgency": "high",
        "rule": "web",
        "state": "CRITICAL",
    }
