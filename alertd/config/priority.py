"""[priority]: the impact x urgency matrix, the urgency of UNKNOWN, and the impact rules with
their host, service and label patterns, read into a `PriorityPolicy`."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from alertd.config.reader import _describe, _enum, _Table
from alertd.model import CheckState, Level, Priority
from alertd.policy import DEFAULT_MATRIX, DEFAULT_URGENCY, ImpactRule, Pattern, PriorityPolicy


def _priority(t: _Table) -> PriorityPolicy:
    t.check_keys(("default_impact", "unknown_urgency", "matrix", "rules"))
    default_impact = _enum(t, "default_impact", Level, Level.MEDIUM)
    unknown = _enum(t, "unknown_urgency", Level, DEFAULT_URGENCY[CheckState.UNKNOWN])
    matrix = _matrix(t.table("matrix"))
    return PriorityPolicy(
        matrix=matrix,
        urgency=MappingProxyType({**DEFAULT_URGENCY, CheckState.UNKNOWN: unknown}),
        rules=_rules(t),
        default_impact=default_impact,
    )


def _matrix(t: _Table) -> Mapping[Level, Mapping[Level, Priority]]:
    """DEFAULT_MATRIX with the cells the file gives replaced."""
    t.check_keys(tuple(Level))
    matrix: dict[Level, Mapping[Level, Priority]] = {}
    for impact in Level:
        row = t.table(impact)
        row.check_keys(tuple(Level))
        cells = {u: _enum(row, u, Priority, p) for u, p in DEFAULT_MATRIX[impact].items()}
        matrix[impact] = MappingProxyType(cells)
    return MappingProxyType(matrix)


def _rules(t: _Table) -> tuple[ImpactRule, ...]:
    raw = t.get("rules", list, "an array of tables ([[priority.rules]])") or []
    rules: list[ImpactRule] = []
    for n, item in enumerate(raw, 1):
        key = f"{t.key('rules')}[{n}]"
        if not isinstance(item, dict):
            t.problems.add(key, f"expected a table, got {_describe(item)}")
            continue
        rule = _rule(_Table(item, key, t.problems), n)
        if rule is not None and any(r.name == rule.name for r in rules):
            # The name is what an incident records as the reason for its priority.
            t.problems.add(f"{key}.name", f"duplicate rule name {rule.name!r}")
        elif rule is not None:
            rules.append(rule)
    return tuple(rules)


_MATCHERS = ("host", "service", "labels")


def _rule(t: _Table, n: int) -> ImpactRule | None:
    t.check_keys(("name", "impact", "match", *_MATCHERS))
    name = t.get("name", str, "a string") or f"rule {n}"
    if t.data.get("name") == "":
        t.add("name", "must not be empty; leave it out for the default name")
    if "impact" not in t.data:
        t.add("impact", f"required; one of {', '.join(Level)}")
    impact = _enum(t, "impact", Level, Level.MEDIUM)
    matchers = _matchers(t)
    if matchers is None:
        return None
    return ImpactRule(
        impact=impact,
        name=name,
        host=_pattern(matchers, "host"),
        service=_pattern(matchers, "service"),
        labels=_labels(matchers.table("labels")),
    )


def _matchers(t: _Table) -> _Table | None:
    """The table holding the rule's matchers (the rule, or its `match`); None if unusable."""
    if "match" in t.data:
        if any(m in t.data for m in _MATCHERS):
            t.add("match", "give matchers either in match or directly in the rule, not both")
            return None
        if not isinstance(t.data["match"], dict):
            t.table("match")  # reports the wrong type
            return None
        t = t.table("match")
        t.check_keys(_MATCHERS)
    if not any(t.data.get(m) not in (None, {}) for m in _MATCHERS):
        # Reported at the rule's own key: the problem is what is missing from it.
        rule = t.name.removesuffix(".match")
        t.problems.add(rule, "matches everything; use priority.default_impact")
        return None
    return t


def _labels(t: _Table) -> Mapping[str, Pattern]:
    labels = {label: _pattern(t, label) for label in t.data}
    return MappingProxyType({k: v for k, v in labels.items() if v is not None})


def _pattern(t: _Table, name: str) -> Pattern | None:
    """A glob, or "re:<regex>"; both must match the whole value, case-sensitively."""
    source = t.get(name, str, 'a pattern string (a glob like "db-*", or "re:<regex>")')
    if source is None:
        return None
    try:
        return Pattern.compile(source)
    except ValueError as exc:
        t.add(name, str(exc))
        return None
