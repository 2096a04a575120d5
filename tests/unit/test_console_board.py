"""The console board's selection (alertd.ui.board), pure: order, paging, grouping, filters."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alertd.errors import InputError
from alertd.model import CheckState, Incident, Level, Priority, PriorityReason, StateType, Status
from alertd.ui.board import BoardQuery, parse_query, select
from tests.support import START


def incident(n: int, priority: Priority, minutes_ago: int, **fields: object) -> Incident:
    reason = PriorityReason(Level.MEDIUM, Level.HIGH, None, CheckState.CRITICAL)
    seen = START - timedelta(minutes=minutes_ago)
    base = Incident(n, f"host-{n}", "svc", Status.OPEN, CheckState.CRITICAL, StateType.HARD,
                    priority, reason, seen, seen, opened_at=seen)  # fmt: skip
    return base._replace(**fields)


MANY = [incident(n, list(Priority)[n % 4], n % 7) for n in range(1, 200)]


def test_urgent_first_then_longest_waiting_and_every_page_agrees_with_a_full_sort() -> None:
    """Page 1 (taken without a full sort) and later pages together are the full order."""
    seen = [r.incident.id for p in range(1, 11) for r in select(MANY, BoardQuery(page=p), 20).rows]
    expected = sorted(MANY, key=lambda i: (-i.priority.rank, i.opened_at, i.id))
    assert seen == [i.id for i in expected]


def test_a_page_past_the_end_shows_the_last_one() -> None:
    page = select(MANY, BoardQuery(page=99), 50)
    assert (page.page, page.pages, page.total) == (4, 4, 199)


def test_grouping_by_host_group_lists_a_host_in_each_of_its_groups() -> None:
    both = incident(1, Priority.HIGH, 1, labels={"hostgroups": "web, prod"})
    none = incident(2, Priority.URGENT, 1)
    rows = select([both, none], BoardQuery(group="hostgroup"), 10).rows
    assert [(r.group, r.incident.id) for r in rows] == [("prod", 1), ("web", 1),
                                                         ("(no host group)", 2)]  # fmt: skip


def test_resolved_incidents_are_not_on_the_board_unless_asked() -> None:
    done = incident(1, Priority.URGENT, 1, status=Status.RESOLVED)
    assert select([done], BoardQuery(), 10).total == 0
    assert select([done], parse_query({"status": "resolved"}), 10).total == 1


@pytest.mark.parametrize("query", [{"status": "closed"}, {"group": "rack"}, {"page": "0"},
                                   {"label": "no-equals"}, {"host": "x" * 201}])  # fmt: skip
def test_a_bad_address_is_refused_naming_the_parameter(query: dict[str, str]) -> None:
    with pytest.raises(InputError) as info:
        parse_query(query)
    assert next(iter(query)) in str(info.value)
