"""The helpdesk rate limiter, on a simulated clock: the budget holds in every minute."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from alertd.ratelimit import MAX_PAUSE, WINDOW, CallClass, RateLimiter


class SimulatedTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 1e-6)


async def sends(limiter: RateLimiter, time: SimulatedTime, until: float) -> list[float]:
    stamps = []
    while time.now < until:
        await limiter.acquire()
        stamps.append(time.now)
    return stamps


async def test_no_minute_ever_sees_more_than_the_budget() -> None:
    """A storm gets a short burst, then an even pace, and never more than the budget in any
    sliding 60 seconds, so a fixed per-minute limit on the helpdesk side is never hit."""
    time = SimulatedTime()
    limiter = RateLimiter(200, clock=time.clock, sleep=time.sleep)
    stamps = await sends(limiter, time, time.now + 300)
    worst = max(sum(1 for t in stamps if s <= t < s + WINDOW) for s in stamps)
    assert worst <= 200
    assert len(stamps) >= 5 * 200 * 0.95  # and the budget is actually used
    assert sum(1 for t in stamps if t < 1001) < 50  # the burst is small


async def test_a_429_pauses_every_caller_until_retry_after() -> None:
    """After pause(30) nothing is let through for 30 seconds, whoever asks."""
    time = SimulatedTime()
    limiter = RateLimiter(600, clock=time.clock, sleep=time.sleep)
    await limiter.acquire()
    limiter.pause(30)
    paused_at = time.now
    await limiter.acquire()
    assert time.now >= paused_at + 30


async def test_the_helpdesks_own_count_slows_alertd_down() -> None:
    """A smaller X-RateLimit-Total than configured becomes the budget."""
    time = SimulatedTime()
    limiter = RateLimiter(600, clock=time.clock, sleep=time.sleep)
    limiter.observe(total=50, remaining=49)
    stamps = await sends(limiter, time, time.now + 120)
    assert max(sum(1 for t in stamps if s <= t < s + WINDOW) for s in stamps) <= 50


async def test_the_pace_recovers_when_the_helpdesk_announces_a_higher_limit() -> None:
    """After a lower announced limit, a higher one restores the configured budget (never
    more): 1,000/min configured, 10 announced, then 1,000 again."""
    time = SimulatedTime()
    limiter = RateLimiter(1000, clock=time.clock, sleep=time.sleep)
    limiter.observe(total=10, remaining=9)
    assert limiter.per_minute == 10
    limiter.observe(total=1000, remaining=999)
    stamps = await sends(limiter, time, time.now + 60)
    assert len(stamps) >= 900
    limiter.observe(total=5000, remaining=4999)
    assert limiter.per_minute == 1000  # alertd's configured share stays the ceiling


async def test_each_call_class_keeps_its_own_limit_beside_the_total() -> None:
    """List calls (the poll, the look-up by tag) stop at 20 a minute while creates go on."""
    time = SimulatedTime()

    async def sleep(seconds: float) -> None:
        await time.sleep(seconds)
        await asyncio.sleep(0)  # let the other caller run: both share the simulated clock

    limiter = RateLimiter(200, classes={CallClass.LIST: 20}, clock=time.clock, sleep=sleep)
    lists: list[float] = []
    creates: list[float] = []

    async def spend(call_class: CallClass, stamps: list[float]) -> None:
        while time.now < 1000 + 120:
            await limiter.acquire(call_class)
            stamps.append(time.now)
            await asyncio.sleep(0)

    await asyncio.gather(spend(CallClass.LIST, lists), spend(CallClass.CREATE, creates))
    assert max(sum(1 for t in lists if s <= t < s + WINDOW) for s in lists) <= 20
    assert len(creates) > len(lists)  # a full list class does not hold creates back


async def test_an_absurd_retry_after_is_bounded_and_logged() -> None:
    """`inf` or 1e12 seconds would stop delivery for good: the pause is at most MAX_PAUSE."""
    time = SimulatedTime()
    limiter = RateLimiter(600, clock=time.clock, sleep=time.sleep)
    with capture_logs() as logs:
        assert limiter.pause(float("inf")) == MAX_PAUSE
        assert limiter.pause(1e12) == MAX_PAUSE
    assert [e["event"] for e in logs] == ["helpdesk_retry_after_bounded"] * 2
    paused_at = time.now
    await limiter.acquire()
    assert paused_at + MAX_PAUSE <= time.now < paused_at + MAX_PAUSE + 5
