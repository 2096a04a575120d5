"""Tests of alertd.flapping: Nagios's weighted percent state change and its thresholds."""

from __future__ import annotations

import pytest

from alertd.flapping import HISTORY_SIZE, next_flapping, percent_state_change, record
from alertd.model import CheckState

OK, CRIT, WARN = CheckState.OK, CheckState.CRITICAL, CheckState.WARNING


def changes_at(*transitions: int) -> list[CheckState]:
    """21 states, oldest first, that change exactly at the given transitions (1 = oldest)."""
    states = [OK]
    for i in range(1, HISTORY_SIZE):
        previous = states[-1]
        states.append((CRIT if previous is OK else OK) if i in transitions else previous)
    return states


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        pytest.param([], 0.0, id="empty"),
        pytest.param([CRIT], 0.0, id="one-entry"),
        pytest.param([CRIT] * 21, 0.0, id="steady"),
        pytest.param(changes_at(20), 6.25, id="newest-transition"),
        pytest.param(changes_at(1), 3.75, id="oldest-transition"),
        pytest.param(changes_at(*range(1, 21)), 100.0, id="every-transition"),
        # w(1) + w(10) + w(20) = 0.75 + (0.75 + 9 * 0.5/19) + 1.25 = 2.986842; x 100/20.
        pytest.param(changes_at(1, 10, 20), 14.934211, id="mixed"),
        # A change from WARNING to CRITICAL counts like any other change of state.
        pytest.param([OK] * 19 + [WARN, CRIT], (1.223684 + 1.25) * 5, id="non-ok"),
        # Short buffers are padded with their oldest state: the changes sit at i = 19 and 20.
        pytest.param([OK, CRIT, OK], (1.223684 + 1.25) * 5, id="short"),
        pytest.param([CRIT, OK], 6.25, id="two-entries"),
    ],
)
def test_percent_state_change_of_known_sequences(
    history: list[CheckState], expected: float
) -> None:
    """The percentage matches Nagios's formula, hand-computed for each sequence."""
    assert percent_state_change(history) == pytest.approx(expected, abs=1e-5)


def test_textbook_values_are_exact() -> None:
    """6.25, 3.75 and 100 come out exactly, so thresholds at those values compare reliably."""
    assert percent_state_change(changes_at(20)) == 6.25
    assert percent_state_change(changes_at(1)) == 3.75
    assert percent_state_change(changes_at(*range(1, 21))) == 100.0


def test_short_history_counts_as_padded_with_its_oldest_state() -> None:
    """A buffer of n < 21 entries measures like the 21-slot buffer padded on the old side."""
    short = [WARN, WARN, OK, CRIT, CRIT, OK]
    padded = [WARN] * (HISTORY_SIZE - len(short)) + short
    assert percent_state_change(short) == percent_state_change(padded)


def test_only_the_newest_21_entries_count() -> None:
    """Changes that fell out of the 21-entry window no longer count."""
    old_swings = [OK, CRIT] * 10
    assert percent_state_change([*old_swings, *([OK] * 21)]) == 0.0


def test_record_keeps_the_newest_21_in_order() -> None:
    """record() appends as the newest entry and drops the oldest beyond 21."""
    history: tuple[CheckState, ...] = ()
    states = [OK, CRIT, WARN] * 8  # 24 states
    for state in states:
        history = record(history, state)
    assert history == tuple(states[-HISTORY_SIZE:])
    assert record((OK,), CRIT) == (OK, CRIT)
    assert record([], OK) == (OK,)


@pytest.mark.parametrize(
    ("flapping", "pct", "expected"),
    [
        (False, 20.0, True),  # reaching high starts
        (False, 19.9, False),  # between: stays off
        (True, 19.9, True),  # between: stays on
        (True, 5.1, True),
        (True, 5.0, False),  # reaching low stops
        (False, 0.0, False),
        (True, 100.0, True),
    ],
)
def test_next_flapping_has_hysteresis(flapping: bool, pct: float, expected: bool) -> None:
    """Flapping starts at >= high, stops at <= low, and keeps its value strictly between."""
    assert next_flapping(flapping, pct, low=5.0, high=20.0) is expected
