"""Nagios-style flap detection: the weighted percent state change over the last 21 recorded states.

Follows Nagios Core 4 `base/flapping.c` (docs/protocols.md 5.2). Which results are recorded (HARD
states and soft recoveries) is the caller's decision; this module only keeps the buffer, measures
it and applies the start/stop thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence

from alertd.model import CheckState

# Nagios's MAX_STATE_HISTORY_ENTRIES: 21 states, hence 20 transitions.
HISTORY_SIZE = 21
_TRANSITIONS = HISTORY_SIZE - 1

# The weight of transition i (1 = oldest .. 20 = newest) is 0.75 + (i-1) * 0.5/19, which is
# (55 + 2i) / 76. Summing the integer numerators and dividing once gives the exact textbook
# values (6.25, 3.75, 100.0) instead of a float sum that lands an ulp off a threshold.
_NUMERATORS = tuple(55 + 2 * i for i in range(1, HISTORY_SIZE))
_DENOMINATOR = 76 * _TRANSITIONS


def percent_state_change(history: Sequence[CheckState]) -> float:
    """Weighted share of the 20 transitions in `history` (oldest first) where the state changed.

    With fewer than 21 entries the buffer counts as padded on the old side with its oldest
    state, as Nagios fills it with the current state: padding adds only unchanged transitions,
    so the real ones keep the weights of their positions at the newest end.
    """
    size = len(history)
    if size > HISTORY_SIZE:
        history = history[size - HISTORY_SIZE :]
        size = HISTORY_SIZE
    # Numerator index of the first real transition (between history[0] and history[1]).
    offset = HISTORY_SIZE - size - 1
    total = 0
    previous = history[0] if size else None
    for position in range(1, size):
        current = history[position]
        if current != previous:
            total += _NUMERATORS[offset + position]
        previous = current
    return total * 100 / _DENOMINATOR


def record(history: Sequence[CheckState], state: CheckState) -> tuple[CheckState, ...]:
    """`history` with `state` appended as the newest entry, keeping the last 21."""
    return (*history[max(0, len(history) - _TRANSITIONS) :], state)


def next_flapping(flapping: bool, pct: float, low: float, high: float) -> bool:
    """Start flapping at `pct >= high`, stop at `pct <= low`, else keep the flag (hysteresis)."""
    if pct >= high:
        return True
    if pct <= low:
        return False
    return flapping
