"""The duration syntax ("30s", "5m", "2h", "1d", "1h30m"): used by the file's timers, and by
silences and heartbeats wherever their API takes a length of time."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")


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
