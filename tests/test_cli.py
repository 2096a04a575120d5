"""The `alertd` command as an operator runs it: check-config, and run until SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from alertd.cli import main

ALERTD = [sys.executable, "-m", "alertd.cli"]


def test_check_config_reports_every_problem_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad file exits 1 and names file, key and reason for each problem; a good one exits 0."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[lifecycle]\nrecovery_hold = "soon"\n[server]\nlisten = "nowhere"\nport = 1\n')
    assert main(["check-config", "--config", str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3
    assert all(line.startswith(f"{bad}: ") for line in err)
    assert any("lifecycle.recovery_hold" in line and "'soon'" in line for line in err)

    good = tmp_path / "good.toml"
    good.write_text('[server]\nlisten = "127.0.0.1:9999"\n')
    assert main(["check-config", "--config", str(good)]) == 0
    assert capsys.readouterr().out.startswith("config OK: listen 127.0.0.1:9999")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_serves_until_sigterm_and_keeps_what_it_accepted(tmp_path: Path) -> None:
    """`alertd run` listens where configured, commits what it accepts, exits 0 on SIGTERM."""
    port = free_port()
    config = tmp_path / "alertd.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n[store]\npath = "{tmp_path / "a.db"}"\n'
    )
    proc = subprocess.Popen(
        [*ALERTD, "run", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"{base}/readyz", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "daemon never became ready"
                time.sleep(0.05)
        body = json.dumps([{"host": "web-01", "state": "DOWN"}] * 3).encode()
        request = urllib.request.Request(
            f"{base}/api/v1/results", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 202
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0
    logged = [json.loads(line) for line in stderr.splitlines()]
    events = [e["event"] for e in logged]
    assert events[0] == "auth_disabled"  # no tokens: the operator is warned
    assert {"listening", "shutting_down", "stopped"} <= set(events)
    with sqlite3.connect(tmp_path / "a.db") as db:
        assert db.execute("SELECT host, occurrences FROM incidents").fetchall() == [("web-01", 3)]
