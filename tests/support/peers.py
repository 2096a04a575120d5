"""Real peers (Nagios, Alertmanager) for end-to-end tests: finding their programs, and waiting
for something to become true while they run.

A peer that is not installed skips its test with a one-line reason on a developer's machine;
under `CI=true` it fails the test instead, because CI installs every peer (.ci/run) and a
silent skip there would hide that the suite no longer tests against the real thing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_binary(program: str, package: str) -> Path:
    """The path of `program` (an absolute path or a name on PATH), or skip the test (fail under
    CI=true) with a one-line reason naming the Debian package that provides it."""
    found = shutil.which(program)
    if found is not None:
        return Path(found)
    reason = f"{program} not found: apt-get install {package}"
    if in_ci():
        pytest.fail(f"CI=true needs every real peer; {reason}", pytrace=False)
    pytest.skip(reason)


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    what: str,
    within: float = 30.0,
    interval: float = 0.2,
    explain: Callable[[], Awaitable[str]] | None = None,
) -> T:
    """Poll `probe` until it returns something other than None (or False), and return that.
    A deadline, not a sleep: on a loaded machine a peer may take seconds for what usually
    takes milliseconds, and the test should wait exactly as long as that takes. On timeout the
    failure says `what` was awaited, plus `explain()` (the state seen last) when given."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            seen = await explain() if explain is not None else ""
            raise AssertionError(f"timed out after {within:.0f}s waiting for {what}\n{seen}")
        await asyncio.sleep(interval)
