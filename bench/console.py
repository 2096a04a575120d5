"""Console benchmark: how long the server takes to answer a board page of `/ui/` with 10,000
open incidents (issue: under 100 ms a page).

Builds the daemon's app in-process (SQLite in a temp dir), commits `--incidents` open
incidents through the engine (a fifth of them with a helpdesk-style host group), then times
GET requests over loopback with aiohttp's client: the first page, a page deep in the list, a
host-glob filter, a free-text filter and the board grouped by host group, plus a refresh
(the live part only). Reports median and 95th percentile per view, in milliseconds.

    ./run bench-console                    # 10,000 incidents, 50 requests per view
    ./run bench-console --incidents 20000 --requests 100
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from alertd import logs
from alertd.app import build_app
from alertd.config import load_config
from alertd.http.keys import ENGINE
from alertd.model import CheckResult, CheckState, StateType

PROFILE = False
VIEWS = {
    "first page": ("/ui/", {}),
    "page 100": ("/ui/", {"page": "100"}),
    "host glob": ("/ui/", {"host": "host-01*"}),
    "output text": ("/ui/", {"q": "timeout 7"}),
    "grouped by host group": ("/ui/", {"group": "hostgroup"}),
    "refresh (live part)": ("/ui/", {"__fragment": "1"}),
}


def results(count: int) -> list[CheckResult]:
    now = datetime.now(UTC)
    states = (CheckState.CRITICAL, CheckState.WARNING, CheckState.UNKNOWN)
    return [
        CheckResult(
            host=f"host-{n // 10:04d}", service=f"svc-{n % 10}", state=states[n % 3],
            timestamp=now, output=f"check timeout {n % 100} after 10s", state_type=StateType.HARD,
            labels={"hostgroups": f"group-{n % 5},prod"} if n % 5 == 0 else {},
        )
        for n in range(count)
    ]


async def main(incidents: int, requests: int) -> int:
    logs.configure("warning")  # not a line per opened incident
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alertd.toml"
        # A throw-away daemon on loopback, read by this process only: no token needed.
        path.write_text(
            f'[store]\npath = "{Path(tmp) / "alertd.db"}"\nsynchronous = "NORMAL"\n'
            "[auth]\ndisabled = true\n"
        )
        app = build_app(load_config(path, env={}))
        async with TestClient(TestServer(app)) as client:
            batch = results(incidents)
            for start in range(0, len(batch), 1000):
                await app[ENGINE].submit(batch[start : start + 1000])
            if PROFILE:
                import cProfile

                with cProfile.Profile() as prof:
                    for _ in range(20):
                        await (await client.get("/ui/")).read()
                prof.print_stats("cumulative")
                return 0
            print(f"{incidents} open incidents; {requests} requests per view; server time, ms")
            worst = 0.0
            for name, (path_, params) in VIEWS.items():
                headers = {"X-Console-Fragment": "1"} if params.pop("__fragment", None) else {}
                times = []
                for _ in range(requests):
                    began = time.perf_counter()
                    response = await client.get(path_, params=params, headers=headers)
                    await response.read()
                    times.append((time.perf_counter() - began) * 1000)
                    assert response.status == 200, response.status
                times.sort()
                p95 = times[int(len(times) * 0.95) - 1]
                worst = max(worst, p95)
                print(f"  {name:24} median {statistics.median(times):6.1f}  p95 {p95:6.1f}")
            print(f"worst p95 {worst:.1f} ms ({'under' if worst < 100 else 'OVER'} 100 ms)")
            return 0 if worst < 100 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.incidents, args.requests)))
