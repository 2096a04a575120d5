"""The operator at the shell: `alertd incidents` and `alertd outbox` run as real processes
against a real alertd app (with the sandbox helpdesk) on loopback, the way people use them:
$ALERTD_URL instead of --url, no $USER in cron, hostile plugin output, `| head`."""

from __future__ import annotations

import asyncio
import os
import pwd
import shlex
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta

from alertd.clock import ManualClock
from alertd.sandbox import Sandbox
from tests.support import CRIT, ROOT, Client, deliver, post

ALERTD = f"{shlex.quote(sys.executable)} -m alertd.cli"
# Retitles the terminal (OSC 0), writes the clipboard (OSC 52), clears the screen, bidi override.
HOSTILE = "\x1b]0;owned\x07\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\u202egnp.exe connection refused"


async def shell(command: str, url: str) -> subprocess.CompletedProcess[str]:
    """`command` through /bin/sh with $ALERTD_URL set and neither $USER nor $LOGNAME."""
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "ALERTD_URL": url}
    return await asyncio.to_thread(
        subprocess.run, ["/bin/sh", "-c", command], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


async def test_incidents_show_ticket_flags_and_only_harmless_text(
    start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str], clock: ManualClock
) -> None:
    """With only $ALERTD_URL set: the list shows the ticket and every flag (stale too), the
    detail page the ticket's link, counts read as English, the `reopened` event comes from OK;
    escape sequences from plugin output arrive as visible text; an ack without $USER names the
    OS user; the helpdesk's refusal reads as its own message."""
    helpdesk, helpdesk_url = sandbox
    client = await start('[lifecycle]\nrecovery_hold = "1m"\nstale_after = "5m"\n')
    url = str(client.make_url("")).rstrip("/")
    check = {**CRIT, "reporting": "stream"}  # a stream can go quiet: stale
    await post(client, check)
    clock.advance(timedelta(minutes=1))
    await post(client, {**check, "state": "OK", "output": "fine"})
    clock.advance(timedelta(minutes=2))
    await deliver(client)  # resolved
    await post(client, {**check, "output": HOSTILE})  # reopened
    clock.advance(timedelta(minutes=1))
    await post(client, {**check, "output": HOSTILE})
    clock.advance(timedelta(minutes=10))
    await deliver(client)  # the check went quiet: stale
    (ticket_id,) = helpdesk.tickets

    listing = await shell(f"{ALERTD} incidents list", url)
    assert listing.returncode == 0, listing.stderr
    header, row = listing.stdout.splitlines()
    assert "TICKET" in header and f"#{ticket_id}" in row and "stale" in row.split()
    assert "\x1b" not in listing.stdout and "\u202e" not in listing.stdout
    assert "\\x1b]0;owned\\x07" in row

    detail = await shell(f"{ALERTD} incidents show 1", url)
    assert detail.returncode == 0, detail.stderr
    assert f"#{ticket_id} {helpdesk_url}/a/tickets/{ticket_id}" in detail.stdout
    assert "reopened      once" in detail.stdout
    assert "stale         yes (no result since" in detail.stdout
    (reopened,) = [ln for ln in detail.stdout.splitlines() if "reopen_count=" in ln]
    assert "from=OK, to=CRITICAL" in reopened
    assert "\x1b" not in detail.stdout and "\\x1b]52;c;" in detail.stdout

    acked = await shell(f"{ALERTD} incidents ack 1 --comment looking", url)
    assert acked.returncode == 0, acked.stderr
    body = await (await client.get("/api/v1/incidents/1")).json()
    assert body["ack_author"] == pwd.getpwuid(os.getuid()).pw_name

    # The account stops taking type "Incident": the next ticket's create is a dead letter.
    helpdesk.options.ticket_types = ("Question",)
    await post(client, {**CRIT, "host": "web-02"})
    await deliver(client)
    dead = await shell(f"{ALERTD} outbox list --state dead", url)
    assert dead.returncode == 0, dead.stderr
    (line,) = [ln for ln in dead.stdout.splitlines() if " create " in ln]
    assert "type: It should be one of these values" in line and '{"description"' not in line


async def test_a_listing_into_head_ends_quietly(
    make_client: Callable[..., Awaitable[Client]]
) -> None:
    """`alertd incidents list | head -1` with more output than a pipe holds: head's line,
    and no BrokenPipeError traceback."""
    client = await make_client()
    url = str(client.make_url("")).rstrip("/")
    await post(client, [{**CRIT, "host": f"web-{n:04d}"} for n in range(1000)])
    done = await shell(f"{ALERTD} incidents list --limit 1000 | head -1", url)
    assert done.stdout.startswith("ID ")
    assert done.stderr == ""
