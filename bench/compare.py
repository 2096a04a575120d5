"""alertd side by side with Prometheus Alertmanager on the same shapes of load.

Each (shape, run, target) starts its target fresh (alertd: SQLite in a temp dir,
synchronous=FULL, so every 202 is on disk; Alertmanager: in memory, clustering off, a webhook
receiver that is a local blackhole answering 200), drives it from this process with aiohttp's
client (uvloop) and stops it. Runs alternate between the two (and which goes first), and the
medians of `--runs` runs are printed with the ratio alertd / Alertmanager. CPU is the target
process's user+system seconds from /proc/<pid>/stat over the timed part, per result (for
alertd until every result answered is applied: it answers once they are in its inbox, and
applies them right after; it prints when all were applied too).

Shapes (100 results per request, 8 requests in flight, unless said):

  storm   5,000 new keys x 4 results, all CRITICAL (alertd opens 5,000 incidents)
  churn   10,000 open keys (set up untimed), then rounds of all OK / all CRITICAL alternating
  steady  10,000 keys, 10% CRITICAL, the rest OK, for --duration seconds
  single  one result per request, 64 connections, for --duration seconds
  paced   open loop: --rate single-result requests/s sent on schedule whatever the replies,
          for --duration seconds; latency counted from the scheduled send (p50/p99), so a
          stalled server cannot hide its stall by slowing the client down. Timed after
          --warm seconds at the same rate, untimed: the client's pool opens its connections
          (a sender keeps them) and neither server is timed on its first requests

The same item is an alertd check result and an Alertmanager alert (labels alertname, instance,
service, severity): CRITICAL is a firing alert, OK a resolved one (endsAt in the past), which is
what Prometheus sends for a rule that stopped firing.

    .venv/bin/python bench/compare.py                   # every shape, 3 runs each
    .venv/bin/python bench/compare.py --only storm --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency; the fallback keeps bench usable
    uvloop = None  # type: ignore[assignment]

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
TOKEN = "bench-token"
JSON = "application/json"
SHAPES = ("storm", "churn", "steady", "single", "paced")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (fields 14 and 15 of /proc/<pid>/stat, after the command)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def loop_cpu_seconds(pid: int) -> float:
    """utime + stime of the main thread of `pid` alone: alertd's event loop (its SQLite
    threads are the rest of the process's CPU)."""
    return cpu_seconds_of(Path(f"/proc/{pid}/task/{pid}/stat"))


