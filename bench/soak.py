"""Soak under crashes: a real `alertd run` process, a slow helpdesk, mixed load and SIGKILLs.

The sandbox helpdesk (in this process, on loopback) acts on every create, update and note
`--late` seconds after it arrives (it goes on when alertd has died meanwhile), limited to
`--budget` requests a minute. With `--vary`, its speed changes every few seconds between
quick (0.2 s) and `--late`, so that a request sent before a kill can land after one sent
later: what a helpdesk whose load varies does. Load workers each own a slice of the keys and
send one batch of results for their keys per step (so a key's results are strictly in
order): repeats, new problems, recoveries, problems coming back (recurred or reopened
incidents); another task
acknowledges open incidents through the API. Meanwhile alertd is SIGKILLed `--kills` times at
random moments and started again after `--restart-sec` (systemd's `RestartSec=2s`).

Then every key gets a last acknowledged result, alertd settles (the recovery holds end, the
outbox drains), and the bench counts, against what alertd acknowledged and what the helpdesk
recorded in the order it acted:

- lost: acknowledged problem results an incident did not count, or a final state missing;
- counted twice: results counted beyond those sent (acknowledged, or unanswered at a kill);
- duplicate tickets: more than one ticket carrying an incident's tag;
- duplicate notes: a note marker (`alertd-op-<row>`) on a ticket more than once;
- out of order: a note landing after a later operation's note of its incident, or a ticket's
  statuses landing in an order alertd never sent them in;
- wrong final state: an incident open or recovering whose ticket is resolved or closed, a
  resolved incident whose ticket is not, or an incident that should have a ticket and has none.

    ./run bench-soak                       # 20 kills over ~3 minutes, helpdesk 4 s late
    ./run bench-soak --kills 5 --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from alertd.sandbox import SANDBOX, Sandbox, SandboxOptions, create_app

KEY = "soak-helpdesk-key"
TOKEN = "soak-token-0123456789abcdef"
CONFIG = """
[server]
listen = "127.0.0.1:@PORT@"
[store]
path = "@DIR@/alertd.db"
[auth]
tokens_file = "@DIR@/tokens"
[lifecycle]
recovery_hold = "3s"
reopen_window = "1h"
[helpdesk]
url = "@URL@"
requester_email = "noc@example.com"
api_key_file = "@DIR@/helpdesk.key"
rate_limit_per_minute = @BUDGET@
concurrency = @CONCURRENCY@
timeout = "@TIMEOUT@s"
outcome_wait = "@OUTCOME_WAIT@s"
# No agent works these tickets: nothing to poll for.
poll_interval = "0s"
service_grace = "0s"
"""
ALERTD = [sys.executable, "-m", "alertd.cli"]


@dataclass
class Key:
    """What the load sent for one key (host check `soak-NNN`)."""

    host: str
    failing: bool = False
    acked: int = 0  # problem results alertd answered 2xx
    maybe: int = 0  # problem results sent without an answer (a kill in between)
    last_acked: bool | None = None  # failing per the last acknowledged result


@dataclass
class Tally:
    results_acked: int = 0
    results_maybe: int = 0
    refused: int = 0  # connection refused: alertd down, nothing sent
    acks_sent: int = 0
    restarts: list[float] = field(default_factory=list)  # seconds from start to /healthz


class Alertd:
    """One `alertd run` process at a time, on a fixed port and store in `base`."""

    def __init__(self, base: Path, config: Path, port: int) -> None:
        self.base, self.config, self.port = base, config, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = (base / "alertd.log").open("ab")

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "ALERTD_TOKENS")}
        self.proc = subprocess.Popen(
            [*ALERTD, "run", "--config", str(self.config)], stderr=self.log, env=env
        )

    async def ready(self, limit: float = 60.0) -> float:
        started = time.monotonic()
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(self.url + "/healthz") as answer:
                        if answer.status == 200:
                            return time.monotonic() - started
                except aiohttp.ClientError:
                    pass
                assert self.proc is not None and self.proc.poll() is None, "alertd exited"
                assert time.monotonic() - started < limit, "alertd never came up"
                await asyncio.sleep(0.02)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> int:
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(60)
        finally:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def send_batch(
    http: aiohttp.ClientSession, url: str, keys: list[Key], states: list[bool], tally: Tally
) -> bool:
    """One batch, one result per key; records what alertd acknowledged. True if answered."""
    body = [
        {"host": k.host, "state": "DOWN" if bad else "UP", "output": "soak"}
        for k, bad in zip(keys, states, strict=True)
    ]
    try:
        async with http.post(url + "/api/v1/results", json=body) as answer:
            ok = answer.status == 202
            if not ok and answer.status != 503:
                raise AssertionError(f"results refused: {answer.status} {await answer.text()}")
    except aiohttp.ClientConnectorError:
        tally.refused += 1
        return False  # never reached alertd
    except (aiohttp.ClientError, TimeoutError):
        ok = None  # sent, answer lost: may or may not have been applied
    for k, bad in zip(keys, states, strict=True):
        if ok:
            k.acked += bad
            k.last_acked = bad
            k.failing = bad
        elif ok is None:
            k.maybe += bad
            k.failing = bad
    if ok:
        tally.results_acked += len(keys)
    elif ok is None:
        tally.results_maybe += len(keys)
    return bool(ok)


async def worker(
    http: aiohttp.ClientSession,
    url: str,
    keys: list[Key],
    until: float,
    flip: float,
    pause: float,
    rng: random.Random,
    tally: Tally,
) -> None:
    while time.monotonic() < until:
        states = [(not k.failing) if rng.random() < flip else k.failing for k in keys]
        await send_batch(http, url, keys, states, tally)
        await asyncio.sleep(pause)


async def acker(
    http: aiohttp.ClientSession, url: str, until: float, rng: random.Random, tally: Tally
) -> None:
    """Acknowledge an open incident through the API every second or so (a note each)."""
    while time.monotonic() < until:
        await asyncio.sleep(rng.uniform(0.5, 1.5))
        try:
            async with http.get(url + "/api/v1/incidents?status=open&limit=200") as answer:
                found = (await answer.json())["incidents"] if answer.status == 200 else []
            fresh = [i for i in found if not i["acknowledged"]]
            if not fresh:
                continue
            pick = rng.choice(fresh)
            body = {"author": "soak", "comment": "on it"}
            async with http.post(f"{url}/api/v1/incidents/{pick['id']}/ack", json=body) as answer:
                if answer.status == 202 or answer.status == 200:
                    tally.acks_sent += 1
        except (aiohttp.ClientError, TimeoutError):
            pass


async def speed(sandbox: Sandbox, late: float, until: float, rng: random.Random) -> None:
    """A helpdesk whose speed varies: quick or `late` seconds late, by turns of 1-5 s."""
    while time.monotonic() < until:
        sandbox.options.act_late = rng.choice((0.2, late))
        await asyncio.sleep(rng.uniform(1, 5))
    sandbox.options.act_late = late


async def killer(
    alertd: Alertd, kills: int, until: float, restart_sec: float, rng: random.Random, tally: Tally
) -> None:
    """`kills` SIGKILLs at random moments before `until`, each followed by a restart."""
    span = until - time.monotonic()
    moments = sorted(rng.uniform(0, span) for _ in range(kills))
    base = time.monotonic()
    for moment in moments:
        await asyncio.sleep(max(0.0, base + moment - time.monotonic()))
        alertd.kill()
        await asyncio.sleep(restart_sec)
        alertd.start()
        tally.restarts.append(await alertd.ready())


async def fetch_all(http: aiohttp.ClientSession, url: str, path: str, field: str) -> list[Any]:
    items: list[Any] = []
    before: int | None = None
    while True:
        query = f"?limit=1000{'' if before is None else f'&before={before}'}"
        async with http.get(url + path + query) as answer:
            assert answer.status == 200, await answer.text()
            page = await answer.json()
        items += page[field]
        if len(page[field]) < 1000:
            return items
        before = page[field][-1]["id"]


async def settle(
    http: aiohttp.ClientSession, url: str, limit: float
) -> tuple[float, dict[str, int]]:
    """Wait until the recovery holds have ended and nothing is pending; (seconds, counts)."""
    started = time.monotonic()
    counts: dict[str, int] = {}
    await asyncio.sleep(4)  # the 3 s recovery hold of the last recoveries
    while time.monotonic() - started < limit:
        async with http.get(url + "/api/v1/outbox?limit=1") as answer:
            counts = (await answer.json())["counts"]
        async with http.get(url + "/api/v1/incidents?status=recovering&limit=1") as answer:
            recovering = (await answer.json())["incidents"]
        if counts["pending"] == 0 and not recovering:
            break
        await asyncio.sleep(1)
    return time.monotonic() - started, counts


MARKER = re.compile(r"alertd-op-(\d+)")


def audit(
    keys: list[Key], incidents: list[dict[str, Any]], ops: list[dict[str, Any]], sandbox: Sandbox
) -> dict[str, int]:
    """The counts the soak is about (module docstring)."""
    by_host = {i["host"]: i for i in incidents}
    counts: Counter[str] = Counter()
    for k in keys:
        incident = by_host.get(k.host)
        counted = incident["occurrences"] if incident is not None else 0
        counts["lost"] += max(0, k.acked - counted)
        counts["counted twice"] += max(0, counted - k.acked - k.maybe)
        if incident is not None:
            failing = incident["status"] in ("open", "pending")
            if k.last_acked is not None and failing != k.last_acked:
                counts["final state lost"] += 1
    # Tickets by incident tag (the tag is the last one alertd sets).
    tickets_of: dict[int, list[int]] = defaultdict(list)
    for ticket_id, ticket in sandbox.tickets.items():
        for tag in ticket.get("tags") or []:
            if m := re.fullmatch(r"alertd-[^-]+-(\d+)", tag):
                tickets_of[int(m[1])].append(ticket_id)
    counts["duplicate tickets"] = sum(len(t) - 1 for t in tickets_of.values())
    for notes in sandbox.notes.values():
        markers = Counter(m[1] for n in notes for m in [MARKER.search(str(n["body"]))] if m)
        counts["duplicate notes"] += sum(n - 1 for n in markers.values())
    # Order: per ticket, the note markers in the order the helpdesk acted on them, and the
    # statuses its PUTs set against the statuses alertd's updates meant to set, in row order.
    sent: dict[int, list[int]] = defaultdict(list)
    for op in sorted(ops, key=lambda o: o["id"]):
        status = (op["payload"].get("fields") or {}).get("status")
        if op["op"] == "update" and status is not None:
            sent[op["incident_id"]].append(int(status))
    landed_notes: dict[int, list[int]] = defaultdict(list)
    landed_statuses: dict[int, list[int]] = defaultdict(list)
    for applied in sandbox.applied:
        if applied.kind == "note" and (m := MARKER.search(str(applied.body.get("body")))):
            landed_notes[applied.ticket_id].append(int(m[1]))
        elif applied.kind == "update" and "status" in applied.body:
            landed_statuses[applied.ticket_id].append(int(applied.body["status"]))
    for rows in landed_notes.values():
        highest = 0
        for row in dict.fromkeys(rows):  # a duplicate is counted above, not as disorder
            counts["out of order"] += row < highest
            highest = max(highest, row)
    incident_of = {t: i for i, ts in tickets_of.items() for t in ts}
    for ticket_id, statuses in landed_statuses.items():
        meant = sent.get(incident_of.get(ticket_id, -1), [])
        counts["out of order"] += not _subsequence(_runs(statuses), _runs(meant))
    # Final states.
    for incident in incidents:
        ticket_ids = tickets_of.get(incident["id"], [])
        if not ticket_ids:
            counts["wrong final state"] += incident["status"] != "pending"
            continue
        status = sandbox.tickets[max(ticket_ids)]["status"]
        resolved = incident["status"] == "resolved"
        counts["wrong final state"] += resolved != (status in (4, 5))
    for name in ("lost", "counted twice", "final state lost", "duplicate tickets",
                 "duplicate notes", "out of order", "wrong final state"):  # fmt: skip
        counts.setdefault(name, 0)
    return dict(counts)


def _runs(values: list[int]) -> list[int]:
    return [v for v, _ in itertools.groupby(values)]


def _subsequence(part: list[int], whole: list[int]) -> bool:
    it = iter(whole)
    return all(any(v == w for w in it) for v in part)


async def start_helpdesk(options: SandboxOptions) -> tuple[web.AppRunner, Sandbox, str]:
    """The sandbox helpdesk on a free loopback port, in this process (so the bench can read
    what it did and in which order): its runner, its state and its URL."""
    app = create_app(options)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, app[SANDBOX], f"http://127.0.0.1:{runner.addresses[0][1]}"


def configure(base: Path, helpdesk_url: str, values: dict[str, object], extra: str = "") -> Alertd:
    """alertd's token, helpdesk key and config (CONFIG with `values` filled in) in `base`."""
    (base / "tokens").write_text(TOKEN + "\n")
    (base / "helpdesk.key").write_text(KEY)
    port = free_port()
    text = CONFIG
    for name, value in {"PORT": port, "DIR": base, "URL": helpdesk_url, **values}.items():
        text = text.replace(f"@{name}@", str(value))
    config = base / "alertd.toml"
    config.write_text(text + extra)
    return Alertd(base, config, port)


