"""Ingest benchmark: results/s and latency of POST /api/v1/results against a real daemon.

Starts `alertd run` as its own process (SQLite in a temp dir, synchronous=FULL unless told
otherwise), waits until it is ready, then drives it with wrk (Debian package `wrk`; a C load
generator, so the client is not the bottleneck) from the same machine. Two workloads:

  single  one result per request, 64 connections
  batch   1,000 results per request, 8 connections
  nrdp    1,000 results per request as NRDP submitcheck (form-encoded XML), 8 connections

Each over a key space of 10,000 services where `--failing` percent of them are CRITICAL (every
result for them updates an incident row) and the rest OK; `--failing 100` is the worst case.

    ./run bench                      # both workloads, 10 s each
    ./run bench --duration 30 --failing 100 --synchronous NORMAL
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from xml.sax.saxutils import escape

KEYS = 10_000
NRDP_TOKEN = "bench-token"
LUA = r"""
local bodies = {}
local n = 0
local f = io.open("%(bodies)s")
for line in f:lines() do n = n + 1; bodies[n] = line end
f:close()
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "%(content_type)s"
request = function()
  i = i %% n + 1
  return wrk.format(nil, "%(path)s", nil, bodies[i])
end
"""


def result(n: int, failing_pct: int) -> dict[str, object]:
    key = n % KEYS
    failing = key % 100 < failing_pct
    return {
        "host": f"host-{key // 10:04d}",
        "service": f"svc-{key % 10}",
        "state": "CRITICAL" if failing else "OK",
        "output": "CRITICAL - bench" if failing else "OK - bench",
        "perfdata": "time=0.012s;1;2;0",
    }


def nrdp_body(items: list[dict[str, object]]) -> str:
    """What send_nrdp_py2.py / send_nrdp.php send: a form with properly encoded XML."""
    checks = "".join(
        f"<checkresult type='service' checktype='1'><hostname>{i['host']}</hostname>"
        f"<servicename>{i['service']}</servicename><state>{2 if i['state'] == 'CRITICAL' else 0}"
        f"</state><output>{escape(str(i['output']))}|{i['perfdata']}</output></checkresult>"
        for i in items
    )
    xml = f"<?xml version='1.0'?>\n<checkresults>{checks}</checkresults>"
    return urllib.parse.urlencode({"token": NRDP_TOKEN, "cmd": "submitcheck", "xml": xml})


def write_bodies(path: Path, kind: str, per_request: int, count: int, failing_pct: int) -> None:
    with path.open("w") as out:
        n = 0
        for _ in range(count):
            items = [result(n + i, failing_pct) for i in range(per_request)]
            n += per_request
            if kind == "nrdp":
                out.write(nrdp_body(items) + "\n")
                continue
            body = items[0] if per_request == 1 else items
            out.write(json.dumps(body, separators=(",", ":")) + "\n")


def check_nrdp(port: int, bodies: Path) -> None:
    """wrk counts only HTTP codes, and NRDP refuses with 200: check one answer's <status>."""
    body = bodies.read_text().split("\n", 1)[0].encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/nrdp/", body,
        {"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = response.read().decode()
    if "<status>0</status>" not in answer:
        raise SystemExit(f"NRDP refused the bench body:\n{answer}")


def start_daemon(tmp: Path, port: int, synchronous: str) -> subprocess.Popen[bytes]:
    config = tmp / "bench.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n'
        f'[store]\npath = "{tmp / "bench.db"}"\nsynchronous = "{synchronous}"\n'
        f'[nrdp]\ntokens = ["{NRDP_TOKEN}"]\n[log]\nlevel = "warning"\n'
    )
    alertd = Path(sys.executable).with_name("alertd")
    proc = subprocess.Popen([str(alertd), "run", "--config", str(config)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:  # e.g. the port is taken: never measure another daemon
            raise SystemExit(f"alertd exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("daemon did not become ready in 20 s")


def run_wrk(port: int, script: Path, connections: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency",
         "-s", str(script), f"http://127.0.0.1:{port}"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)", out, re.M)
        if m:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            figures[f"p{pct}_ms"] = float(m.group(1)) * scale
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per workload")
    parser.add_argument("--failing", type=int, default=10, help="percent of keys CRITICAL (0-100)")
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--only", choices=["single", "batch", "nrdp"], help="run one workload")
    args = parser.parse_args()
    if not args.port:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            args.port = probe.getsockname()[1]
    if shutil.which("wrk") is None:
        raise SystemExit("bench needs wrk: apt-get install wrk")

    json_type, form_type = "application/json", "application/x-www-form-urlencoded"
    workloads = [
        ("single", "/api/v1/results", json_type, 1, 64, KEYS),
        ("batch", "/api/v1/results", json_type, 1000, 8, 50),
        ("nrdp", "/nrdp/", form_type, 1000, 8, 50),
    ]
    print(f"alertd ingest benchmark: {os.cpu_count()} cores, synchronous={args.synchronous}, "
          f"{args.failing}% of {KEYS} keys failing, {args.duration}s per workload")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="alertd-bench-") as tmp_name:
        tmp = Path(tmp_name)
        daemon = start_daemon(tmp, args.port, args.synchronous)
        try:
            for name, path, content_type, per_request, connections, count in workloads:
                if args.only and args.only != name:
                    continue
                bodies = tmp / f"{name}.lines"
                write_bodies(bodies, name, per_request, count, args.failing)
                if name == "nrdp":
                    check_nrdp(args.port, bodies)
                script = tmp / f"{name}.lua"
                script.write_text(
                    LUA % {"bodies": bodies, "path": path, "content_type": content_type}
                )
                f = run_wrk(args.port, script, connections, args.duration)
                print(
                    f"{name:>6}: {f['rps'] * per_request:>10,.0f} results/s  "
                    f"{f['rps']:>9,.0f} requests/s  p50 {f.get('p50_ms', 0):7.2f} ms  "
                    f"p99 {f.get('p99_ms', 0):7.2f} ms  ({per_request} per request, "
                    f"{connections} connections, non-2xx {f['non_2xx']:.0f})"
                )
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
