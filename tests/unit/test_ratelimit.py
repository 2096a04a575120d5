"""The helpdesk rate limiter, on a simulated clock: the budget holds in every minute."""

from __future__ import annotations

from alertd.ratelimit import WINDOW, RateLimiter


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
