"""Ticket policy rules: which team's queue an incident's ticket goes to, and whether it gets
one at all. Pure.

`[[helpdesk.rules]]`, in order, first match wins; a rule matches like an impact rule (host,
service, labels such as `hostgroups`, each a glob or `re:`) and may also name priorities. The
matched rule sets ticket fields on the create (group, agent, type, tags, custom fields,
requester, product/company or department/workspace), can keep the incident out of the
helpdesk (`create = false`, or `min_priority`), and says what the recovery does to the ticket
(`resolve`, `close` or only a `note`). Rules are read when a ticket is created, so a reload
applies to new tickets; an existing ticket keeps the recovery its rule gave it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from alertd.model import Incident, Priority
from alertd.policy import Pattern

RECOVERIES = ("resolve", "close", "note")
# Fields a rule may set on the create, by helpdesk kind (docs/protocols.md 1.3, 1.10).
COMMON_FIELDS = ("group_id", "responder_id", "type", "requester_email")
KIND_FIELDS: Mapping[str, tuple[str, ...]] = {
    "freshdesk": ("product_id", "company_id"),
    "freshservice": ("department_id", "workspace_id"),
}


@dataclass(frozen=True, slots=True)
class TicketRule:
    """One routing rule: every given matcher must match (AND); then its actions apply."""

    name: str
    host: Pattern | None = None
    service: Pattern | None = None
    labels: Mapping[str, Pattern] = field(default_factory=lambda: MappingProxyType({}))
    priorities: frozenset[Priority] = frozenset()  # empty: any priority
    create: bool = True
    min_priority: Priority | None = None
    fields: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    tags: tuple[str, ...] = ()
    custom_fields: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    recovery: str | None = None  # None: the configured resolve_status

    def matches(self, incident: Incident) -> bool:
        if self.host is not None and not self.host.matches(incident.host):
            return False
        if self.service is not None and not self.service.matches(incident.service):
            return False
        if self.priorities and incident.priority not in self.priorities:
            return False
        labels = incident.labels
        return all(p.matches(labels.get(name)) for name, p in self.labels.items())


_ORDER = (Priority.LOW, Priority.MEDIUM, Priority.HIGH, Priority.URGENT)


def route(rules: Sequence[TicketRule], incident: Incident) -> TicketRule | None:
    """The first rule that matches `incident` as it stands, or None."""
    for rule in rules:
        if rule.matches(incident):
            return rule
    return None


def wants_ticket(rule: TicketRule | None, incident: Incident) -> bool:
    """Whether the incident should have a ticket now under its rule."""
    if rule is None:
        return True
    if not rule.create:
        return False
    if rule.min_priority is None:
        return True
    return _ORDER.index(incident.priority) >= _ORDER.index(rule.min_priority)
