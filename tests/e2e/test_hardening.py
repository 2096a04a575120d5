"""The daemon under the unit's MemoryDenyWriteExecute=yes: Python and every dependency still run.

systemd implements MemoryDenyWriteExecute with seccomp, or (v254+) with the kernel's own
PR_SET_MDWE, which refuses writable+executable memory for the process and everything it execs.
This test puts the daemon under PR_SET_MDWE (no systemd needed) and runs it for real: uvloop,
orjson, aiohttp, aiosqlite, prometheus-client and structlog must all load and work.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.proc import free_port, log_file, start, stop, wait_ready

PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1

# Turn MDWE on for this process, then exec the interpreter with the remaining arguments.
UNDER_MDWE = f"""
import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0):
    sys.exit(f"PR_SET_MDWE failed: errno {{ctypes.get_errno()}}")
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""
WRAPPER = [sys.executable, "-c", UNDER_MDWE]


def mdwe_available() -> bool:
    probe = subprocess.run([*WRAPPER, "-c", "pass"], capture_output=True, timeout=30)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not mdwe_available(),
    reason="needs Linux >= 6.3 (PR_SET_MDWE)",
)


def test_the_wrapper_really_forbids_write_execute_memory() -> None:
    """The guard holds across exec: W+X mmap is refused in the exec'd interpreter."""
    code = (
        "import ctypes, mmap\n"
        f"assert ctypes.CDLL(None).prctl({PR_GET_MDWE}, 0, 0, 0, 0) == 1\n"
        "try:\n"
        "    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "except PermissionError:\n"
        "    print('refused')\n"
    )
    out = subprocess.run([*WRAPPER, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout == "refused\n", out.stderr


def test_daemon_serves_and_stops_under_memory_deny_write_execute(tmp_path: Path) -> None:
    """Start, ingest, scrape metrics, stop: all with W+X memory forbidden."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "alertd.toml"
    config.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\n[store]\npath = "a.db"\n'
                      "[auth]\ndisabled = true\n")
    proc = start(config, python=WRAPPER)
    try:
        wait_ready(base, proc)
        request = urllib.request.Request(
            f"{base}/api/v1/results",
            json.dumps({"host": "web-01", "state": "DOWN"}).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 202
        # A read waits for what was acknowledged (the metrics do not: a scrape never waits).
        with urllib.request.urlopen(f"{base}/api/v1/incidents", timeout=5) as response:
            assert b'"web-01"' in response.read()
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            assert b"alertd_incidents_opened_total 1.0" in response.read()
        proc.send_signal(signal.SIGTERM)
    finally:
        returncode = stop(proc)
    assert returncode == 0, log_file(config).read_text()[-2000:]
