"""The moment a helpdesk write leaves.

A helpdesk may act on a write after alertd stopped waiting for it (up to
`helpdesk.outcome_wait` later), so before a write whose outcome alertd may never hear leaves,
the dispatcher records until when that write can still land: only after that does it look
for the write's effect, and only then may it send the write again. The record has to be made
when the write really leaves, not when its operation starts: an operation is several calls
(a PUT, then its note), and each may first wait for the one before it or for a rate-limit
slot.

The dispatcher sets a hook for the task that carries out one operation (`on_write`); the
connector calls `before_write()` after its pacing and right before it sends any call that
changes the helpdesk. A context variable, because asyncio gives each task its own context:
concurrent operations each see their own hook, and calls made outside an operation none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Hook = Callable[[], Awaitable[None]]

_hook: ContextVar[Hook | None] = ContextVar("alertd_before_write", default=None)


async def before_write() -> None:
    """Called by a connector right before a write leaves: runs the current task's hook."""
    hook = _hook.get()
    if hook is not None:
        await hook()


@contextmanager
def on_write(hook: Hook) -> Iterator[None]:
    """Within this block (and this task), `hook` runs before each write leaves."""
    token = _hook.set(hook)
    try:
        yield
    finally:
        _hook.reset(token)
