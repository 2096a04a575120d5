"""The systemd notify protocol (sd_notify) with the standard library, and the watchdog pinger.

Owns the datagram socket to `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket) and
the messages alertd sends: READY, STATUS, RELOADING with MONOTONIC_USEC, STOPPING, WATCHDOG and,
while starting, EXTEND_TIMEOUT_USEC.
Without NOTIFY_SOCKET (not under systemd) every send does nothing. Send errors are ignored, as
sd_notify(3) recommends: a missing manager must never stop the daemon. The watchdog pings from
a task on the event loop itself, so a loop that stalls stops the pings and systemd restarts us.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Mapping

import structlog

log: structlog.typing.FilteringBoundLogger = structlog.get_logger(__name__)


class Notifier:
    """A client of the service manager's notify socket; create with `from_env`, then `close()`."""

    def __init__(self, address: str | None) -> None:
        """`address` as in NOTIFY_SOCKET; None (or an unsupported kind) disables notifying."""
        self._address = _socket_address(address)
        self._sock: socket.socket | None = None
        if self._address is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # A full receive queue must not block the event loop; the message is then dropped.
            sock.setblocking(False)
            self._sock = sock

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Notifier:
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def send(self, *fields: str) -> bool:
        """Send `KEY=VALUE` fields as one datagram; True if it left, False if not sent."""
        if self._sock is None or self._address is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            log.debug("sd_notify_failed", error=str(exc))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Startup or reload finished: the listener is bound and the store is open."""
        return self.send("READY=1", *_status(status))

    def status(self, status: str) -> bool:
        return self.send(*_status(status))

    def reloading(self, status: str | None = None) -> bool:
        """A reload begins; `ready()` ends it (the Type=notify-reload protocol)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *_status(status))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def extend_start(self, seconds: float, status: str) -> bool:
        """Still starting: the manager's start timeout moves to `seconds` from now."""
        return self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}", *_status(status))


def _status(text: str | None) -> tuple[str, ...]:
    # STATUS= is one line; a newline would start a new (bogus) field.
    return () if text is None else ("STATUS=" + " ".join(text.split()),)


def _socket_address(address: str | None) -> str | None:
    if not address:
        return None
    if address[0] == "@":
        return "\0" + address[1:]  # Linux abstract namespace
    if address[0] == "/":
        return address
    return None  # vsock:... is for VMs; not supported here


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between pings (half of WATCHDOG_USEC), or None when no watchdog is asked of us.

    WATCHDOG_PID, when set, names the process the watchdog is meant for; any other ignores it.
    """
    usec = env.get("WATCHDOG_USEC", "")
    target = env.get("WATCHDOG_PID", "")
    if target and target != str(pid):
        return None
    if not usec.isdigit() or int(usec) == 0:
        return None
    return int(usec) / 2 / 1_000_000


async def ping_watchdog(notifier: Notifier, interval: float) -> None:
    """Send WATCHDOG=1 now and every `interval` seconds until cancelled."""
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)


# While starting, the start timeout is pushed this far ahead, every third of it: a migration or
# a load of millions of incidents may outlast TimeoutStartSec (90 s by default), while a loop
# that stalls for this long still fails the start.
START_EXTENSION = 30.0


async def extend_start(notifier: Notifier, status: str) -> None:
    """Send EXTEND_TIMEOUT_USEC now and every third of `START_EXTENSION` until cancelled (once
    READY=1 is out)."""
    while notifier.enabled:
        notifier.extend_start(START_EXTENSION, status)
        await asyncio.sleep(START_EXTENSION / 3)


@contextlib.asynccontextmanager
async def watchdog(notifier: Notifier, interval: float | None) -> AsyncIterator[None]:
    """Ping for the duration of the block (no-op when `interval` is None)."""
    if interval is None or not notifier.enabled:
        yield
        return
    log.info("watchdog_enabled", interval_seconds=interval)
    task = asyncio.create_task(ping_watchdog(notifier, interval), name="alertd-watchdog")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
