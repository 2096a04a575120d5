"""`alertd sandbox` as a process: what a user running it beside a daemon relies on."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

from tests.support.proc import ALERTD, free_port

TICKET = {
    "email": "noc@example.com",
    "subject": "[CRITICAL] web-01 / HTTP",
    "description": "<p>connection refused</p>",
    "status": 2,
    "priority": 3,
    "source": 2,
}


def _create_ticket(base: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    auth = base64.b64encode(b"sandbox-key:X").decode()
    request = urllib.request.Request(
        f"{base}/api/v2/tickets",
        data=json.dumps(TICKET).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Basic {auth}"},
    )
    while True:
        try:
            with urllib.request.urlopen(request, timeout=2) as answer:
                return dict(json.load(answer))
        except urllib.error.HTTPError:
            raise  # an answer: the sandbox is up and refused the ticket
        except (urllib.error.URLError, ConnectionError):  # not listening yet
            assert time.monotonic() < deadline, "the sandbox never answered"
            time.sleep(0.05)


def _one_run(port: int) -> int:
    env = {k: v for k, v in os.environ.items() if k != "ALERTD_SANDBOX_API_KEY"}
    proc = subprocess.Popen(
        [*ALERTD, "sandbox", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        return int(_create_ticket(f"http://127.0.0.1:{port}")["id"])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


def test_a_restarted_sandbox_never_hands_out_an_id_again() -> None:
    """A daemon links incidents to ticket ids; after the sandbox restarts (forgetting its
    tickets), a new ticket must not reuse an id the daemon already holds for another one."""
    port = free_port()
    first = _one_run(port)
    second = _one_run(port)
    assert second > first
