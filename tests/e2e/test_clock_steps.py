"""A real daemon whose wall clock is stepped (issue 11: timers and windows survive clock steps).

`alertd run` with `ALERTD_TEST_WALL_OFFSET_FILE` (alertd.wallshift, test only): the test writes
an offset in seconds to that file and the daemon's wall clock moves by it.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alertd.sandbox import Sandbox
from alertd.wallshift import ENV
from tests.support.daemon import TOKEN, Daemon, describe, live_helpdesk, tickets
from tests.support.peers import eventually
from tests.support.proc import log_file, start

helpdesk = live_helpdesk


@pytest.fixture
async def stepped(tmp_path: Path, helpdesk: tuple[Sandbox, str]) -> AsyncIterator[Daemon]:
    """A daemon (recovery hold 3 s, reopen window 1 h) whose wall clock the test can step."""
    daemon = Daemon(tmp_path / "alertd", helpdesk[1])
    offset = tmp_path / "wall-offset"
    offset.write_text("0\n")
    daemon.env[ENV] = str(offset)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


def step(daemon: Daemon, seconds: float) -> None:
    """Set the daemon's wall clock `seconds` away from the real one (a new file each time, so
    its change is seen whatever the file system's time resolution)."""
    path = Path(daemon.env[ENV])
    fresh = path.with_suffix(".new")
    fresh.write_text(f"{seconds}\n")
    os.replace(fresh, path)


async def post(daemon: Daemon, result: dict[str, Any]) -> None:
    def send() -> int:
        request = urllib.request.Request(
            daemon.url + "/api/v1/results", data=json.dumps(result).encode(), method="POST",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)

    assert await asyncio.to_thread(send) == 202


async def test_a_step_forward_and_back_keeps_one_ticket_for_one_problem(
    stepped: Daemon, helpdesk: tuple[Sandbox, str]
) -> None:
    """db-01 goes DOWN (a ticket), recovers and resolves (ticket resolved); the wall clock
    jumps two hours ahead, past the reopen window, and is put back a moment later. db-01 goes
    DOWN again: the same incident reopens and the same ticket is reopened. Before, the jump
    dropped the resolved incident from memory, the clock then stood still two hours ahead, and
    the second outage opened a second incident with a second ticket."""
    sandbox, _ = helpdesk
    daemon = stepped
    down = {"host": "db-01", "state": "DOWN", "output": "no route"}

    async def explain() -> str:
        return describe(await daemon.incidents(), sandbox)

    await post(daemon, down)
    await eventually(lambda: _value(len(sandbox.tickets) == 1), "the ticket", explain=explain)
    await post(daemon, {**down, "state": "UP", "output": "ok"})
    await eventually(
        lambda: _value(tickets(sandbox)[0]["status"] in (4, 5)), "the ticket resolved",
        explain=explain,
    )  # fmt: skip
    first = (await daemon.incidents())["db-01"]
    assert first["status"] == "resolved"

    step(daemon, 2 * 3600)  # past the reopen window (1 h)
    await asyncio.sleep(0.3)
    # A commit looks at every timer due: before, this one dropped db-01 from memory.
    await post(daemon, {"host": "web-07", "state": "UP", "output": "ok"})
    step(daemon, 0)
    await asyncio.sleep(0.3)

    await post(daemon, down)
    await eventually(
        lambda: _value(tickets(sandbox)[0]["status"] == 2 or len(sandbox.tickets) > 1),
        "the ticket reopened (or a second one)", explain=explain,
    )  # fmt: skip
    again = (await daemon.incidents())["db-01"]
    assert len(sandbox.tickets) == 1, await explain()
    assert again["id"] == first["id"] and again["status"] == "open"
    assert again["reopen_count"] == 1


async def _value(ok: bool) -> bool:
    return ok


async def test_a_bad_offset_file_keeps_the_daemon_from_starting(tmp_path: Path) -> None:
    """The test clock fails closed: an offset file others may write is refused at start."""
    daemon = Daemon(tmp_path / "alertd", "http://127.0.0.1:9")
    offset = tmp_path / "wall-offset"
    offset.write_text("0\n")
    offset.chmod(0o666)
    proc = start(daemon.config, {ENV: str(offset)})
    code = await asyncio.to_thread(proc.wait, 30)
    assert code != 0
    assert "writable by nobody else" in log_file(daemon.config).read_text()
