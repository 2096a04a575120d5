"""Delivery under faults, with alertd as a real process and the sandbox on loopback: a slow
helpdesk that acts after alertd died, a second daemon on the same store, an outage and its end.

Deadlines here are generous ceilings for the test, not speed claims (bench/ has the figures).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from alertd.sandbox import SANDBOX, Sandbox, SandboxOptions, create_app
from tests.support import CRIT, KEY, calls, notes_text
from tests.support.proc import free_port, log_file, start

MARKER = re.compile(r"alertd-op-(\d+)")


class Daemon:
    """`alertd run` on a config in tmp_path whose [helpdesk] is the sandbox."""

    def __init__(self, tmp_path: Path, helpdesk_url: str, extra: str = "") -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        (tmp_path / "key").write_text(KEY)
        self.config = tmp_path / f"alertd-{self.port}.toml"
        self.config.write_text(
            f'[server]\nlisten = "127.0.0.1:{self.port}"\n[store]\npath = "{tmp_path / "a.db"}"\n'
            "[auth]\ndisabled = true\n"
            f'[helpdesk]\nurl = "{helpdesk_url}"\nrequester_email = "noc@example.com"\n'
            f'api_key_file = "{tmp_path / "key"}"\npoll_interval = "0s"\n'
            f'service_grace = "0s"\n{extra}'
        )
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> subprocess.Popen[str]:
        self.proc = start(self.config)
        return self.proc

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    async def http(self, method: str, path: str, body: Any = None) -> Any:
        def call() -> Any:
            data = None if body is None else json.dumps(body).encode()
            request = urllib.request.Request(
                self.base + path, data, {"Content-Type": "application/json"}, method=method
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())

        return await asyncio.to_thread(call)

    async def up(self) -> bool:
        """Up and loaded: while the store loads, /healthz answers with `"starting": true`."""
        try:
            return "starting" not in await self.http("GET", "/healthz")
        except OSError:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            return False

    async def counts(self) -> dict[str, int]:
        return dict((await self.http("GET", "/api/v1/outbox"))["counts"])

    def log(self) -> str:
        return log_file(self.config).read_text()[-3000:]


async def until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def helpdesk(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
) -> AsyncIterator[tuple[Sandbox, str]]:
    app = create_app(SandboxOptions(api_key=KEY, rate_limit_per_minute=1000))
    server = await aiohttp_server(app)
    yield app[SANDBOX], str(server.make_url("")).rstrip("/")


def outbox_rows(tmp_path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tmp_path / "a.db") as db:
        return db.execute("SELECT id, op, state, started FROM outbox ORDER BY id").fetchall()


async def test_a_create_the_helpdesk_finishes_after_alertd_died_is_adopted_not_repeated(
    helpdesk: tuple[Sandbox, str], tmp_path: Path
) -> None:
    """The helpdesk takes 4 s to act on a create; alertd is SIGKILLed mid-call and restarted
    at once. The restarted daemon does not look (and create again) before the first request
    can no longer land: it finds the late ticket and adopts it. One ticket, notes on it."""
    sandbox, url = helpdesk
    daemon = Daemon(tmp_path, url, 'timeout = "2s"\noutcome_wait = "3s"\n')
    sandbox.act_late(4.0)
    daemon.start()
    try:
        await until(daemon.up, "alertd to start")
        await daemon.http("POST", "/api/v1/results", CRIT)

        async def sending() -> bool:
            return [r[3] for r in outbox_rows(tmp_path)] == [1]

        await until(sending, "the create to be marked started")
        await asyncio.sleep(0.5)  # the request is with the helpdesk, which has not acted yet
        daemon.kill()
        assert sandbox.tickets == {}
        daemon.start()  # as systemd's Restart= would, before the helpdesk has acted
        await until(daemon.up, "alertd to restart")
        await daemon.http("POST", "/api/v1/results", {**CRIT, "state": "OK"})

        async def drained() -> bool:
            return await daemon.counts() == {"pending": 0, "done": 2, "dead": 0}

        await until(drained, "the outbox to drain")
    finally:
        daemon.kill()
    (ticket_id,) = sandbox.tickets
    assert calls(sandbox).count("POST /tickets") == 1
    assert len(sandbox.notes[ticket_id]) == 1  # the recovery note reached the one ticket


async def test_a_resolve_in_flight_at_a_kill_lands_once_and_before_the_reopen(
    helpdesk: tuple[Sandbox, str], tmp_path: Path
) -> None:
    """bench/soak.py's properties in one deterministic run. The helpdesk acts on writes 8 s
    late; alertd is SIGKILLed while its resolve (a PUT, then a note) is with the helpdesk, and
    restarted at once; the helpdesk is quick again, and the problem comes back. The old
    resolve lands late; the restarted daemon neither repeats its note nor lets the late PUT
    overwrite the reopening: the ticket's statuses land resolve -> open, each note once, and
    the ticket ends Open like its incident."""
    sandbox, url = helpdesk
    daemon = Daemon(
        tmp_path,
        url,
        'timeout = "10s"\noutcome_wait = "2s"\n'
        '[lifecycle]\nrecovery_hold = "1s"\nreopen_window = "1h"\n',
    )
    daemon.start()
    try:
        await until(daemon.up, "alertd to start")
        await daemon.http("POST", "/api/v1/results", CRIT)

        async def created() -> bool:
            return await daemon.counts() == {"pending": 0, "done": 1, "dead": 0}

        await until(created, "the ticket")
        sandbox.options.act_late = 8.0  # slow now; quick again after the restart
        await daemon.http("POST", "/api/v1/results", {**CRIT, "state": "OK"})

        async def resolving() -> bool:  # the resolve is marked started: it is being sent
            return any(op == "update" and started for _, op, _, started in outbox_rows(tmp_path))

        await until(resolving, "the resolve to be sent")
        await asyncio.sleep(0.5)  # with the helpdesk, which has not acted yet
        daemon.kill()
        (ticket_id,) = sandbox.tickets
        assert sandbox.tickets[ticket_id]["status"] == 2
        sandbox.options.act_late = 0.5
        daemon.start()
        await until(daemon.up, "alertd to restart")
        await daemon.http("POST", "/api/v1/results", CRIT)  # back within the reopen window

        async def drained() -> bool:
            counts = await daemon.counts()
            return counts["pending"] == 0 and not sandbox._acting

        await until(drained, "the outbox to drain", seconds=60)
        incident = (await daemon.http("GET", "/api/v1/incidents"))["incidents"][0]
    finally:
        daemon.kill()
    assert incident["status"] == "open"
    assert list(sandbox.tickets) == [ticket_id]
    statuses = [a.body["status"] for a in sandbox.applied if "status" in a.body]
    assert statuses[0] == 2  # the create
    assert [s for n, s in enumerate(statuses) if n == 0 or s != statuses[n - 1]] == [2, 4, 2]
    assert sandbox.tickets[ticket_id]["status"] == 2
    markers = [m for m in (MARKER.search(b) for b in notes_text(sandbox, ticket_id)) if m]
    assert len(markers) == len({m[1] for m in markers}) >= 3  # recovering, resolved, reopened


async def test_a_note_that_leaves_late_in_its_operation_is_looked_for_only_once_it_landed(
    helpdesk: tuple[Sandbox, str], tmp_path: Path
) -> None:
    """Found by bench/soak.py --vary. An update is two writes, the PUT and then its note; each
    may wait (for the one before it, for a rate-limit slot) before it leaves. The helpdesk acts
    on each 5 s late (within alertd's 6 s timeout). alertd is SIGKILLed after the PUT landed,
    with the note in flight, and restarted at once, the helpdesk quick again: it must not look
    for the note before the note can have landed (its own send + timeout + outcome_wait, not
    the operation's start + timeout + outcome_wait), or it sends it again."""
    sandbox, url = helpdesk
    daemon = Daemon(
        tmp_path,
        url,
        'timeout = "6s"\noutcome_wait = "2s"\n'
        '[lifecycle]\nrecovery_hold = "1s"\nreopen_window = "1h"\n',
    )
    daemon.start()
    try:
        await until(daemon.up, "alertd to start")
        await daemon.http("POST", "/api/v1/results", CRIT)

        async def created() -> bool:
            return await daemon.counts() == {"pending": 0, "done": 1, "dead": 0}

        await until(created, "the ticket")
        sandbox.options.act_late = 5.0
        await daemon.http("POST", "/api/v1/results", {**CRIT, "state": "OK"})

        async def resolved() -> bool:  # the resolve's PUT took effect; its note is on its way
            return any(a.body.get("status") == 4 for a in sandbox.applied)

        await until(resolved, "the resolve's PUT to land")
        await asyncio.sleep(0.3)
        daemon.kill()
        sandbox.options.act_late = 0.2  # quick again: the look itself is not slowed down
        daemon.start()
        await until(daemon.up, "alertd to restart")

        async def drained() -> bool:
            counts = await daemon.counts()
            return counts["pending"] == 0 and not sandbox._acting

        await until(drained, "the outbox to drain", seconds=60)
    finally:
        daemon.kill()
    (ticket_id,) = sandbox.tickets
    markers = [m[1] for m in (MARKER.search(b) for b in notes_text(sandbox, ticket_id)) if m]
    assert len(markers) == 2  # recovering, resolved
    assert len(set(markers)) == 2, markers
    assert sandbox.tickets[ticket_id]["status"] == 4


async def test_an_update_whose_put_landed_unanswered_goes_on_to_its_note(
    helpdesk: tuple[Sandbox, str], tmp_path: Path
) -> None:
    """Found by bench/soak.py --late 12 (a helpdesk slower than alertd's timeout). The
    resolve's PUT lands, but after alertd stopped waiting; sending it again would time out
    again (for ever, with every PUT that slow), and its note would never go. The next
    attempt reads the ticket first, sends only what it does not hold yet (here nothing),
    and goes on to the note."""
    sandbox, url = helpdesk
    daemon = Daemon(
        tmp_path,
        url,
        'timeout = "2s"\noutcome_wait = "4s"\n'
        '[lifecycle]\nrecovery_hold = "1s"\nreopen_window = "1h"\n',
    )
    daemon.start()
    try:
        await until(daemon.up, "alertd to start")
        await daemon.http("POST", "/api/v1/results", CRIT)

        async def created() -> bool:
            return await daemon.counts() == {"pending": 0, "done": 1, "dead": 0}

        await until(created, "the ticket")
        # The resolve's PUTs land 3 s late, after alertd's 2 s timeout: the connector's own
        # three tries, and as many again if the next attempt sent it again.
        sandbox.act_late(3.0, 6, kind="update")
        await daemon.http("POST", "/api/v1/results", {**CRIT, "state": "OK"})

        async def drained() -> bool:
            return await daemon.counts() == {"pending": 0, "done": 3, "dead": 0}

        # The lost answer waits out the first backoff (24-36 s), then one look; a repeated PUT
        # would time out too and wait out the second (48-72 s).
        await until(drained, "the recovery's note and the resolve", seconds=55)
    finally:
        daemon.kill()
    (ticket_id,) = sandbox.tickets
    assert sandbox.tickets[ticket_id]["status"] == 4
    assert len(notes_text(sandbox, ticket_id)) == 2  # recovering, resolved: each once
    assert sum(1 for a in sandbox.applied if a.kind == "update") == 3  # the first attempt's


async def test_a_second_daemon_on_the_same_store_sends_nothing_and_exits(
    helpdesk: tuple[Sandbox, str], tmp_path: Path
) -> None:
    """A second `alertd run` on a store in use (another port, so binding would succeed) is
    refused before its dispatcher starts: it sends nothing, says why, exits 1."""
    sandbox, url = helpdesk
    first = Daemon(tmp_path, url)
    first.start()
    try:
        await until(first.up, "the first alertd to start")
        sandbox.act_late(2.0)  # the first daemon's create is in flight when the second starts
        await first.http("POST", "/api/v1/results", CRIT)
        second = Daemon(tmp_path, url)
        proc = second.start()
        assert proc.wait(timeout=20) == 1
        assert "in use by another alertd" in second.log()

        async def drained() -> bool:
            return await first.counts() == {"pending": 0, "done": 1, "dead": 0}

        await until(drained, "the first daemon's create")
    finally:
        first.kill()
    assert len(sandbox.tickets) == 1
    assert calls(sandbox).count("POST /tickets") == 1


async def test_after_an_outage_the_backlog_goes_out_when_the_helpdesk_is_back(
    helpdesk: tuple[Sandbox, str], tmp_path: Path
) -> None:
    """While the helpdesk answers 503, operations queue with their backoff (30 s and more).
    Once it answers again, alertd notices (a probe) and sends the backlog at once: urgent
    incidents' tickets first, each incident's operations in order, not after each backoff."""
    sandbox, url = helpdesk
    daemon = Daemon(tmp_path, url)
    daemon.start()
    try:
        await until(daemon.up, "alertd to start")
        sandbox.fail_next(10_000, 503)  # down until the faults are cleared
        for n in range(6):
            await daemon.http("POST", "/api/v1/results", {**CRIT, "host": f"web-{n}"})
        await daemon.http("POST", "/api/v1/results", {**CRIT, "host": "web-0", "state": "OK"})

        async def tried() -> bool:
            return sum(1 for r in sandbox.requests if r.path.endswith("/tickets")) >= 3

        await until(tried, "alertd to meet the outage")

        async def probed() -> bool:  # an outage, not one bad operation: a probe failed too
            return any(r.method == "GET" and r.path.endswith("/tickets") and r.status == 503
                       for r in sandbox.requests)  # fmt: skip

        # Not a fixed sleep: on a busy machine the first probe (1 s after the failure) could
        # come after the recovery, and then nothing was an outage to release.
        await until(probed, "a probe to meet the outage")
        assert sandbox.tickets == {}
        # When each operation would go again on its own, after its backoff (24-36 s at first).
        with sqlite3.connect(f"file:{tmp_path / 'a.db'}?mode=ro", uri=True) as db:
            due = [datetime.fromisoformat(at).timestamp() for (at,) in db.execute(
                "SELECT next_attempt_at FROM outbox WHERE state = 'pending'")]  # fmt: skip
        sandbox._faults.clear()  # the helpdesk is back
        back = len(sandbox.requests)

        async def drained() -> bool:
            return await daemon.counts() == {"pending": 0, "done": 7, "dead": 0}

        await until(drained, "the backlog after recovery", seconds=60)
        # Released, not waited out: the backlog was through before the last backoff ended
        # (compared on the clock, not as a deadline of the test, so a busy machine cannot fail
        # it, and waiting out the backoffs cannot pass it).
        delivered = [r.time for r in sandbox.requests[back:] if r.status in (200, 201)]
        assert len(due) >= 6 and max(delivered) < max(due), (delivered, due)

        async def logged() -> bool:  # log lines are written within alertd.logs.FLUSH_INTERVAL
            return '"event":"helpdesk_recovered"' in daemon.log()

        # Before the SIGKILL below, which loses whatever lines were still buffered.
        await until(logged, "the recovery's log line", seconds=5)
    finally:
        daemon.kill()
    assert len(sandbox.tickets) == 6
    after = [f"{r.method} {r.path}" for r in sandbox.requests[back:] if r.status == 201]
    web0 = next(t for t, v in sandbox.tickets.items() if "web-0" in v["subject"])
    # web-0's recovery note went after its create (per-incident order).
    assert after.index(f"POST /api/v2/tickets/{web0}/notes") > 0
