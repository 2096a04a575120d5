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


def test_act_late_plays_a_slow_helpdesk_that_acts_after_the_client_gave_up() -> None:
    """`alertd sandbox --act-late 3`: a create whose client stops waiting after 0.2 s still
    takes effect (the ticket is listed afterwards); a bad value is refused with exit 2."""
    bad = subprocess.run(
        [*ALERTD, "sandbox", "--act-late", "-1"], capture_output=True, text=True, timeout=30
    )
    assert bad.returncode == 2
    assert "--act-late" in bad.stderr
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "ALERTD_SANDBOX_API_KEY"}
    proc = subprocess.Popen(
        [*ALERTD, "sandbox", "--listen", f"127.0.0.1:{port}", "--act-late", "3"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    auth = {"Authorization": "Basic " + base64.b64encode(b"sandbox-key:X").decode()}
    try:
        _listing(base, auth)  # up (reads are not late)
        request = urllib.request.Request(
            f"{base}/api/v2/tickets",
            data=json.dumps(TICKET).encode(),
            headers={"Content-Type": "application/json", **auth},
        )
        try:
            urllib.request.urlopen(request, timeout=0.2)
            raise AssertionError("a late create answered before the client gave up")
        except TimeoutError:
            pass
        assert _listing(base, auth) == []  # not yet
        deadline = time.monotonic() + 30
        while not (tickets := _listing(base, auth)):
            assert time.monotonic() < deadline, "the late create never took effect"
            time.sleep(0.2)
        assert [t["subject"] for t in tickets] == [TICKET["subject"]]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


def _listing(base: str, auth: dict[str, str]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while True:
        try:
            request = urllib.request.Request(f"{base}/api/v2/tickets", headers=auth)
            with urllib.request.urlopen(request, timeout=5) as answer:
                return list(json.load(answer))
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline, "the sandbox never answered"
            time.sleep(0.05)
