"""Silences at scale: one result against 10,000 active Nagios host downtimes, a silence change
among 100,000 open incidents, and a burst of Nagios downtimes.

Prints figures; asserts nothing. Compares the writer's host index (`SilenceIndex`) with a look
at every silence (`first_match` over all, what the writer did before), for results on a host
in downtime and on one that is not. Then, through a real engine and store in a temp dir:
`--incidents` open incidents (ten services on each host), and the writer's time for a silence
of one host created and ended through the engine, one at a time (as the API submits them);
then `--downtimes` DOWNTIMESTART notices for as many hosts, one per submission (as Nagios sends
one notification each), and their DOWNTIMEEND.

    ./run bench-silences [--silences 10000] [--lookups 20000]
    ./run bench-silences --incidents 100000 --changes 50 --downtimes 500,2000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alertd import logs
from alertd.clock import ManualClock
from alertd.engine import Engine
from alertd.model import CheckResult, CheckState, Notice, NoticeKind, StateType
from alertd.policy import LifecyclePolicy, Pattern
from alertd.silences import (
    Silence,
    SilenceChange,
    SilenceExpire,
    SilenceIndex,
    downtime_silence,
    first_match,
)
from alertd.store import SqliteStore

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--silences", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=50, help="silences created and ended")
    parser.add_argument("--downtimes", default="500,2000", help="burst sizes, comma-separated")
    args = parser.parse_args()
    windows = [downtime_silence(n, f"host-{n}", None, "nagios", "", T0)
               for n in range(1, args.silences + 1)]  # fmt: skip
    started = time.perf_counter()
    index = SilenceIndex(windows)
    print(f"{args.silences:,} host downtimes indexed in "
          f"{(time.perf_counter() - started) * 1000:.1f} ms")  # fmt: skip
    for label, host in (("host in downtime", "host-5000"), ("host not in downtime", "web-01")):
        for how, match in (
            ("index", lambda h: index.first_match(h, "HTTP", {})),
            ("every silence", lambda h: first_match(windows, h, "HTTP", {})),
        ):
            runs = args.lookups if how == "index" else max(args.lookups // 100, 10)
            started = time.perf_counter()
            for _ in range(runs):
                match(host)
            per = (time.perf_counter() - started) / runs * 1e6
            print(f"{label:<22} {how:<14} {per:10.2f} us per result")
    logs.configure("warning")
    asyncio.run(writer(args.incidents, args.changes,
                       [int(n) for n in args.downtimes.split(",") if n]))  # fmt: skip


async def writer(incidents: int, changes: int, bursts: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clock = ManualClock(T0)
        store = await SqliteStore.open(Path(tmp) / "alertd.db", "NORMAL")
        engine = Engine(store, LifecyclePolicy(), clock)
        await engine.start()
        try:
            for start in range(0, incidents, 5000):
                await engine.submit([
                    CheckResult(f"host-{n // 10}", f"svc-{n % 10}", CheckState.CRITICAL, T0,
                                state_type=StateType.HARD)
                    for n in range(start, min(start + 5000, incidents))
                ])  # fmt: skip
            took = 0.0
            for n in range(changes):
                clock.advance(timedelta(seconds=1))
                sid = engine.new_silence_id()
                window = Silence(sid, clock.now(), None, "bench", "", clock.now(),
                                 host=Pattern.compile(f"host-{n * 7 % (incidents // 10)}"))
                began = time.perf_counter()
                await engine.submit([SilenceChange(window)])
                await engine.submit([SilenceExpire(sid)])
                took += time.perf_counter() - began
            print(f"silence change with {engine.active_incidents:,} open incidents: "
                  f"{took / (2 * changes) * 1000:.2f} ms of writer time per create or end")
            for burst in bursts:
                for kind in (NoticeKind.DOWNTIME_STARTED, NoticeKind.DOWNTIME_ENDED):
                    began = time.perf_counter()
                    for n in range(burst):
                        await engine.submit([Notice(kind, f"host-{n}", None, clock.now(),
                                                    "nagiosadmin", "patch")])  # fmt: skip
                    took = time.perf_counter() - began
                    print(f"{burst:>6,} host downtimes, {kind.value:<17} one per submission: "
                          f"{took:6.2f} s ({took / burst * 1000:.2f} ms each)")
        finally:
            await engine.stop()
            await store.close()


if __name__ == "__main__":
    main()
