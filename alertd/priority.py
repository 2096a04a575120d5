"""Priority of an incident: ITIL impact x urgency, looked up in the configured matrix.

Urgency follows the check state; impact comes from the first matching impact rule, or the
default impact. Pure functions of their arguments; `alertd.lifecycle` decides when to call them.
"""

from __future__ import annotations

from collections.abc import Mapping

from alertd.model import CheckState, Level, Priority, PriorityReason
from alertd.policy import ImpactRule, PriorityPolicy

# Distinct reasons seen (bounded: levels x levels x rules x states).
_REASONS: dict[PriorityReason, PriorityReason] = {}


def urgency_of(state: CheckState, policy: PriorityPolicy) -> Level:
    """The urgency of a problem state.

    Raises ValueError for a state without an urgency: OK and UP are not problems, and the
    lifecycle keeps an incident's last priority while it is OK instead of asking.
    """
    try:
        return policy.urgency[state]
    except KeyError as exc:
        raise ValueError(f"state {state} has no urgency") from exc


def _rule_matches(
    rule: ImpactRule, host: str, service: str | None, labels: Mapping[str, str]
) -> bool:
    if rule.host is not None and not rule.host.matches(host):
        return False
    # A service pattern never matches a host check: Pattern.matches(None) is False.
    if rule.service is not None and not rule.service.matches(service):
        return False
    return all(pattern.matches(labels.get(name)) for name, pattern in rule.labels.items())


def impact_of(
    host: str, service: str | None, labels: Mapping[str, str], policy: PriorityPolicy
) -> tuple[Level, str | None]:
    """Impact and rule name of the first rule whose given matchers all match; else the default.

    A rule's label pattern must match that label's value; a missing label does not match.
    """
    for rule in policy.rules:
        if _rule_matches(rule, host, service, labels):
            return rule.impact, rule.name
    return policy.default_impact, None


def evaluate(
    host: str,
    service: str | None,
    labels: Mapping[str, str],
    state: CheckState,
    policy: PriorityPolicy,
) -> tuple[Priority, PriorityReason]:
    """Priority = matrix[impact][urgency] for a problem `state`, with the reason it was chosen."""
    urgency = urgency_of(state, policy)
    impact, rule = impact_of(host, service, labels, policy)
    reason = PriorityReason(impact, urgency, rule, state)
    # One object per distinct reason (a handful), not one per incident: a million live
    # incidents share a few dozen.
    return policy.matrix[impact][urgency], _REASONS.setdefault(reason, reason)
