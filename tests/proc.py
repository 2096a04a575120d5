"""Helpers for tests that run `alertd run` as a real process (signals, sd_notify, shutdown)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

ALERTD = [sys.executable, "-m", "alertd.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(config: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """`alertd run --config config`, stderr captured (JSON log lines), the test's env + `env`."""
    full = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "ALERTD_TOKENS")}
    full.update(env or {})
    return subprocess.Popen(
        [*ALERTD, "run", "--config", str(config)], stderr=subprocess.PIPE, text=True, env=full
    )


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