async def main(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    options = SandboxOptions(api_key=KEY, rate_limit_per_minute=args.budget, act_late=args.late)
    runner, sandbox, helpdesk_url = await start_helpdesk(options)
    with tempfile.TemporaryDirectory(prefix="alertd-soak-") as tmp:
        base = Path(tmp)
        alertd = configure(base, helpdesk_url, {
            "BUDGET": args.budget, "CONCURRENCY": args.concurrency,
            "TIMEOUT": f"{args.timeout:g}", "OUTCOME_WAIT": f"{args.outcome_wait:g}",
        })  # fmt: skip
        alertd.start()
        tally = Tally()
        tally.restarts.append(await alertd.ready())
        keys = [Key(f"soak-{n:04d}") for n in range(args.keys)]
        slices = [keys[n :: args.workers] for n in range(args.workers)]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        timeout = aiohttp.ClientTimeout(total=30)
        started = time.monotonic()
        until = started + args.duration
        try:
            async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
                await asyncio.gather(
                    *(
                        worker(http, alertd.url, s, until, args.flip, args.pause, rng, tally)
                        for s in slices
                    ),
                    acker(http, alertd.url, until, rng, tally),
                    killer(alertd, args.kills, until - 5, args.restart_sec, rng, tally),
                    *([speed(sandbox, args.late, until, rng)] if args.vary else []),
                )
                # Every key's last word, acknowledged (retried until alertd answers).
                for s in slices:
                    last = [rng.random() < 0.5 for _ in s]
                    while not await send_batch(http, alertd.url, s, last, tally):  # noqa: ASYNC110
                        await asyncio.sleep(0.5)  # alertd restarting: try again
                load = time.monotonic() - started
                took, outbox = await settle(http, alertd.url, args.settle)
                incidents = await fetch_all(http, alertd.url, "/api/v1/incidents", "incidents")
                ops = await fetch_all(http, alertd.url, "/api/v1/outbox", "operations")
        finally:
            code = alertd.stop()
            await runner.cleanup()
        counts = audit(keys, incidents, ops, sandbox)
        log = (base / "alertd.log").read_text(errors="replace")
    report(args, tally, load, took, outbox, counts, sandbox, code, log)
    return 0 if not any(counts.values()) and not outbox["pending"] else 1


def report(
    args: argparse.Namespace,
    tally: Tally,
    load: float,
    took: float,
    outbox: dict[str, int],
    counts: dict[str, int],
    sandbox: Sandbox,
    code: int,
    log: str,
) -> None:
    writes = Counter(a.kind for a in sandbox.applied)
    print(
        f"soak: {args.keys} keys, {args.kills} SIGKILLs in {load:.0f} s of load, helpdesk "
        f"{'0.2 or ' if args.vary else ''}{args.late:g} s late, {args.budget}/min; "
        f"alertd timeout {args.timeout:g} s + "
        f"outcome_wait {args.outcome_wait:g} s, concurrency {args.concurrency}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"  results acknowledged:      {tally.results_acked:8d}")
    print(f"  results unanswered (kill): {tally.results_maybe:8d}")
    print(f"  requests refused (down):   {tally.refused:8d}")
    print(f"  acks through the API:      {tally.acks_sent:8d}")
    ups = sorted(tally.restarts)
    middle = ups[len(ups) // 2]
    print(f"  starts: {len(ups)}, to /healthz median {middle:.2f} s, max {ups[-1]:.2f} s")
    print(f"  helpdesk acted on: {writes['create']} creates, {writes['update']} updates, "
          f"{writes['note']} notes")  # fmt: skip
    print(f"  settled in {took:.0f} s; outbox pending {outbox['pending']}, done {outbox['done']}, "
          f"dead {outbox['dead']}; clean stop exit {code}")  # fmt: skip
    print(f"  log lines: {log.count(chr(10))}, tracebacks: {log.count('Traceback')}")
    for name, value in counts.items():
        print(f"  {name + ':':26s} {value:8d}   (target 0)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs (default %(default)s)")
    parser.add_argument("--duration", type=float, default=180, help="seconds of load")
    parser.add_argument("--keys", type=int, default=200, help="host checks (default %(default)s)")
    parser.add_argument("--workers", type=int, default=4, help="load workers, each its own keys")
    parser.add_argument("--pause", type=float, default=1.0, help="s between a worker's batches")
    parser.add_argument("--flip", type=float, default=0.02,
                        help="chance a key flips per batch (default %(default)s)")  # fmt: skip
    parser.add_argument("--late", type=float, default=4.0, help="helpdesk lateness, seconds")
    parser.add_argument("--vary", action="store_true", help="quick and late by turns")
    parser.add_argument("--budget", type=int, default=1000, help="helpdesk requests per minute")
    parser.add_argument("--concurrency", type=int, default=32, help="alertd helpdesk workers")
    parser.add_argument("--timeout", type=float, default=10, help="alertd helpdesk timeout, s")
    parser.add_argument("--outcome-wait", type=float, default=10, help="alertd outcome_wait, s")
    parser.add_argument("--restart-sec", type=float, default=2.0, help="systemd's RestartSec")
    parser.add_argument("--settle", type=float, default=600, help="longest wait to settle, s")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    sys.exit(asyncio.run(main(parser.parse_args())))
