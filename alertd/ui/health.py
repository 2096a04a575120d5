"""The health strip at the top of every console page: the `/readyz` checks, the outbox
(pending, the oldest one's age, dead letters), the helpdesk's rate-limit headroom, results/s."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from alertd.http.health import READINESS_TIMEOUT
from alertd.http.keys import CLOCK, RATE_LIMITER, READINESS, STORE, ReadinessCheck
from alertd.ui.console import CONSOLE, results_total


@dataclass(frozen=True, slots=True)
class Strip:
    problems: list[str]  # failed readiness checks, "name: why"; [] = ready
    checks: int
    pending: int
    oldest_age: float | None  # seconds; None when nothing is pending
    dead: int
    headroom: int | None  # helpdesk calls left this minute; None without a helpdesk
    budget: int | None
    results_per_second: float | None  # None until two samples a second apart


async def strip(request: web.Request) -> Strip:
    checks = request.app[READINESS].copy()
    answers = await asyncio.gather(*(_run(c) for c in checks))
    problems = [f"{c.name}: {a}" for c, a in zip(checks, answers, strict=True) if a]
    stats = await request.app[STORE].outbox_stats()
    oldest = stats["oldest_pending"]
    now = request.app[CLOCK].now()
    limiter = request.app.get(RATE_LIMITER)
    return Strip(
        problems=problems,
        checks=len(checks),
        pending=stats["pending"],
        oldest_age=None if oldest is None else max(0.0, (now - oldest).total_seconds()),
        dead=stats["dead"],
        headroom=None if limiter is None else limiter.headroom(),
        budget=None if limiter is None else limiter.per_minute,
        results_per_second=request.app[CONSOLE].results_rate.rate(results_total(request)),
    )


async def _run(check: ReadinessCheck) -> str | None:
    # As /readyz runs them: a probe that hangs or fails is a failed check, not a failed page.
    try:
        return await asyncio.wait_for(check.probe(), READINESS_TIMEOUT)
    except TimeoutError:
        return f"no answer within {READINESS_TIMEOUT:g}s"
    except Exception as exc:
        return f"check failed: {type(exc).__name__}: {exc}"
