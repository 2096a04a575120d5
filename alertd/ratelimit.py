"""Pacing of helpdesk calls: a token bucket at the configured budget for an even pace, a
sliding one-minute window that never lets more than the budget through in any 60 seconds
(so a burst cannot overrun a per-minute limit), slowed by what the helpdesk reports
(`X-RateLimit-*`), and stopped outright by a 429 until its Retry-After ends.

Freshdesk counts its limit per account and per minute, shared with every other integration
of the account; alertd spends at most its configured share and never sends a request while a
Retry-After is running.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

# A minute and a second: the helpdesk counts a request when it arrives, a little after alertd
# let it go, so a window exactly 60 s long could let the 201st of 200 in at a window's edge.
WINDOW = 61.0


class RateLimiter:
    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        # A burst of ten seconds' worth: enough for a storm's first creates, small enough that
        # other integrations sharing the account's budget are not starved.
        self._capacity = max(1.0, per_minute / 6.0)
        self._tokens = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._sent: deque[float] = deque()  # send times within the last WINDOW seconds
        self.paused_until = 0.0

    def reconfigure(self, per_minute: int) -> None:
        """A new configured budget (a reload); tokens already earned are kept, within it."""
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._capacity = max(1.0, per_minute / 6.0)
        self._tokens = min(self._tokens, self._capacity)

    async def acquire(self) -> None:
        """Wait until one request may be sent."""
        while True:
            now = self._clock()
            if now < self.paused_until:
                await self._sleep(self.paused_until - now)
                continue
            while self._sent and self._sent[0] <= now - WINDOW:
                self._sent.popleft()
            if len(self._sent) >= self.per_minute:
                await self._sleep(self._sent[0] + WINDOW - now)
                continue
            self._refill(now)
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                self._sent.append(now)
                return
            await self._sleep((1.0 - self._tokens) / self._rate)

    def pause(self, seconds: float) -> None:
        """A 429: no request at all until `seconds` from now (the longest pause wins)."""
        self.paused_until = max(self.paused_until, self._clock() + max(seconds, 0.0))
        self._tokens = 0.0

    def observe(self, total: int | None, remaining: int | None) -> None:
        """Follow the helpdesk's own count: spend nothing more once it says little is left."""
        if total is not None and 0 < total < self.per_minute:
            self.per_minute, self._rate = total, total / 60.0
            self._capacity = max(1.0, total / 6.0)
        if remaining is not None and total and remaining <= max(1, total // 20):
            self._tokens = min(self._tokens, 0.0)

    def headroom(self) -> int:
        """Requests the budget still allows in the current one-minute window (0 while paused)."""
        now = self._clock()
        if now < self.paused_until:
            return 0
        return max(0, self.per_minute - sum(1 for sent in self._sent if sent > now - WINDOW))

    def _refill(self, now: float) -> None:
        elapsed = now - self._updated
        self._updated = now
        self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
