"""How the console writes times and durations: short, for a wallboard read from afar."""

from __future__ import annotations

from datetime import UTC, datetime


def span(seconds: float | None) -> str:
    """`45s`, `12m`, `3h 5m`, `2d 4h`: two units at most."""
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h}h {m}m" if m else f"{h}h"
    d, h = divmod(s // 3600, 24)
    return f"{d}d {h}h" if h else f"{d}d"


def ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    delta = (now - moment).total_seconds()
    return f"{span(delta)} ago" if delta >= 0 else f"in {span(-delta)}"


def when(moment: datetime | None) -> str:
    """An absolute time, UTC, to the second."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
