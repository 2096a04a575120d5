"""`alertd demo`: a real daemon on loopback, fed a scripted morning of check results over HTTP.

Everything goes through the public API a monitoring system would use, so what the demo prints
is what a user would see. Nothing outside a temporary directory is touched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from alertd import logs
from alertd.config import load_config
from alertd.daemon import serving

DEMO_CONFIG = """
[lifecycle]
recovery_hold = "2s"      # short, so the demo can show a recovery being confirmed

[[priority.rules]]
name = "databases"
impact = "high"
labels = { hostgroups = "*databases*" }

[[priority.rules]]
name = "test boxes"
impact = "low"
host = "test-*"
"""


async def run_demo(store: Path | None) -> int:
    logs.configure("warning")
    with tempfile.TemporaryDirectory(prefix="alertd-demo-") as tmp:
        config_path = Path(tmp) / "demo.toml"
        config_path.write_text(DEMO_CONFIG)
        config = load_config(config_path, env={})
        config = dataclasses.replace(
            config,
            server=dataclasses.replace(config.server, port=0),
            store=dataclasses.replace(config.store, path=store or Path(tmp) / "alertd.db"),
        )
        async with serving(config) as url, aiohttp.ClientSession(base_url=url) as http:
            print(f"alertd demo: daemon listening on {url}, store {config.store.path}\n")
            await _script(http)
    return 0


async def _post(http: aiohttp.ClientSession, results: list[dict[str, Any]]) -> int:
    async with http.post("/api/v1/results", json=results) as response:
        body = await response.json()
        if response.status != 202:
            raise RuntimeError(f"demo post refused: {response.status} {body}")
        return int(body["accepted"])


async def _script(http: aiohttp.ClientSession) -> None:
    http_check = {"host": "web-01", "service": "HTTP", "labels": {"hostgroups": "web"}}
    step("web-01/HTTP fails; Nagios retries it (SOFT 1/3, 2/3) before it is confirmed (HARD 3/3)")
    for attempt in (1, 2, 3):
        await _post(http, [{**http_check, "state": "CRITICAL", "attempt": attempt,
                            "max_attempts": 3, "output": "connection refused"}])  # fmt: skip
        await show(http, "web-01", "HTTP")

    step("1,000 more identical results arrive in one request: still one incident")
    started = time.perf_counter()
    await _post(http, [{**http_check, "state": 2, "output": "connection refused"}] * 1000)
    print(f"  committed in {1000 * (time.perf_counter() - started):.1f} ms")
    await show(http, "web-01", "HTTP")

    step("db-01 goes DOWN (hostgroup databases: high impact), then its MySQL check fails too")
    db = {"host": "db-01", "labels": {"hostgroups": "databases,linux"}}
    await _post(http, [{**db, "state": "DOWN", "output": "PING CRITICAL - 100% loss"}])
    await _post(http, [{**db, "service": "MySQL", "state": "CRITICAL", "output": "can't connect"}])
    await show(http, "db-01", None)
    await show(http, "db-01", "MySQL")

    step("a WARNING on a test box: low impact, medium urgency")
    await _post(http, [{"host": "test-07", "service": "Disk /", "state": "WARNING",
                        "output": "DISK WARNING - 91% used"}])  # fmt: skip
    await show(http, "test-07", "Disk /")

    step("web-01/HTTP recovers; alertd holds it as 'recovering' for 2s before resolving it")
    await _post(http, [{**http_check, "state": "OK", "output": "HTTP OK: 200 in 0.01s"}])
    await show(http, "web-01", "HTTP")
    await asyncio.sleep(2.5)  # the hold is a timer inside the daemon; we only wait
    await show(http, "web-01", "HTTP")

    step("db-01 comes back UP: MySQL is released from the host incident and surfaces on its own")
    await _post(http, [{**db, "state": "UP", "output": "PING OK"}])
    await show(http, "db-01", None)
    await show(http, "db-01", "MySQL")

    step("all incidents (GET /api/v1/incidents)")
    async with http.get("/api/v1/incidents") as response:
        incidents = (await response.json())["incidents"]
    print(f"  {'id':>3}  {'key':<16} {'status':<11} {'state':<9} {'priority':<8} "
          f"{'occurrences':>11}  suppressed")  # fmt: skip
    for inc in incidents:
        print(f"  {inc['id']:>3}  {inc['key']:<16} {inc['status']:<11} {inc['check_state']:<9} "
              f"{inc['priority']:<8} {inc['occurrences']:>11}  {inc['suppressed']}")  # fmt: skip

    first = incidents[-1]["id"]
    step(f"the audit trail of incident {first} (GET /api/v1/incidents/{first})")
    async with http.get(f"/api/v1/incidents/{first}") as response:
        for event in (await response.json())["events"]:
            print(f"  {event['at']}  {event['kind']:<17} {_detail(event['detail'])}")
    print("\nDone. Run `alertd run` to start a daemon you can post to yourself.")


def step(text: str) -> None:
    print(f"\n== {text}")


async def show(http: aiohttp.ClientSession, host: str, service: str | None) -> None:
    async with http.get("/api/v1/incidents", params={"host": host}) as response:
        incidents = (await response.json())["incidents"]
    match = [i for i in incidents if i["service"] == service]
    key = host if service is None else f"{host}/{service}"
    if not match:
        print(f"  {key}: no incident")
        return
    inc = match[0]
    extra = f", suppressed: {inc['suppressed_reason']}" if inc["suppressed"] else ""
    print(
        f"  {key}: incident {inc['id']} {inc['status']}, {inc['check_state']} "
        f"({inc['state_type']}), priority {inc['priority']} (impact {inc['impact']} "
        f"x urgency {inc['urgency']}), occurrences {inc['occurrences']}{extra}"
    )


def _detail(detail: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in detail.items() if k != "output")
