"""Helpdesk outage: how soon after the helpdesk comes back is the backlog delivered?

A real `alertd run` process and the sandbox helpdesk (in this process, on loopback, limited to
`--budget` requests a minute). After a warm-up, the helpdesk answers every request 503 for
`--outage` seconds while incidents keep opening, recovering, resolving and reopening (one change
every `--every` seconds, repeats besides). Then it answers again, the load stops, and the
bench measures the time from the recovery to the last operation the helpdesk acted on, counts
429s, and checks each ticket's operations landed in order and every ticket's final state
(the checks of bench/soak.py).

    ./run bench-outage                      # a 10-minute outage
    ./run bench-outage --outage 120         # a quick one
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from soak import KEY, TOKEN, Key, Tally, audit, configure, fetch_all, send_batch, start_helpdesk

from alertd.sandbox import SandboxOptions


async def load(
    http: aiohttp.ClientSession,
    url: str,
    keys: list[Key],
    stop: asyncio.Event,
    every: float,
    rng: random.Random,
    tally: Tally,
) -> None:
    """Every `every` seconds one key changes state; every key repeats its state meanwhile."""
    while not stop.is_set():
        states = [k.failing for k in keys]
        flip = rng.randrange(len(keys))
        states[flip] = not states[flip]
        await send_batch(http, url, keys, states, tally)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def main(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    options = SandboxOptions(api_key=KEY, rate_limit_per_minute=args.budget)
    runner, sandbox, helpdesk_url = await start_helpdesk(options)
    with tempfile.TemporaryDirectory(prefix="alertd-outage-") as tmp:
        base = Path(tmp)
        alertd = configure(base, helpdesk_url, {
            "BUDGET": args.budget, "CONCURRENCY": 4, "TIMEOUT": 30, "OUTCOME_WAIT": 30,
        }, extra=f'plan = "{args.plan}"\n')  # fmt: skip
        alertd.start()
        tally = Tally()
        await alertd.ready()
        keys = [Key(f"outage-{n:04d}") for n in range(args.keys)]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        stop = asyncio.Event()
        try:
            async with aiohttp.ClientSession(headers=headers) as http:
                task = asyncio.create_task(
                    load(http, alertd.url, keys, stop, args.every, rng, tally)
                )
                await asyncio.sleep(args.warmup)
                before = len(sandbox.applied)
                sandbox.fail_next(10_000_000, 503)  # down until the faults are cleared
                down = time.monotonic()
                await asyncio.sleep(args.outage)
                stop.set()
                await task
                async with http.get(alertd.url + "/api/v1/outbox?limit=1") as answer:
                    backlog = (await answer.json())["counts"]["pending"]
                sandbox._faults.clear()  # the helpdesk is back
                back_wall, back = sandbox.now(), time.monotonic()
                requests_before = len(sandbox.requests)
                # Drained: nothing pending, and the recovery holds of the last recoveries over.
                while True:
                    await asyncio.sleep(0.5)
                    async with http.get(alertd.url + "/api/v1/outbox?limit=1") as answer:
                        counts = (await answer.json())["counts"]
                    waited = time.monotonic() - back
                    if (counts["pending"] == 0 and waited > 5) or waited > args.limit:
                        break
                incidents = await fetch_all(http, alertd.url, "/api/v1/incidents", "incidents")
                ops = await fetch_all(http, alertd.url, "/api/v1/outbox", "operations")
        finally:
            code = alertd.stop()
            await runner.cleanup()
    after = [a for a in sandbox.applied if a.time >= back_wall]
    last = max((a.time for a in after), default=back_wall) - back_wall
    first = min((a.time for a in after), default=back_wall) - back_wall
    kinds = Counter(a.kind for a in after)
    sent = Counter(f"{r.method} {'notes' if r.path.endswith('/notes') else 'ticket'}"
                   for r in sandbox.requests[requests_before:])  # fmt: skip
    limited = sum(1 for r in sandbox.requests[requests_before:] if r.status == 429)
    refused = sum(1 for r in sandbox.requests[:requests_before] if r.status == 503)
    counts_audit = audit(keys, incidents, ops, sandbox)
    print(
        f"outage: helpdesk down {back - down:.0f} s (503 to {refused} requests), "
        f"{args.keys} keys, a change every {args.every:g} s, budget {args.budget}/min, "
        f"plan {args.plan}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"  operations delivered before the outage: {before}")
    print(f"  backlog when the helpdesk came back:    {backlog}")
    print(f"  delivered after it came back:           {len(after)} ({kinds['create']} creates, "
          f"{kinds['update']} updates, {kinds['note']} notes); requests {dict(sent)}")  # fmt: skip
    print(f"  recovery -> first operation delivered:  {first:.1f} s")
    print(f"  recovery -> last operation delivered:   {last:.1f} s   (target <= 60 s)")
    print(f"  429s after recovery:                    {limited}")
    print(f"  outbox at the end: {counts}; clean stop exit {code}")
    for name, value in counts_audit.items():
        print(f"  {name + ':':26s} {value:8d}   (target 0)")
    return 0 if last <= 60 and not any(counts_audit.values()) and not counts["pending"] else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--outage", type=float, default=600, help="seconds the helpdesk is down")
    parser.add_argument("--warmup", type=float, default=10, help="seconds before the outage")
    parser.add_argument("--keys", type=int, default=300, help="host checks (default %(default)s)")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between changes")
    parser.add_argument("--budget", type=int, default=700, help="helpdesk requests per minute")
    parser.add_argument("--plan", default="enterprise",
                        help="alertd's helpdesk.plan: its per-class paces (default %(default)s: "
                             "creates and updates 280/min each)")  # fmt: skip
    parser.add_argument("--limit", type=float, default=900, help="longest wait to drain, s")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    sys.exit(asyncio.run(main(parser.parse_args())))
