"""Back to Nagios: a ticketed problem from Nagios is acknowledged in Nagios's command file
(`[nagios] ack_on_ticket`), read here from a real FIFO and a plain file in tmp_path."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from alertd.sandbox import Sandbox
from tests.support import CRIT, Client, deliver, post, sample

NAGIOS_HOST_DOWN = {
    "NAGIOS_NOTIFICATIONTYPE": "PROBLEM",
    "NAGIOS_HOSTNAME": "db-02",
    "NAGIOS_HOSTSTATE": "DOWN",
    "NAGIOS_HOSTSTATETYPE": "HARD",
    "NAGIOS_HOSTOUTPUT": "PING CRITICAL - 100% packet loss",
}


def _nagios_table(command_file: Path) -> str:
    return f'\n[nagios]\ncommand_file = "{command_file}"\nack_on_ticket = true\n'


async def _read_fifo(fd: int, lines: int) -> list[str]:
    """What Nagios would read from its command FIFO: `lines` whole lines (or fail)."""
    data = b""
    deadline = time.monotonic() + 10
    while data.count(b"\n") < lines:
        try:
            data += os.read(fd, 4096)
        except BlockingIOError:
            assert time.monotonic() < deadline, f"only {data!r} arrived"
            await asyncio.sleep(0.02)
    return data.decode().splitlines()


async def test_a_ticketed_nagios_problem_is_acknowledged_in_nagios_and_others_are_not(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], tmp_path: Path
) -> None:
    """A problem from a Nagios notification gets a sticky, silent acknowledgement naming its
    ticket and link, written whole to the command FIFO; one posted to the native API (not a
    Nagios object) gets none."""
    helpdesk, url = sandbox
    fifo = tmp_path / "nagios.cmd"
    os.mkfifo(fifo)
    # Nagios holds its FIFO open for reading; so does the test, without blocking.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        client = await start(_nagios_table(fifo))
        await post(client, CRIT)  # native API: source "api"
        response = await client.post("/api/v1/nagios", json=sample("nagios_notification_problem"))
        assert response.status == 202
        response = await client.post("/api/v1/nagios", json=NAGIOS_HOST_DOWN)
        assert response.status == 202
        await deliver(client)
        assert len(helpdesk.tickets) == 3
        lines = await _read_fifo(reader, 2)
        await asyncio.sleep(0.2)  # nothing follows for the native one
        with contextlib.suppress(BlockingIOError):
            assert os.read(reader, 4096) == b""
    finally:
        os.close(reader)

    listing = await (await client.get("/api/v1/incidents")).json()
    by_key = {i["key"]: i for i in listing["incidents"]}
    assert {k: i["source"] for k, i in by_key.items()} == {
        "web-01/HTTP": "api", "web-01/Disk /var": "nagios", "db-02": "nagios"
    }
    disk, host = by_key["web-01/Disk /var"], by_key["db-02"]
    svc_line = next(line for line in lines if "ACKNOWLEDGE_SVC_PROBLEM" in line)
    host_line = next(line for line in lines if "ACKNOWLEDGE_HOST_PROBLEM" in line)
    stamp, _, command = svc_line.partition("] ")
    assert stamp.startswith("[") and stamp[1:].isdigit()
    ticket = disk["ticket"]
    assert command == (
        "ACKNOWLEDGE_SVC_PROBLEM;web-01;Disk /var;2;0;1;alertd;"
        f"Ticket #{ticket['id']} {url}/a/tickets/{ticket['id']} (alertd incident {disk['id']})"
    )
    assert ticket["url"] == f"{url}/a/tickets/{ticket['id']}"
    assert host_line.partition("] ")[2].startswith(
        f"ACKNOWLEDGE_HOST_PROBLEM;db-02;2;0;1;alertd;Ticket #{host['ticket']['id']} "
    )
    # notify = 0: Nagios sends no ACKNOWLEDGEMENT notification, so alertd's own escalation
    # clock keeps running; the incident is not acknowledged in alertd.
    assert not disk["acknowledged"]


async def test_a_command_fifo_without_reader_never_blocks_alertd(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], tmp_path: Path
) -> None:
    """Nagios stopped (its FIFO has no reader): the acknowledgement is logged as failed at
    once and dropped; the ticket is created and the daemon goes on serving."""
    helpdesk, _ = sandbox
    fifo = tmp_path / "nagios.cmd"
    os.mkfifo(fifo)
    with structlog.testing.capture_logs() as logs:
        client = await start(_nagios_table(fifo))
        started = time.monotonic()
        response = await client.post("/api/v1/nagios", json=sample("nagios_notification_problem"))
        assert response.status == 202
        await deliver(client)
        deadline = time.monotonic() + 10
        while not any(e["event"] == "nagios_ack_failed" for e in logs):
            assert time.monotonic() < deadline, logs
            await asyncio.sleep(0.02)
        assert time.monotonic() - started < 5  # not the 5 s a full FIFO may take
        await post(client, CRIT)  # the writer still commits
    (failed,) = [e for e in logs if e["event"] == "nagios_ack_failed"]
    assert "no reader" in failed["reason"]
    assert len(helpdesk.tickets) == 1
    assert fifo.is_fifo()  # never replaced by a plain file


async def test_a_missing_command_file_is_never_created(
    start: Callable[..., Awaitable[Client]], tmp_path: Path
) -> None:
    """A command file that does not exist (Nagios makes its FIFO at start) stays absent: a plain
    file in its place would stop Nagios from starting."""
    missing = tmp_path / "rw" / "nagios.cmd"
    with structlog.testing.capture_logs() as logs:
        client = await start(_nagios_table(missing))
        response = await client.post("/api/v1/nagios", json=sample("nagios_notification_problem"))
        assert response.status == 202
        await deliver(client)
        deadline = time.monotonic() + 10
        while not any(e["event"] == "nagios_ack_failed" for e in logs):
            assert time.monotonic() < deadline, logs
            await asyncio.sleep(0.02)
    assert not missing.exists()