def cpu_seconds_of(stat: Path) -> float:
    fields = stat.read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wait_ready(proc: subprocess.Popen[bytes], url: str, name: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:  # e.g. the port is taken: never measure another process
            raise SystemExit(f"{name} exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{name} did not become ready in 30 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Target:
    """One server under test: how to start it and how an item looks to it."""

    name: str
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    ok_status: int = 202
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": JSON})

    def start(self, tmp: Path) -> None:
        raise NotImplementedError

    def item(self, host: str, service: str, failing: bool) -> dict[str, object]:
        raise NotImplementedError


class Alertd(Target):
    # The `alertd` to run: this interpreter's by default; `--alertd` names another install
    # (a venv on another Python build), while the client stays in this one.
    program = Path(sys.executable).with_name("alertd")

    def __init__(self) -> None:
        auth = {"Content-Type": JSON, "Authorization": f"Bearer {TOKEN}"}
        super().__init__("alertd", ok_status=202, headers=auth)

    def start(self, tmp: Path) -> None:
        port = free_port()
        config = tmp / "alertd.toml"
        config.write_text(
            f'[server]\nlisten = "127.0.0.1:{port}"\n'
            f'[store]\npath = "{tmp / "alertd.db"}"\nsynchronous = "FULL"\n'
            f'[auth]\ntokens = ["{TOKEN}"]\n[log]\nlevel = "info"\n'
        )
        alertd = self.program
        # The log (info: one line per opened incident) goes where journald would read it.
        self.log = (tmp / "alertd.log").open("wb")
        self.proc = subprocess.Popen([str(alertd), "run", "--config", str(config)],
                                     stdout=self.log, stderr=self.log)  # fmt: skip
        wait_ready(self.proc, f"http://127.0.0.1:{port}/readyz", "alertd")
        self.url = f"http://127.0.0.1:{port}/api/v1/results"

    async def applied(self, session: aiohttp.ClientSession) -> None:
        """Return once everything acknowledged so far is applied (a read waits for it)."""
        url = self.url.replace("/results", "/incidents?limit=1")
        async with session.get(url, headers=self.headers) as answer:
            assert answer.status == 200, answer.status

    def item(self, host: str, service: str, failing: bool) -> dict[str, object]:
        return {
            "host": host, "service": service, "state": "CRITICAL" if failing else "OK",
            "output": "CRITICAL - bench" if failing else "OK - bench",
            "perfdata": "time=0.012s;1;2;0",
        }  # fmt: skip


class Alertmanager(Target):
    def __init__(self) -> None:
        super().__init__("alertmanager", ok_status=200)
        self.resolved_at = ""

    def start(self, tmp: Path) -> None:
        port, hole = free_port(), free_port()
        # Every alert its own group ("..."), as alertd keeps an incident per key; notifications
        # go to the blackhole soon enough (group_wait 1 s) to happen inside a run.
        (tmp / "am.yml").write_text(
            "route:\n  receiver: hole\n  group_by: ['...']\n  group_wait: 1s\n"
            "  group_interval: 5s\n  repeat_interval: 1h\n"
            f"receivers:\n- name: hole\n  webhook_configs:\n  - url: http://127.0.0.1:{hole}/\n"
            "    send_resolved: true\n"
        )
        self.hole = subprocess.Popen([sys.executable, str(Path(__file__).with_name("blackhole.py")),
                                      str(hole)])  # fmt: skip
        self.proc = subprocess.Popen(
            [ALERTMANAGER, f"--config.file={tmp / 'am.yml'}", f"--storage.path={tmp / 'am'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
             "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_ready(self.proc, f"http://127.0.0.1:{port}/-/ready", "alertmanager")
        self.url = f"http://127.0.0.1:{port}/api/v2/alerts"
        # Resolved alerts end a minute ago: in the past whenever they arrive during the run.
        when = datetime.now(UTC) - timedelta(minutes=1)
        self.resolved_at = when.isoformat().replace("+00:00", "Z")

    def item(self, host: str, service: str, failing: bool) -> dict[str, object]:
        alert: dict[str, object] = {
            "labels": {"alertname": "bench", "instance": host, "service": service,
                       "severity": "critical" if failing else "none"},
            "annotations": {"summary": "CRITICAL - bench" if failing else "OK - bench"},
        }  # fmt: skip
        if not failing:
            alert["endsAt"] = self.resolved_at
        return alert


def keys(count: int, prefix: str) -> list[tuple[str, str]]:
    return [(f"{prefix}host-{k // 10:05d}", f"svc-{k % 10}") for k in range(count)]


def bodies(target: Target, items: list[tuple[str, str, bool]], per: int) -> list[bytes]:
    """Pre-encoded request bodies: the client's own cost stays out of the measured time."""
    out = []
    for start in range(0, len(items), per):
        chunk = [target.item(h, s, f) for h, s, f in items[start : start + per]]
        out.append(orjson.dumps(chunk[0] if per == 1 and isinstance(target, Alertd) else chunk))
    return out


@dataclass
class Figures:
    results: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    loop_cpu: float = 0.0  # the main thread's share of `cpu` (alertd: the event loop)
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    lag: float = 0.0  # open loop: how late the client sent its last request (its own limit)
    # alertd: seconds from the first request until every acknowledged result was applied (its
    # answers come once the results are in its inbox; a read waits for them to be applied).
    applied: float = 0.0

    @property
    def rate(self) -> float:
        return self.results / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000


async def closed_loop(session: aiohttp.ClientSession, target: Target, source: Iterator[bytes],
                      per: int, in_flight: int, until: float | None) -> Figures:  # fmt: skip
    """`in_flight` workers each post the next body as soon as their last one was answered."""
    figures = Figures()

    async def worker() -> None:
        for body in source:
            if until is not None and time.monotonic() >= until:
                return
            sent = time.monotonic()
            async with session.post(target.url, data=body, headers=target.headers) as answer:
                await answer.read()
                if answer.status != target.ok_status:
                    figures.errors += 1
            figures.latencies.append(time.monotonic() - sent)
            figures.results += per

    began, cpu = time.monotonic(), cpu_seconds(target.proc.pid)  # type: ignore[union-attr]
    loop_cpu = loop_cpu_seconds(target.proc.pid)  # type: ignore[union-attr]
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    figures.seconds = time.monotonic() - began
    await settle(session, target, figures, began)
    figures.cpu = cpu_seconds(target.proc.pid) - cpu  # type: ignore[union-attr]
    figures.loop_cpu = loop_cpu_seconds(target.proc.pid) - loop_cpu  # type: ignore[union-attr]
    return figures


async def settle(session: aiohttp.ClientSession, target: Target, figures: Figures,
                 began: float) -> None:  # fmt: skip
    """alertd answers once results are in its inbox and applies them right after: the run
    counts until all are applied too (its CPU included), and says when that was."""
    if isinstance(target, Alertd):
        await target.applied(session)
        figures.applied = time.monotonic() - began


async def open_loop(session: aiohttp.ClientSession, target: Target, source: Iterator[bytes],
                    rate: int, seconds: float) -> Figures:  # fmt: skip
    """One request every 1/rate s on schedule, whether or not earlier ones were answered."""
    figures = Figures()
    pending: set[asyncio.Task[None]] = set()

    async def one(body: bytes, scheduled: float) -> None:
        try:
            async with session.post(target.url, data=body, headers=target.headers) as answer:
                await answer.read()
                if answer.status != target.ok_status:
                    figures.errors += 1
        except aiohttp.ClientError:
            figures.errors += 1
            return
        figures.latencies.append(time.monotonic() - scheduled)
        figures.results += 1

    began, cpu = time.monotonic(), cpu_seconds(target.proc.pid)  # type: ignore[union-attr]
    loop_cpu = loop_cpu_seconds(target.proc.pid)  # type: ignore[union-attr]
    total = int(rate * seconds)
    for n in range(total):
        scheduled = began + n / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(next(source), scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
        figures.lag = max(figures.lag, time.monotonic() - scheduled)
    await asyncio.gather(*pending)
    figures.seconds = time.monotonic() - began
    await settle(session, target, figures, began)
    figures.cpu = cpu_seconds(target.proc.pid) - cpu  # type: ignore[union-attr]
    figures.loop_cpu = loop_cpu_seconds(target.proc.pid) - loop_cpu  # type: ignore[union-attr]
    late = time.monotonic() - began - seconds
    if late > 1:
        print(f"    ({target.name}: last replies {late:.1f} s after the last send)")
    return figures


def cycle(items: list[bytes]) -> Iterator[bytes]:
    while True:
        yield from items


async def run_shape(shape: str, target: Target, args: argparse.Namespace, run: int) -> Figures:
    # Open loop: at most 256 connections, reused (connecting is client work, not the server's).
    connector = aiohttp.TCPConnector(limit=256 if shape == "paced" else 0)
    async with aiohttp.ClientSession(connector=connector) as session:
        if shape == "storm":
            items = [(h, s, True) for _ in range(4) for h, s in keys(5_000, f"s{run}-")]
            return await closed_loop(session, target, iter(bodies(target, items, 100)), 100, 8,
                                     None)  # fmt: skip
        if shape == "churn":
            ks = keys(10_000, "c-")
            await closed_loop(session, target, iter(bodies(target, [(h, s, True) for h, s in ks],
                                                            100)), 100, 8, None)  # fmt: skip
            rounds = [bodies(target, [(h, s, r % 2 == 1) for h, s in ks], 100) for r in range(2)]
            source: Iterator[bytes] = (body for r in range(10**6) for body in rounds[r % 2])
            return await closed_loop(session, target, source, 100, 8,
                                     time.monotonic() + args.duration)  # fmt: skip
        if shape == "steady":
            items = [(h, s, n % 10 == 0) for n, (h, s) in enumerate(keys(10_000, "t-"))]
            return await closed_loop(session, target, cycle(bodies(target, items, 100)), 100, 8,
                                     time.monotonic() + args.duration)  # fmt: skip
        items = [(h, s, n % 10 == 0) for n, (h, s) in enumerate(keys(10_000, "p-"))]
        source = cycle(bodies(target, items, 1))
        if shape == "single":
            return await closed_loop(session, target, source, 1, 64,
                                     time.monotonic() + args.duration)  # fmt: skip
        if args.warm > 0:
            await open_loop(session, target, source, args.rate, args.warm)
        return await open_loop(session, target, source, args.rate, args.duration)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=SHAPES, action="append", help="shape(s) to run")
    parser.add_argument("--runs", type=int, default=3, help="runs per target and shape")
    parser.add_argument("--duration", type=float, default=5.0,
                        help="seconds of churn, steady, single and paced")  # fmt: skip
    parser.add_argument("--rate", type=int, default=2000, help="paced requests per second")
    parser.add_argument("--warm", type=float, default=0.5,
                        help="paced: seconds sent at --rate, untimed, before the timed part "
                             "(0: time from the first request)")  # fmt: skip
    parser.add_argument("--alertd-only", action="store_true", help="skip Alertmanager")
    parser.add_argument("--alertd", type=Path, default=Alertd.program,
                        help="the alertd executable to measure (default: this venv's)")  # fmt: skip
    args = parser.parse_args()
    Alertd.program = args.alertd
    targets: list[Callable[[], Target]] = [Alertd]
    if args.alertd_only:
        pass
    elif shutil.which(ALERTMANAGER) is None:
        print(f"{ALERTMANAGER} not installed (Debian: prometheus-alertmanager): alertd only")
    else:
        targets.append(Alertmanager)
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(f"alertd vs Alertmanager: {os.cpu_count()} cores, {args.runs} runs alternating, "
          f"medians; {args.duration:g} s timed per run (storm: 20,000 results)")  # fmt: skip
    for shape in args.only or SHAPES:
        measured: dict[str, list[Figures]] = {}
        for run in range(args.runs):
            order = targets if run % 2 == 0 else targets[::-1]  # who goes first alternates
            for make in order:
                target = make()
                with tempfile.TemporaryDirectory(prefix="alertd-compare-") as tmp:
                    target.start(Path(tmp))
                    try:
                        figures = asyncio.run(run_shape(shape, target, args, run))
                    finally:
                        stop(target.proc)  # type: ignore[arg-type]
                        if isinstance(target, Alertmanager):
                            stop(target.hole)
                        if isinstance(target, Alertd):
                            target.log.close()
                measured.setdefault(target.name, []).append(figures)
        report(shape, measured)
    return 0


def report(shape: str, measured: dict[str, list[Figures]]) -> None:
    med: dict[str, dict[str, float]] = {}
    for name, runs in measured.items():
        med[name] = {
            "rate": statistics.median(f.rate for f in runs),
            "p50": statistics.median(f.pct(50) for f in runs),
            "p99": statistics.median(f.pct(99) for f in runs),
            "cpu_us": statistics.median(1e6 * f.cpu / max(f.results, 1) for f in runs),
            "errors": sum(f.errors for f in runs),
        }
        rates = " / ".join(f"{f.rate:,.0f}" for f in runs)
        lag = max(f.lag for f in runs)
        if lag > 0.005:
            print(f"    ({name}: the client sent up to {lag * 1000:.0f} ms late: its own limit)")
        print(f"{shape:>6} {name:>12}: {med[name]['rate']:>9,.0f} results/s (runs {rates})  "
              f"p50 {med[name]['p50']:6.1f} ms  p99 {med[name]['p99']:6.1f} ms  "
              f"CPU {med[name]['cpu_us']:5.1f} us/result  errors {med[name]['errors']:.0f}")
        if any(f.applied for f in runs):
            applied = statistics.median(f.applied for f in runs)
            answered = statistics.median(f.seconds for f in runs)
            loop = statistics.median(1e6 * f.loop_cpu / max(f.results, 1) for f in runs)
            print(f"{'':>19} all answered in {answered:.2f} s, all applied in {applied:.2f} s "
                  f"({sum(f.results for f in runs) / len(runs) / applied:,.0f} results/s applied)"
                  f"; event loop CPU {loop:.1f} us/result")
    if "alertmanager" in med and med["alertmanager"]["rate"]:
        a, m = med["alertd"], med["alertmanager"]
        line = f"{shape:>6} {'ratio':>12}: {a['rate'] / m['rate']:.2f}x throughput"
        if m["p99"]:
            line += f", p99 {a['p99'] / m['p99']:.1f}x, CPU/result {a['cpu_us'] / m['cpu_us']:.1f}x"
        print(line + " (alertd / Alertmanager)")


if __name__ == "__main__":
    sys.exit(main())
