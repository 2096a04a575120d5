"""[lifecycle]: the thresholds and timers of an incident's life (open, recovery, reopen, flapping,
history, staleness), read into a `LifecyclePolicy` without its priority part."""

from __future__ import annotations

from datetime import timedelta

from alertd.config.reader import _duration, _int, _percent, _Table
from alertd.policy import LifecyclePolicy


def _lifecycle(t: _Table) -> LifecyclePolicy:
    """The lifecycle thresholds and timers; the caller adds the priority policy."""
    t.check_keys(
        ("open_after", "recovery_hold", "reopen_window", "flap_low", "flap_high", "history_limit",
         "stale_after")
    )  # fmt: skip
    default = LifecyclePolicy()
    open_after = _int(t, "open_after", default.open_after, 1)
    recovery_hold = _duration(t, "recovery_hold", default.recovery_hold)
    reopen_window = _duration(t, "reopen_window", default.reopen_window)
    low = _percent(t, "flap_low", default.flap_low)
    high = _percent(t, "flap_high", default.flap_high)
    if low is not None and high is not None and low >= high:
        t.add("flap_low", f"must be less than {t.key('flap_high')} ({high}), got {low}")
    return LifecyclePolicy(
        open_after=open_after,
        recovery_hold=recovery_hold,
        reopen_window=reopen_window,
        flap_low=default.flap_low if low is None else low,
        flap_high=default.flap_high if high is None else high,
        history_limit=_int(t, "history_limit", default.history_limit, 1),
        stale_after=_stale_after(t),
    )


# The shortest `stale_after` accepted: a shorter one would call a check's own jitter silence.
MIN_STALE_AFTER = timedelta(minutes=1)


def _stale_after(t: _Table) -> timedelta | None:
    """`"auto"` (None: from each check's observed interval) or a duration of a minute or more."""
    if t.data.get("stale_after", "auto") == "auto":
        return None
    value = _duration(t, "stale_after", MIN_STALE_AFTER)
    if value < MIN_STALE_AFTER:
        t.add("stale_after", f'must be "auto" or at least 1m, got {t.data["stale_after"]!r}')
    return max(value, MIN_STALE_AFTER)
