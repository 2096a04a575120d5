"""[[helpdesk.rules]]: ticket policy rules (alertd.routing), matched like impact rules."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from alertd.config.priority import _labels, _pattern
from alertd.config.reader import _bool, _Table, _tags
from alertd.model import Priority
from alertd.routing import COMMON_FIELDS, KIND_FIELDS, RECOVERIES, TicketRule

_MATCHERS = ("host", "service", "labels", "priority")
_ACTIONS = ("create", "min_priority", "tags", "custom_fields", "recovery", *COMMON_FIELDS)
_ALL_KIND_FIELDS = tuple(f for fields in KIND_FIELDS.values() for f in fields)
_INT_FIELDS = ("group_id", "responder_id", *_ALL_KIND_FIELDS)


def _ticket_rules(t: _Table, kind: str) -> tuple[TicketRule, ...]:
    raw = t.get("rules", list, "an array of tables ([[helpdesk.rules]])") or []
    rules: list[TicketRule] = []
    for n, item in enumerate(raw, start=1):
        key = f"{t.key('rules')}[{n}]"
        if not isinstance(item, dict):
            t.problems.add(key, "expected a table")
            continue
        rule = _rule(_Table(item, key, t.problems), n, kind)
        if any(r.name == rule.name for r in rules):
            t.problems.add(key, f"duplicate rule name {rule.name!r}")
        rules.append(rule)
    return tuple(rules)


def _rule(t: _Table, n: int, kind: str) -> TicketRule:
    t.check_keys(("name", *_MATCHERS, *_ACTIONS, *_ALL_KIND_FIELDS))
    name = t.get("name", str, "a string") or f"rule {n}"
    fields: dict[str, Any] = {}
    for key in _INT_FIELDS:
        value = t.get(key, int, "an integer (an id)")
        if value is None:
            continue
        if key in _ALL_KIND_FIELDS and key not in KIND_FIELDS[kind]:
            t.add(key, f"not a {kind} ticket field; {kind} takes {', '.join(KIND_FIELDS[kind])}")
        fields[key] = value
    for key in ("type", "requester_email"):
        text = t.get(key, str, "a string")
        if text:
            fields["email" if key == "requester_email" else key] = text
    if "email" in fields and "@" not in fields["email"]:
        t.add("requester_email", f"expected an email address, got {fields['email']!r}")
    recovery = t.get("recovery", str, "a string")
    if recovery is not None and recovery not in RECOVERIES:
        t.add("recovery", f"expected one of {', '.join(RECOVERIES)}, got {recovery!r}")
        recovery = None
    return TicketRule(
        name=name,
        host=_pattern(t, "host"),
        service=_pattern(t, "service"),
        labels=_labels(t.table("labels")),
        priorities=_priorities(t),
        create=_bool(t, "create", True),
        min_priority=_priority(t, "min_priority"),
        fields=MappingProxyType(fields),
        tags=_tags(t, "tags"),
        custom_fields=MappingProxyType(dict(t.get("custom_fields", dict, "a table") or {})),
        recovery=recovery,
    )


def _priority(t: _Table, key: str) -> Priority | None:
    text = t.get(key, str, "a priority (urgent, high, medium, low)")
    if text is None:
        return None
    if text not in tuple(Priority):
        t.add(key, f"expected one of {', '.join(Priority)}, got {text!r}")
        return None
    return Priority(text)


def _priorities(t: _Table) -> frozenset[Priority]:
    """`priority` as one name or a list of names."""
    raw = t.data.get("priority")
    names = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    if raw is not None and not names:
        t.add("priority", "expected a priority or a list of them")
    chosen: set[Priority] = set()
    for name in names:
        if name in tuple(Priority):
            chosen.add(Priority(name))
        else:
            t.add("priority", f"expected one of {', '.join(Priority)}, got {name!r}")
    return frozenset(chosen)
