"""The board's view of the live incidents: the filters and grouping of a board address, and the
selection, order and page they give.

Pure: it takes the engine's cached incidents (every unresolved incident is cached) and the
time, so a board page costs no query however many incidents are open; only the page's ticket
links and ack times are read from the store afterwards.

Order: most urgent first, then the oldest problem first (the one waiting longest).
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import translate
from typing import TypeVar
from urllib.parse import urlencode

from alertd.errors import InputError
from alertd.model import Incident, Priority, Status

LIVE_STATUSES = (Status.OPEN, Status.RECOVERING, Status.PENDING)
GROUPINGS = ("priority", "hostgroup")
# The Nagios label holding a host's groups (a comma list); Opsview sends its primary group.
HOSTGROUPS = "hostgroups"
NO_GROUP = "(no host group)"
MAX_TEXT = 200


@dataclass(frozen=True, slots=True)
class BoardQuery:
    """What a board address asks for; every field is a URL parameter of the same name."""

    status: tuple[Status, ...] = LIVE_STATUSES
    priority: tuple[Priority, ...] = ()
    host: str = ""  # a glob
    label: str = ""  # name=glob
    hostgroup: str = ""  # a glob over the host's groups
    q: str = ""  # free text in the output or key
    group: str = ""  # "", "priority", "hostgroup"
    page: int = 1

    def params(self, **changes: object) -> str:
        """This query as a URL query string (defaults left out), with `changes` applied."""
        values: dict[str, object] = {
            "status": ",".join(s.value for s in self.status)
            if self.status != LIVE_STATUSES else "",
            "priority": ",".join(p.value for p in self.priority),
            "host": self.host, "label": self.label, "hostgroup": self.hostgroup, "q": self.q,
            "group": self.group, "page": self.page if self.page != 1 else "",
        }  # fmt: skip
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v not in ("", None, 1)})


def parse_query(query: Mapping[str, str]) -> BoardQuery:
    """A BoardQuery from URL parameters, or InputError naming the bad one."""
    status = _enums(Status, query.get("status", ""), "status") or LIVE_STATUSES
    priority = _enums(Priority, query.get("priority", ""), "priority")
    label = query.get("label", "").strip()
    if label and "=" not in label:
        raise InputError("label: expected name=pattern, e.g. hostgroups=*production*")
    group = query.get("group", "")
    if group not in ("", *GROUPINGS):
        raise InputError(f"group: expected one of {', '.join(GROUPINGS)}")
    raw_page = query.get("page", "1") or "1"
    if not raw_page.isdigit() or not 1 <= int(raw_page) <= 1_000_000:
        raise InputError("page: expected a page number from 1")
    texts = {k: query.get(k, "").strip() for k in ("host", "hostgroup", "q")}
    for name, text in [*texts.items(), ("label", label)]:
        if len(text) > MAX_TEXT:
            raise InputError(f"{name}: at most {MAX_TEXT} characters")
    return BoardQuery(status, priority, texts["host"], label, texts["hostgroup"], texts["q"],
                      group, int(raw_page))  # fmt: skip


_E = TypeVar("_E", Status, Priority)


def _enums(kind: type[_E], raw: str, name: str) -> tuple[_E, ...]:
    found: list[_E] = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        try:
            found.append(kind(part))
        except ValueError:
            allowed = ", ".join(k.value for k in kind)
            raise InputError(f"{name}: {part!r} is not one of {allowed}") from None
    return tuple(dict.fromkeys(found))


@dataclass(frozen=True, slots=True)
class Row:
    group: str  # "" when the board is not grouped
    incident: Incident


@dataclass(frozen=True, slots=True)
class BoardPage:
    rows: list[Row]
    total: int  # rows over all pages
    page: int
    pages: int
    counts: dict[str, int] = field(default_factory=dict)  # matching incidents by priority


def select(incidents: Iterable[Incident], query: BoardQuery, page_size: int) -> BoardPage:
    """The matching incidents, grouped and ordered, and the page `query.page` of them.

    Runs on every board view and refresh over all live incidents (10,000 in bench/console.py),
    so only the rows of the page asked for are built, and page 1 needs no full sort.
    """
    match = _matcher(query)
    chosen = [i for i in incidents if match(i)]
    by_priority = Counter(i.priority for i in chosen)
    counts = {p.value: by_priority.get(p, 0) for p in Priority}
    if query.group == "hostgroup":  # a host in two groups shows in both: rows != incidents
        chosen.sort(key=_order)
        rows = [Row(g, i) for i in chosen for g in (host_groups(i) or [NO_GROUP])]
        rows.sort(key=lambda r: (r.group == NO_GROUP, r.group))  # stable: order kept inside
        pages, page = _paging(len(rows), query.page, page_size)
        start = (page - 1) * page_size
        return BoardPage(rows[start : start + page_size], len(rows), page, pages, counts)
    pages, page = _paging(len(chosen), query.page, page_size)
    end = page * page_size
    # Urgent first means grouped by priority already: grouping only adds the headings.
    ordered = (heapq.nsmallest(end, chosen, key=_order) if end < len(chosen) // 2
               else sorted(chosen, key=_order))  # fmt: skip
    grouped = query.group == "priority"
    rows = [Row(i.priority.value if grouped else "", i) for i in ordered[end - page_size : end]]
    return BoardPage(rows, len(chosen), page, pages, counts)


# Most urgent first, then the longest-waiting problem first; the id breaks ties stably.
_RANK = {p: -p.rank for p in Priority}


def _order(i: Incident) -> tuple[int, datetime, int]:
    return (_RANK[i.priority], i.opened_at or i.first_seen, i.id)


def _paging(count: int, asked: int, page_size: int) -> tuple[int, int]:
    pages = max(1, -(-count // page_size))
    return pages, min(asked, pages)


def host_groups(incident: Incident) -> list[str]:
    raw = incident.labels.get(HOSTGROUPS, "")
    return [g for g in (part.strip() for part in raw.split(",")) if g]


def _glob(pattern: str) -> re.Pattern[str]:
    # fnmatch's own translation (no regex from the user ever reaches `re`): * ? [...]
    return re.compile(translate(pattern), re.IGNORECASE | re.DOTALL)


def _matcher(query: BoardQuery) -> Callable[[Incident], bool]:
    host = _glob(query.host) if query.host else None
    label_name, _, label_pattern = query.label.partition("=")
    label = _glob(label_pattern) if query.label else None
    group = _glob(query.hostgroup) if query.hostgroup else None
    text = query.q.casefold()
    statuses, priorities = set(query.status), set(query.priority)

    def match(i: Incident) -> bool:
        if i.status not in statuses or (priorities and i.priority not in priorities):
            return False
        if host is not None and not host.match(i.host):
            return False
        if label is not None and not label.match(i.labels.get(label_name.strip(), "\0")):
            return False
        if group is not None and not any(group.match(g) for g in host_groups(i)):
            return False
        return not text or text in i.last_output.casefold() or text in _key(i).casefold()

    return match


def _key(i: Incident) -> str:
    return i.host if i.service is None else f"{i.host}/{i.service}"


def age(incident: Incident, now: datetime) -> float:
    """Seconds the problem has lasted (since it opened; a pending one since first seen)."""
    return max(0.0, (now - (incident.opened_at or incident.first_seen)).total_seconds())
