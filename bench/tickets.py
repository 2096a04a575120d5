"""Ticket-storm benchmark: 5,000 incidents open at once against a helpdesk budget of 200/min.

Runs alertd and the local Freshdesk-compatible sandbox (limit 200 requests/minute, as on a
Growth plan) on loopback, opens 5,000 incidents of mixed priority in five 1,000-result
requests, lets the outbox deliver for `--duration` seconds, and prints what the helpdesk saw:
requests sent, 429s received (the target is 0), creates per minute, and whether the tickets
came highest priority first.

    ./run bench-tickets                  # 90 s
    ./run bench-tickets --duration 300
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from alertd import logs
from alertd.config import load_config
from alertd.daemon import serving
from alertd.sandbox import SANDBOX, SandboxOptions, create_app

KEY = "bench-key"
CONFIG = """
# A throw-away daemon on loopback, driven by this process only: no token needed.
[auth]
disabled = true

[[priority.rules]]
name = "core"
impact = "high"
host = "core-*"
[[priority.rules]]
name = "lab"
impact = "low"
host = "lab-*"
[helpdesk]
url = "@URL@"
requester_email = "noc@example.com"
rate_limit_per_minute = @BUDGET@
# The storm measures the helpdesk's pacing: services get their tickets at once, not after the
# grace a host's result may need to absorb them (none comes here).
service_grace = "0s"
"""
STATES = ("CRITICAL", "WARNING", "UNKNOWN")
PREFIXES = ("core", "web", "lab")


def storm(count: int) -> list[dict[str, str]]:
    """`count` problems on distinct keys; impact from the host prefix, urgency from the state."""
    return [
        {
            "host": f"{PREFIXES[n % 3]}-{n:05d}",
            "service": "Service",
            "state": STATES[(n // 3) % 3],
            "output": "storm",
        }
        for n in range(count)
    ]


async def main(duration: float, count: int, budget: int) -> int:
    logs.configure("warning")
    helpdesk_app = create_app(SandboxOptions(api_key=KEY, rate_limit_per_minute=budget))
    runner = web.AppRunner(helpdesk_app, access_log=None)
    await runner.setup()
    with tempfile.TemporaryDirectory(prefix="alertd-bench-") as tmp:
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            path = Path(tmp) / "bench.toml"
            path.write_text(CONFIG.replace("@URL@", url).replace("@BUDGET@", str(budget)))
            config = load_config(path, env={"ALERTD_HELPDESK_API_KEY": KEY})
            config = dataclasses.replace(
                config,
                server=dataclasses.replace(config.server, port=0),
                store=dataclasses.replace(config.store, path=Path(tmp) / "a.db"),
            )
            async with serving(config) as base, aiohttp.ClientSession(base_url=base) as http:
                started = time.monotonic()
                results = storm(count)
                for i in range(0, count, 1000):
                    async with http.post("/api/v1/results", json=results[i : i + 1000]) as r:
                        assert r.status == 202, await r.text()
                ingest = time.monotonic() - started
                await asyncio.sleep(max(0.0, duration - ingest))
                elapsed = time.monotonic() - started
                async with http.get("/api/v1/outbox") as r:
                    counts = (await r.json())["counts"]
            report(helpdesk_app[SANDBOX], count, budget, elapsed, ingest, counts)
        finally:
            await runner.cleanup()
    return 0


def report(
    sandbox: object, count: int, budget: int, elapsed: float, ingest: float, counts: dict[str, int]
) -> None:
    requests = sandbox.requests  # type: ignore[attr-defined]
    tickets = sandbox.tickets  # type: ignore[attr-defined]
    limited = sum(1 for r in requests if r.status == 429)
    priorities = [t["priority"] for _, t in sorted(tickets.items())]
    inversions = sum(1 for a, b in itertools.pairwise(priorities) if b > a)
    print(f"ticket storm: {count} incidents, helpdesk budget {budget}/min, {elapsed:.0f} s run")
    print(f"  ingest of {count} results (5 requests):      {ingest * 1000:8.0f} ms")
    print(f"  requests sent to the helpdesk:             {len(requests):8d}")
    print(f"  429 Too Many Requests received:            {limited:8d}   (target 0)")
    print(f"  tickets created:                           {len(tickets):8d}")
    print(f"  creates per minute:                        {len(tickets) / elapsed * 60:8.0f}")
    print(f"  outbox: pending {counts['pending']}, done {counts['done']}, dead {counts['dead']}")
    runs = ", ".join(f"{p}x{priorities.count(p)}" for p in (4, 3, 2, 1) if p in priorities)
    print(f"  priorities in creation order (4=Urgent):   {runs}")
    print(f"  later ticket of higher priority than the one before: {inversions} times")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=90, help="seconds to run")
    parser.add_argument("--count", type=int, default=5000, help="incidents to open")
    parser.add_argument("--budget", type=int, default=200, help="helpdesk requests per minute")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.duration, args.count, args.budget)))
