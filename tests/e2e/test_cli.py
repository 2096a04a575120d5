"""The `alertd` command as an operator runs it: check-config, and run until SIGTERM."""

from __future__ import annotations

import asyncio
import dataclasses
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
import structlog

from alertd.cli.main import main
from alertd.config import Config, load_config
from alertd.daemon import serving

ALERTD = [sys.executable, "-m", "alertd.cli"]


def test_check_config_reports_every_problem_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad file exits 1 and names file, key and reason for each problem; a good one exits 0."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[lifecycle]\nrecovery_hold = "soon"\n[server]\nlisten = "nowhere"\nport = 1\n')
    assert main(["check-config", "--config", str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4
    assert all(line.startswith(f"{bad}: ") for line in err)
    assert any("auth.tokens: no API token" in line for line in err)  # auth fails closed
    assert any("lifecycle.recovery_hold" in line and "'soon'" in line for line in err)

    good = tmp_path / "good.toml"
    good.write_text('[server]\nlisten = "127.0.0.1:9999"\n[auth]\ntokens = ["t0k"]\n')
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
        "[auth]\ndisabled = true\n"
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
    assert events[0] == "auth_disabled"  # an open API on purpose: the operator is warned
    assert {"listening", "shutting_down", "stopped"} <= set(events)
    with sqlite3.connect(tmp_path / "a.db") as db:
        assert db.execute("SELECT host, occurrences FROM incidents").fetchall() == [("web-01", 3)]


HELP_COMMANDS = [
    ["run"],
    ["check-config"],
    ["incidents"],
    ["incidents", "list"],
    ["incidents", "show"],
    ["demo"],
]


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example_or_explanation(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--help of each command exits 0 and says more than the usage line."""
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: alertd {' '.join(command)}")
    assert len(text.splitlines()) > 6


async def test_incidents_list_and_show_talk_to_a_running_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """list prints a table and show the detail with events; token from env or file; 401 and
    an unreachable daemon are one clear line on stderr and exit 1."""
    config_file = tmp_path / "alertd.toml"
    config_file.write_text('[store]\npath = "a.db"\n[auth]\ntokens = ["cli-tok"]\n')
    config = load_config(config_file, env={})
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, port=0))
    (tmp_path / "token").write_text("cli-tok\n")
    # The daemon's own logs are captured aside, so stdout holds only what the CLI printed.
    with structlog.testing.capture_logs():
        await _incidents_session(config, tmp_path, capsys)


async def _incidents_session(
    config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with serving(config) as url:
        body = json.dumps(
            [{"host": "db-01", "service": "MySQL", "state": "CRITICAL", "output": "down"}] * 2
            + [{"host": "web-01", "state": "DOWN", "output": "PING CRITICAL"}]
        ).encode()
        request = urllib.request.Request(
            f"{url}/api/v1/results",
            body,
            {"Content-Type": "application/json", "Authorization": "Bearer cli-tok"},
        )
        await asyncio.to_thread(urllib.request.urlopen, request)

        def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
            code = main(["incidents", *args, "--url", url], env=env or {})
            out, err = capsys.readouterr()
            return code, out, err

        code, out, _ = await asyncio.to_thread(cli, "list", env={"ALERTD_TOKEN": "cli-tok"})
        assert code == 0
        header, first, second = out.splitlines()
        assert header.split()[:5] == ["ID", "PRIORITY", "STATUS", "STATE", "KEY"]
        assert first.split()[:5] == ["2", "high", "open", "DOWN/HARD", "web-01"]
        assert second.split()[:5] == ["1", "high", "open", "CRITICAL/HARD", "db-01/MySQL"]
        assert second.rstrip().endswith("down")

        token_file = str(tmp_path / "token")
        code, out, _ = await asyncio.to_thread(cli, "show", "1", "--token-file", token_file)
        assert code == 0
        assert out.startswith("incident 1: db-01/MySQL\n")
        assert "  occurrences   2" in out
        assert "priority      high = impact medium (default impact) x urgency high" in out
        assert "events (2):" in out and " opened " in out and " deduplicated " in out

        code, out, _ = await asyncio.to_thread(cli, "list", "--json", "--token-file", token_file)
        assert [i["id"] for i in json.loads(out)["incidents"]] == [2, 1]

        code, out, err = await asyncio.to_thread(cli, "list")
        assert code == 1 and out == ""
        assert err.startswith("alertd: alertd refused the token (missing Authorization header")
        assert "ALERTD_TOKEN" in err
        code, _, err = await asyncio.to_thread(cli, "show", "99", "--token-file", token_file)
        assert code == 1 and err == "alertd: alertd answered 404: incident 99 not found\n"

    code = main(["incidents", "list", "--url", "http://127.0.0.1:9"], env={})
    assert code == 1
    assert capsys.readouterr().err.startswith("alertd: cannot reach alertd at http://127.0.0.1:9")


def test_run_listens_where_listen_says_without_a_config_file(tmp_path: Path) -> None:
    """`alertd run --listen HOST:PORT` needs no config file to change the port."""
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2]),
           "XDG_STATE_HOME": str(tmp_path), "HOME": str(tmp_path),
           "ALERTD_TOKENS": "listen-test-token"}  # fmt: skip
    proc = subprocess.Popen(
        [*ALERTD, "run", "--listen", f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL, env=env
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    health = json.loads(r.read())
                    assert health["status"] == "ok"
                    if "starting" not in health:  # loaded, not only bound
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()
