"""[ui]: the web console at `/ui/` (alertd.ui): whether it is served, whether it offers actions,
and how its board pages and refreshes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from alertd.config.reader import _bool, _duration, _int, _Table

# A page bigger than this makes the board slow to render and to read on a wallboard.
MAX_PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class UiConfig:
    enabled: bool = True
    # A wallboard: everything is shown, no action is offered, and action requests are refused.
    read_only: bool = False
    page_size: int = 50
    refresh: timedelta = timedelta(seconds=15)


def _ui(t: _Table) -> UiConfig:
    t.check_keys(("enabled", "read_only", "page_size", "refresh"))
    default = UiConfig()
    page_size = _int(t, "page_size", default.page_size, 1)
    if page_size > MAX_PAGE_SIZE:
        t.add("page_size", f"at most {MAX_PAGE_SIZE}, got {page_size}")
    refresh = _duration(t, "refresh", default.refresh)
    if refresh < timedelta(seconds=1):
        t.add("refresh", "at least 1s")
    return UiConfig(
        enabled=_bool(t, "enabled", default.enabled),
        read_only=_bool(t, "read_only", default.read_only),
        page_size=min(page_size, MAX_PAGE_SIZE),
        refresh=refresh,
    )
