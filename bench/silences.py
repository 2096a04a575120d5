"""Silence matching at scale: one result against 10,000 active Nagios host downtimes.

Prints figures; asserts nothing. Compares the writer's host index (`SilenceIndex`) with a look
at every silence (`first_match` over all, what the writer did before), for results on a host
in downtime and on one that is not.

    ./run bench-silences [--silences 10000] [--lookups 20000]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from alertd.silences import SilenceIndex, downtime_silence, first_match

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--silences", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=20_000)
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


if __name__ == "__main__":
    main()
