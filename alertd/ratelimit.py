"""Pacing of helpdesk calls: a token bucket at the configured budget for an even pace, a
sliding one-minute window that never lets more than the budget through in any 60 seconds
(so a burst cannot overrun a per-minute limit), a sliding window per call class for the
helpdesk's per-endpoint sub-limits, slowed (and sped up again, never past the configured
budget) by what the helpdesk reports (`X-RateLimit-*`), and stopped outright by a 429 until
its Retry-After ends.

Freshdesk counts its limit per account and per minute, shared with every other integration
of the account, and counts ticket creates, updates and lists against limits of their own
besides (docs/protocols.md section 1); alertd spends at most its configured share and never
sends a request while a Retry-After is running.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from enum import StrEnum

import structlog

log: structlog.typing.FilteringBoundLogger = structlog.get_logger(__name__)

# A minute and a second: the helpdesk counts a request when it arrives, a little after alertd
# let it go, so a window exactly 60 s long could let the 201st of 200 in at a window's edge.
WINDOW = 61.0
# The longest pause a Retry-After can impose. The helpdesk's window is one minute, so a real
# Retry-After is at most about 60 s; a larger one (`inf`, `1e12`, a clock gone wrong) would
# stop all delivery until a restart. After this long alertd simply asks again: if the helpdesk
# still refuses, the next 429 pauses it once more.
MAX_PAUSE = 300.0


# Set in a task that took a slot of the account total with `reserve()`: its next `acquire()`
# spends that slot. A context variable, because asyncio gives each task its own context, so a
# reservation belongs to the task (the dispatcher's worker) that made it.
_reserved: ContextVar[bool] = ContextVar("alertd_rate_slot_reserved", default=False)


class CallClass(StrEnum):
    """What a call counts against besides the account total: the helpdesk's sub-limits.

    The connector names the class of every call; the values are the config's names
    (`helpdesk.rate_limit_<class>_per_minute`)."""

    CREATE = "create"  # POST /tickets
    UPDATE = "update"  # PUT /tickets/{id}
    LIST = "list"  # GET /tickets, search: the ticket poll and the look-up by tag
    VIEW = "view"  # GET /tickets/{id} (Freshservice limits it; Freshdesk counts only the total)
    OTHER = "other"  # notes, conversations: the account total only


class _Window:
    """At most `limit` calls in any WINDOW seconds."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent: deque[float] = deque()

    def wait(self, now: float) -> float:
        """Seconds until one more call fits (0: now)."""
        while self.sent and self.sent[0] <= now - WINDOW:
            self.sent.popleft()
        return 0.0 if len(self.sent) < self.limit else self.sent[0] + WINDOW - now


class RateLimiter:
    def __init__(
        self,
        per_minute: int,
        *,
        classes: Mapping[CallClass, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._total = _Window(per_minute)
        self._classes: dict[CallClass, _Window] = {}
        self._updated = clock()
        self.paused_until = 0.0
        self._tokens = 0.0
        self._configure(per_minute, classes or {})
        self._tokens = self._capacity

    @property
    def per_minute(self) -> int:
        """The budget in force: the configured one, or less while the helpdesk says so."""
        return self._total.limit

    def _configure(self, per_minute: int, classes: Mapping[CallClass, int]) -> None:
        self.configured = per_minute
        self._set_total(per_minute)
        for call_class, limit in classes.items():
            window = self._classes.setdefault(call_class, _Window(limit))
            window.limit = limit
        for call_class in set(self._classes) - set(classes):
            del self._classes[call_class]

    def _set_total(self, per_minute: int) -> None:
        self._total.limit = per_minute
        self._rate = per_minute / 60.0
        # A burst of ten seconds' worth: enough for a storm's first creates, small enough that
        # other integrations sharing the account's budget are not starved.
        self._capacity = max(1.0, per_minute / 6.0)
        self._tokens = min(self._tokens, self._capacity)

    def reconfigure(
        self, per_minute: int, classes: Mapping[CallClass, int] | None = None
    ) -> None:
        """A new configured budget (a reload); tokens already earned are kept, within it."""
        self._configure(per_minute, classes or {})

    def class_limit(self, call_class: CallClass) -> int | None:
        window = self._classes.get(call_class)
        return None if window is None else window.limit

    async def acquire(self, call_class: CallClass = CallClass.OTHER) -> None:
        """Wait until one request of `call_class` may be sent (spending this task's reserved
        slot of the total, if it holds one)."""
        total = not _reserved.get()
        _reserved.set(False)
        await self._take(self._classes.get(call_class), total=total)

    async def reserve(self) -> None:
        """Take one slot of the account total now, for this task's next `acquire()`.

        The dispatcher takes a slot first and only then picks the operation to spend it on,
        so the pick is by priority at the moment the slot frees, not when a round began."""
        await self._take(None, total=True)
        _reserved.set(True)

    def unreserve(self) -> None:
        """Give back this task's unspent reserved slot (nothing was due after all)."""
        if _reserved.get():
            _reserved.set(False)
            self._tokens = min(self._capacity, self._tokens + 1.0)
            if self._total.sent:
                self._total.sent.pop()

    async def _take(self, sub: _Window | None, *, total: bool) -> None:
        while True:
            now = self._clock()
            if now < self.paused_until:
                await self._sleep(self.paused_until - now)
                continue
            wait = max(
                self._total.wait(now) if total else 0.0,
                sub.wait(now) if sub is not None else 0.0,
            )
            if wait > 0:
                await self._sleep(wait)
                continue
            if total:
                self._refill(now)
                if self._tokens < 1.0:
                    await self._sleep((1.0 - self._tokens) / self._rate)
                    continue
                self._tokens -= 1.0
                self._total.sent.append(now)
            if sub is not None:
                sub.sent.append(now)
            return

    def pause(self, seconds: float) -> float:
        """A 429: no request at all until `seconds` from now (the longest pause wins).
        A Retry-After that is not a sane number of seconds is bounded (and logged); returns
        the pause actually taken."""
        bounded = seconds if math.isfinite(seconds) else MAX_PAUSE
        bounded = min(max(bounded, 0.0), MAX_PAUSE)
        if bounded != seconds:
            log.warning("helpdesk_retry_after_bounded", retry_after=str(seconds), pause=bounded)
        self.paused_until = max(self.paused_until, self._clock() + bounded)
        self._tokens = 0.0
        return bounded

    def observe(self, total: int | None, remaining: int | None) -> None:
        """Follow the helpdesk's own count, both ways: a smaller announced limit becomes the
        budget, and a larger one later restores it (never beyond the configured share)."""
        if total is not None and total > 0:
            budget = min(total, self.configured)
            if budget != self._total.limit:
                log.info("helpdesk_rate_limit_followed", announced=total, budget=budget)
                self._set_total(budget)
        if remaining is not None and total and remaining <= max(1, total // 20):
            self._tokens = min(self._tokens, 0.0)

    def headroom(self) -> int:
        """Requests the budget still allows in the current one-minute window (0 while paused)."""
        now = self._clock()
        if now < self.paused_until:
            return 0
        return max(0, self.per_minute - sum(1 for sent in self._total.sent if sent > now - WINDOW))

    def _refill(self, now: float) -> None:
        elapsed = now - self._updated
        self._updated = now
        self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
