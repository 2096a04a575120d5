"""Helpers for tests that run `alertd run` as a real process (signals, sd_notify, shutdown)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from alertd.inbox_file import waiting

ALERTD = [sys.executable, "-m", "alertd.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    config: Path, env: Mapping[str, str] | None = None, python: Sequence[str] = ALERTD[:1]
) -> subprocess.Popen[str]:
    """`alertd run --config config` with the test's env + `env`; its stderr (JSON log lines)
    goes to `log_file(config)`, not a pipe: a full pipe would stall the daemon's event loop.
    `python` is the interpreter command (a wrapper that sets up the process, then execs)."""
    full = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "ALERTD_TOKENS")}
    full.update(env or {})
    with log_file(config).open("w") as stderr:
        return subprocess.Popen(
            [*python, *ALERTD[1:], "run", "--config", str(config)],
            stderr=stderr,
            text=True,
            env=full,
        )


def log_file(config: Path) -> Path:
    return config.with_suffix(".log")


def stop(proc: subprocess.Popen[str], timeout: float = 30.0) -> int:
    """Wait for the process to exit (killing it after `timeout`); its exit code."""
    try:
        return proc.wait(timeout)
    finally:
        proc.kill()
        proc.wait()


def wait_ready(base: str, proc: subprocess.Popen[str], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{base}/readyz", timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, "daemon exited before it was ready"
            assert time.monotonic() < deadline, "daemon never became ready"
            time.sleep(0.05)


async def listener(reply: bytes) -> tuple[asyncio.Server, str, list[bytes]]:
    """A bare HTTP peer on loopback: records what each connection sent, answers `reply`."""
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read(65536))
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen


class IngestDaemon:
    """A real `alertd run` on a store in `base`, bearer token `token`, no helpdesk: what tests of
    the write path kill, restart and read back (`store`: more `[store]` lines)."""

    def __init__(self, base: Path, token: str, store: str = "") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = base / "alertd.db"
        self.config = base / "alertd.toml"
        self.config.write_text(
            f'[server]\nlisten = "127.0.0.1:{self.port}"\n[store]\npath = "{self.db}"\n{store}'
            f'[auth]\ntokens = ["{token}"]\n'
        )
        self.proc: subprocess.Popen[str] | None = None

    async def start(self) -> None:
        self.proc = start(self.config)
        await asyncio.to_thread(wait_ready, self.url, self.proc, 30.0)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(stop, proc) == 0

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def waiting_in_inbox(self) -> int:
        """Inbox rows acknowledged and not applied yet, as the files say (alertd.inbox)."""
        with sqlite3.connect(self.db) as db:
            (applied,) = db.execute("SELECT upto FROM inbox_applied").fetchone()
        return waiting(self.db, applied)
