"""`alertd demo`: a real daemon and a local Freshdesk-compatible helpdesk on loopback, fed a
scripted morning of check results over HTTP; prints the tickets as an agent would see them.

Everything goes through the public interfaces (alertd's HTTP API in, the helpdesk's API out),
so what the demo prints is what a user would get. Nothing outside a temporary directory is
touched, and it exits by itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from alertd import logs
from alertd.config import load_config
from alertd.daemon import serving
from alertd.sandbox import SANDBOX, Sandbox, SandboxOptions, create_app

DEMO_KEY = "demo-api-key"
PRIORITY = {1: "Low", 2: "Medium", 3: "High", 4: "Urgent"}
STATUS = {2: "Open", 3: "Pending", 4: "Resolved", 5: "Closed"}
DEMO_CONFIG = """
[auth]
disabled = true           # a throw-away daemon on a loopback port only this demo talks to

[lifecycle]
recovery_hold = "2s"      # short, so the demo can show a recovery being confirmed

[[priority.rules]]
name = "databases"
impact = "high"
labels = { hostgroups = "*databases*" }

[helpdesk]
url = "@URL@"
requester_email = "monitoring@example.com"
note_interval = "2s"      # short, so the demo can show a summary of repeats
release_grace = "1s"      # services released by their host's recovery: still failing after 1s?
service_grace = "1s"      # a service's ticket waits this long for its host's problem
monitoring_url = "https://nagios.example.com/cgi-bin/extinfo.cgi?type=2&host={host}&service={service}"
"""


async def run_demo(store: Path | None) -> int:
    logs.configure("warning")
    with tempfile.TemporaryDirectory(prefix="alertd-demo-") as tmp:
        helpdesk_app = create_app(SandboxOptions(api_key=DEMO_KEY))
        runner = web.AppRunner(helpdesk_app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            helpdesk_url = f"http://{host}:{port}"
            config_path = Path(tmp) / "demo.toml"
            config_path.write_text(DEMO_CONFIG.replace("@URL@", helpdesk_url))
            config = load_config(config_path, env={"ALERTD_HELPDESK_API_KEY": DEMO_KEY})
            config = dataclasses.replace(
                config,
                server=dataclasses.replace(config.server, port=0),
                store=dataclasses.replace(config.store, path=store or Path(tmp) / "alertd.db"),
            )
            async with serving(config) as url, aiohttp.ClientSession(base_url=url) as http:
                print(f"alertd demo: daemon on {url}, store {config.store.path}")
                print(f"             a local Freshdesk-compatible helpdesk on {helpdesk_url}\n")
                await _script(http)
                await _drained(http)
                _print_tickets(helpdesk_app[SANDBOX])
                await _print_summary(http)
        finally:
            await runner.cleanup()
    print("\nDone. `./run alertd run` starts a daemon of your own; README.md says how to feed it.")
    return 0


async def _post(http: aiohttp.ClientSession, results: Any) -> None:
    async with http.post("/api/v1/results", json=results) as response:
        if response.status != 202:
            raise RuntimeError(f"demo post refused: {response.status} {await response.text()}")


async def _script(http: aiohttp.ClientSession) -> None:
    web01 = {"host": "web-01", "service": "HTTP", "labels": {"hostgroups": "web"}}
    step("web-01/HTTP turns WARNING (slow), then CRITICAL, and keeps failing")
    await _post(http, {**web01, "state": "WARNING", "output": "HTTP WARNING: 2.9 s response"})
    await asyncio.sleep(0.3)
    await _post(http, {**web01, "state": "CRITICAL", "output": "connection refused"})
    for _ in range(5):
        await _post(http, [{**web01, "state": "CRITICAL", "output": "connection refused"}] * 10)
        await asyncio.sleep(0.5)
    print("   52 results so far: one incident, one ticket")

    step("db-01 goes DOWN; its five services fail with it (absorbed: no ticket storm)")
    db = {"host": "db-01", "labels": {"hostgroups": "databases,linux"}}
    await _post(http, {**db, "state": "DOWN", "output": "PING CRITICAL - 100% packet loss"})
    services = ["MySQL", "Disk /", "Load", "SSH", "Backup"]
    await _post(http, [{**db, "service": s, "state": "CRITICAL", "output": "timeout"}
                       for s in services])  # fmt: skip

    step("app-01/Queue flaps between OK and CRITICAL (a stream: every check is sent)")
    for n in range(12):
        state = "CRITICAL" if n % 2 == 0 else "OK"
        await _post(http, {"host": "app-01", "service": "Queue", "state": state,
                           "output": f"queue depth {'9000' if n % 2 == 0 else '12'}",
                           "interval": "1m"})  # fmt: skip
        if n == 0:
            await asyncio.sleep(1.2)  # the service grace: then the ticket, then the swings

    step("web-01/HTTP recovers; alertd waits 2s of OK before resolving the ticket")
    await _post(http, {**web01, "state": "OK", "output": "HTTP OK: 200 in 0.04 s"})
    await asyncio.sleep(2.5)

    step("db-01 is back UP; rechecked, MySQL and Backup still fail and get tickets")
    await _post(http, {**db, "state": "UP", "output": "PING OK"})
    await _post(http, [{**db, "service": s, "state": "OK", "output": "OK"}
                       for s in ("Disk /", "Load", "SSH")])  # fmt: skip
    await asyncio.sleep(1.5)

    step("web-01/HTTP fails again, within the reopen window: the same ticket reopens")
    await _post(http, {**web01, "state": "CRITICAL", "output": "502 Bad Gateway"})
    await asyncio.sleep(1.5)  # the service grace: its host's problem could still absorb it


async def _drained(http: aiohttp.ClientSession) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        async with http.get("/api/v1/outbox") as response:
            if (await response.json())["counts"]["pending"] == 0:
                return
        await asyncio.sleep(0.2)
    print("   (some ticket operations are still pending)")


def _print_tickets(helpdesk: Sandbox) -> None:
    step("the helpdesk, as an agent sees it")
    for ticket_id, ticket in sorted(helpdesk.tickets.items()):
        priority, status = PRIORITY[ticket["priority"]], STATUS.get(ticket["status"], "?")
        print(f"\n   #{ticket_id}  {priority:<6} {status:<8} {ticket['subject']}")
        print(f"        tags: {', '.join(ticket['tags'])}")
        for note in helpdesk.notes.get(ticket_id, []):
            stamp = str(note["created_at"])[11:19]
            first, *more = _paragraphs(note["body"])
            print(f"        {stamp}  {first}")
            for line in more:
                print(f"                  {line}")


async def _print_summary(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/v1/incidents") as response:
        incidents = (await response.json())["incidents"]
    step("the incidents behind them (GET /api/v1/incidents)")
    print(f"   {'id':>3}  {'key':<14} {'status':<11} {'state':<9} {'priority':<8} "
          f"{'occurrences':>11}  note")  # fmt: skip
    for inc in reversed(incidents):
        note = "flapping" if inc["flapping"] else inc["suppressed_reason"] or ""
        print(f"   {inc['id']:>3}  {inc['key']:<14} {inc['status']:<11} {inc['check_state']:<9} "
              f"{inc['priority']:<8} {inc['occurrences']:>11}  {note}")  # fmt: skip


def _paragraphs(body: str) -> list[str]:
    """A note's HTML as text, a line per paragraph, without alertd's delivery marker."""
    body = re.sub(r'<p style="color:#888[^>]*>.*?</p>', "", body)
    blocks = re.split(r"</p>|</pre>|<br\s*/?>", body)
    lines = [re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", b))).strip() for b in blocks]
    return [line for line in lines if line] or [""]


def step(text: str) -> None:
    """A heading stamped with the time now (UTC), the clock the helpdesk's notes show too."""
    print(f"\n== {time.strftime('%H:%M:%S', time.gmtime())}  {text}")
