"""The duration syntax ("30s", "5m", "2h", "1d", "1h30m") both ways.

Used by the config file's timers, by the silences and heartbeats APIs wherever they take a
length of time, and by ticket text. `format_duration` is the exact inverse of `parse_duration`;
`human` is the same syntax rounded for a person reading a ticket ("1h05m", "45s").
"""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def parse_duration(text: str) -> timedelta:
    """Parse "30s", "5m", "2h", "1d" or a combination in that order such as "1h30m"."""
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f'expected a duration like "30s", "5m", "2h" or "1d", got {text!r}')
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    try:
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError as exc:
        raise ValueError(f"duration too long, got {text!r}") from exc


def format_duration(span: timedelta) -> str:
    """The inverse of `parse_duration`, whole seconds: "1h30m", "2d", "45s"."""
    seconds = int(span.total_seconds())
    parts = []
    for unit, size in _UNITS:
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def human(span: timedelta) -> str:
    """At most two units, for people: "2d", "3h", "1h05m", "4m30s", "45s" (a round span in its
    largest unit; otherwise hours and minutes, or minutes and seconds)."""
    seconds = int(span.total_seconds())
    for unit, size in _UNITS[:3]:
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
