"""`alertd notify` against a running daemon on loopback: env and argument modes, Opsview, the
README's command definitions as written, the spool, and the exit codes."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from alertd.cli import notify
from alertd.cli.spool import Spool
from alertd.config import Config
from alertd.daemon import serving
from tests.support import ROOT, SAMPLES, opsview
from tests.support.proc import free_port, listener

TOKEN = "notify-token"
README = ROOT / "README.md"
DOC_URL, DOC_TOKEN_FILE = "http://alertd.example:8780", "/etc/nagios4/alertd.token"


def macros(name: str) -> dict[str, str]:
    data = json.loads((SAMPLES / f"nagios_{name}.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if k.startswith("NAGIOS_")}


@pytest.fixture
async def daemon(make_config: Callable[[str], Config]) -> AsyncIterator[str]:
    """A real alertd on a free loopback port, requiring a token."""
    config = make_config(f'[auth]\ntokens = ["{TOKEN}"]\n')
    async with serving(replace(config, server=replace(config.server, port=0))) as url:
        yield url


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "alertd.token"
    path.write_text(f"# alertd\n{TOKEN}\n")
    return path


async def run(argv: list[str], env: dict[str, str]) -> int:
    """alertd notify as Nagios runs it, in a thread: it is blocking, synchronous code."""
    return await asyncio.to_thread(notify.main, argv, env)


async def get(url: str) -> Any:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=auth) as session, session.get(url) as response:
        return await response.json()


async def incidents(url: str) -> list[dict[str, Any]]:
    return list((await get(f"{url}/api/v1/incidents"))["incidents"])


def readme_commands() -> dict[str, str]:
    """command_name -> command_line of every `define command` block in the README."""
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"define command \{\n(.*?)\n\}", text, re.S)
    found = {}
    for block in blocks:
        fields = dict(re.findall(r"^\s+(\w+)\s+(.*)$", block, re.M))
        found[fields["command_name"]] = fields["command_line"]
    return found


def expand(command_line: str, values: dict[str, str], url: str, token_file: Path) -> list[str]:
    """What Nagios does: substitute $MACRO$s, then the shell splits the words."""
    line = re.sub(r"\$(\w+)\$", lambda m: values.get(f"NAGIOS_{m.group(1)}", ""), command_line)
    argv = shlex.split(line.replace(DOC_URL, url).replace(DOC_TOKEN_FILE, str(token_file)))
    assert argv[:2] == ["/usr/local/bin/alertd", "notify"]
    return argv[2:]


async def test_readme_commands_work_as_written(
    daemon: str, token_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each `define command` of the README, expanded as Nagios would, delivers (exit 0)."""
    commands = readme_commands()
    assert set(commands) == {
        "alertd-notify", "notify-service-by-alertd", "notify-host-by-alertd", "alertd-ocsp",
        "alertd-ochp",
    }  # fmt: skip
    spool = ["--spool-dir", str(tmp_path / "spool")]
    host_down = {**macros("ochp_host_up"), "NAGIOS_HOSTSTATE": "DOWN", "NAGIOS_HOSTSTATEID": "1"}
    cases = [
        ("alertd-ocsp", macros("ocsp_soft_critical")),
        ("notify-service-by-alertd", macros("notification_problem")),
        ("alertd-ochp", host_down),
        ("notify-host-by-alertd", {**host_down, "NAGIOS_NOTIFICATIONTYPE": "PROBLEM"}),
    ]
    for name, values in cases:
        assert await run(expand(commands[name], values, daemon, token_file) + spool, {}) == 0

    found = {i["key"]: i for i in await incidents(daemon)}
    disk, host = found["web-01/Disk /var"], found["web-01"]
    assert (disk["status"], disk["check_state"], disk["perfdata"]) == (
        "open", "CRITICAL", "var=97%;90;95;0;100",
    )  # fmt: skip
    assert (host["status"], host["check_state"]) == ("open", "DOWN")
    # Only notify's own lines: the daemon in this process logs to stdout too.
    out = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("alertd notify:")]
    assert out[1] == "alertd notify: delivered PROBLEM web-01/Disk /var"
    assert all(TOKEN not in line for line in out)

    # With environment macros: the one short command, everything from the environment.
    env = macros("notification_recovery")
    assert await run(expand(commands["alertd-notify"], {}, daemon, token_file) + spool, env) == 0
    found = {i["key"]: i for i in await incidents(daemon)}
    assert found["web-01/Disk /var"]["status"] == "recovering"


async def test_opsview_wrapper_as_written(daemon: str, token_file: Path, tmp_path: Path) -> None:
    """The README's Opsview wrapper script, run with Opsview's variable subset, delivers."""
    text = README.read_text(encoding="utf-8")
    script = re.search(r"```sh\n(#!/bin/sh\n# notify_by_alertd.*?)```", text, re.S)
    assert script
    alertd = f"{shlex.quote(sys.executable)} -m alertd.cli"
    body = script.group(1).replace("/usr/local/bin/alertd", alertd).replace(DOC_URL, daemon)
    body = body.replace("/opt/opsview/monitoringscripts/etc/alertd.token", str(token_file))
    path = tmp_path / "notify_by_alertd"
    path.write_text(body)
    path.chmod(0o755)
    env = {**opsview(macros("notification_problem")), "PATH": os.environ["PATH"],
           "HOME": str(tmp_path), "PYTHONPATH": str(README.parent)}  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, [str(path)], env=env, capture_output=True, text=True, timeout=30
    )
    assert (done.returncode, done.stdout) == (
        0, "alertd notify: delivered PROBLEM web-01/Disk /var\n",
    )  # fmt: skip
    (incident,) = await incidents(daemon)
    assert (incident["key"], incident["status"]) == ("web-01/Disk /var", "open")


async def test_spools_when_down_and_delivers_oldest_first_on_next_run(
    daemon: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Daemon down: exit 1 and the notification waits in the spool (atomically written, no
    token in it); the next run delivers it before its own, so PROBLEM precedes RECOVERY."""
    spool = tmp_path / "spool"
    env = {"ALERTD_TOKEN": TOKEN}
    down = f"http://127.0.0.1:{free_port()}"
    argv = ["--spool-dir", str(spool), "--retries", "0"]
    assert await run([*argv, "--url", down], {**env, **macros("notification_problem")}) == 1
    (waiting,) = spool.glob("*.json")
    assert json.loads(waiting.read_text())["NAGIOS_NOTIFICATIONTYPE"] == "PROBLEM"
    assert TOKEN not in waiting.read_text()
    assert not list(spool.glob(".*.tmp"))
    assert "spooled in" in capsys.readouterr().out

    assert await run([*argv, "--url", daemon], {**env, **macros("notification_recovery")}) == 0
    assert capsys.readouterr().out == (
        "alertd notify: delivered RECOVERY web-01/Disk /var (+1 from spool)\n"
    )
    assert list(spool.glob("*.json")) == []
    (incident,) = await incidents(daemon)
    assert incident["status"] == "recovering"
    detail = await get(f"{daemon}/api/v1/incidents/{incident['id']}")
    assert [e["kind"] for e in detail["events"]] == ["opened", "recovering"]


async def test_exit_codes_name_what_the_admin_must_fix(
    daemon: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Wrong token: exit 2 and spooled (deliverable once fixed); malformed: exit 2, not spooled;
    no host at all: exit 2 before anything is sent. The token never shows."""
    spool = tmp_path / "spool"
    base = ["--url", daemon, "--spool-dir", str(spool), "--retries", "0"]
    problem = macros("notification_problem")

    assert await run(base, {**problem, "ALERTD_TOKEN": "wrong-token"}) == 2
    out = capsys.readouterr().out
    assert "refused (HTTP 401: invalid token); spooled" in out and "wrong-token" not in out
    assert len(list(spool.glob("*.json"))) == 1

    # With the right token the spooled one goes first; the malformed one is refused alone.
    bad = {**problem, "NAGIOS_SERVICESTATE": "SIDEWAYS", "ALERTD_TOKEN": TOKEN}
    assert await run(base, bad) == 2
    out = capsys.readouterr().out
    assert out.startswith("alertd notify: PROBLEM web-01/Disk /var refused as malformed")
    assert "'SIDEWAYS' is not one of OK, WARNING, CRITICAL, UNKNOWN" in out
    assert list(spool.glob("*.json")) == []
    assert [i["status"] for i in await incidents(daemon)] == ["open"]

    assert await run(base, {"ALERTD_TOKEN": TOKEN}) == 2
    assert "no host: set enable_environment_macros=1" in capsys.readouterr().out


async def test_latin1_bytes_from_nagios_arrive_replaced_and_never_block_the_spool(
    daemon: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Non-UTF-8 bytes in the environment (lone surrogates to Python) are sent and spooled as
    U+FFFD; a spooled notification holding them as JSON escapes (an older notify's) is
    delivered too, not retried forever."""
    spool = Spool.open(tmp_path / "spool", {})
    older = {**macros("notification_problem"), "NAGIOS_SERVICEOUTPUT": "DISK caf\udce9"}
    older_path = spool.put(json.dumps(older).encode())
    env = {**macros("ocsp_soft_critical"), "NAGIOS_HOSTNAME": "db-01", "ALERTD_TOKEN": TOKEN}
    env["NAGIOS_SERVICEOUTPUT"] = "DISK caf\udce9 \ud800"  # the OS's escape, and a bare one
    argv = ["--spool-dir", str(spool.path), "--retries", "0"]
    assert await run([*argv, "--url", f"http://127.0.0.1:{free_port()}"], env) == 1
    (spooled,) = set(spool.pending()) - {older_path}
    assert json.loads(spooled.read_bytes())["NAGIOS_SERVICEOUTPUT"] == "DISK caf\ufffd \ufffd"

    assert (
        await run([*argv, "--url", daemon], {"ALERTD_TOKEN": TOKEN, **macros("ochp_host_up")}) == 0
    )
    assert "(+2 from spool)" in capsys.readouterr().out
    found = {i["key"]: i["last_output"] for i in await incidents(daemon)}
    assert found == {
        "web-01/Disk /var": "DISK caf\ufffd",
        "db-01/Disk /var": "DISK caf\ufffd \ufffd",
    }


async def test_the_token_goes_to_the_given_url_only(
    daemon: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An http_proxy in Nagios's environment is not used, and a redirect is not followed (exit
    2, spooled): neither a proxy nor a Location target ever sees the bearer token."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    elsewhere, elsewhere_url, stolen = await listener(ok)
    moved = f"HTTP/1.1 302 Found\r\nLocation: {elsewhere_url}/steal\r\nContent-Length: 0\r\n\r\n"
    redirector, redirector_url, asked = await listener(moved.encode())
    async with elsewhere, redirector:
        monkeypatch.setenv("http_proxy", elsewhere_url)
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        env = {**macros("notification_problem"), "ALERTD_TOKEN": TOKEN}
        argv = ["--spool-dir", str(tmp_path / "spool"), "--retries", "0"]
        assert await run([*argv, "--url", daemon], env) == 0
        assert stolen == []  # went to the daemon, not the proxy
        assert await run([*argv, "--url", redirector_url], env) == 2
    assert len(asked) == 1 and f"Bearer {TOKEN}".encode() in asked[0]
    assert stolen == []
    assert len(list((tmp_path / "spool").glob("*.json"))) == 1


async def events_of(url: str) -> list[str]:
    (incident,) = await incidents(url)
    detail = await get(f"{url}/api/v1/incidents/{incident['id']}")
    return [e["kind"] for e in detail["events"]]


async def test_a_run_that_finds_another_delivering_waits_its_turn(
    daemon: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """While another run holds the spool (delivering older notifications), a new run does not
    send its own ahead of them: it waits, then delivers strictly oldest first."""
    spool = Spool.open(tmp_path / "spool", {})
    spool.put(json.dumps(macros("notification_problem")).encode())  # older, still waiting
    env = {**macros("notification_recovery"), "ALERTD_TOKEN": TOKEN}
    argv = ["--spool-dir", str(spool.path), "--url", daemon]
    with (spool.path / ".lock").open("a") as lock:  # "another run" is delivering
        fcntl.flock(lock, fcntl.LOCK_EX)
        newer = asyncio.create_task(run(argv, env))
        await asyncio.sleep(0.3)
        assert not newer.done() and await incidents(daemon) == []
    assert await newer == 0
    assert "delivered RECOVERY web-01/Disk /var (+1 from spool)" in capsys.readouterr().out
    assert await events_of(daemon) == ["opened", "recovering"]
    assert spool.pending() == []


async def test_a_drain_out_of_time_leaves_the_newest_behind_the_older(
    daemon: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the run's time for the backlog is used up, its own notification stays spooled
    behind the older ones (exit 1) instead of overtaking them; the next run sends all, in
    order."""
    spool = Spool.open(tmp_path / "spool", {})
    spool.put(json.dumps(macros("notification_problem")).encode())
    env = {"ALERTD_TOKEN": TOKEN}
    argv = ["--spool-dir", str(spool.path), "--url", daemon]
    monkeypatch.setattr(notify, "DRAIN_SECONDS", -1.0)  # no time left at all
    assert await run(argv, {**env, **macros("notification_recovery")}) == 1
    assert await incidents(daemon) == [] and len(spool.pending()) == 2

    monkeypatch.setattr(notify, "DRAIN_SECONDS", 10.0)
    assert await run(argv, {**env, **macros("ochp_host_up")}) == 0
    found = {i["key"]: i["status"] for i in await incidents(daemon)}
    assert found == {"web-01/Disk /var": "recovering"}  # PROBLEM went first, then RECOVERY
    assert spool.pending() == []


async def test_without_a_usable_spool_it_sends_directly(
    daemon: str, tmp_path: Path, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nagios started from a root shell gives its workers HOME=/root: no spool directory the
    nagios user can write. With the daemon up the notification is delivered all the same;
    only with the daemon down too is it lost (exit 2, saying so)."""
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    argv = ["--spool-dir", str(blocked / "spool"), "--token-file", str(token_file)]
    env = {**macros("notification_problem"), "HOME": str(blocked)}
    assert await run([*argv, "--url", daemon], env) == 0
    out = capsys.readouterr().out
    assert out.startswith("alertd notify: delivered PROBLEM web-01/Disk /var (without a spool: ")
    assert [i["status"] for i in await incidents(daemon)] == ["open"]

    down = f"http://127.0.0.1:{free_port()}"
    assert await run([*argv, "--url", down, "--retries", "0"], env) == 2
    assert "LOST: daemon unavailable" in capsys.readouterr().out


async def test_check_says_whether_this_user_can_spool_and_reach_the_daemon(
    daemon: str, tmp_path: Path, token_file: Path
) -> None:
    """`alertd notify --check`, run as a real process: exit 0 with a line for the spool and
    one for the daemon; exit 2 naming what is wrong (no spool, refused token). Sends
    nothing."""
    command = [sys.executable, "-m", "alertd.cli", "notify", "--check", "--url", daemon]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    spool = tmp_path / "spool"
    good = await asyncio.to_thread(
        subprocess.run, [*command, "--spool-dir", str(spool), "--token-file", str(token_file)],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert good.returncode == 0, good.stdout
    lines = good.stdout.splitlines()
    assert lines[0].startswith(f"spool: {spool} is writable by ") and "(0 waiting)" in lines[0]
    assert lines[1] == f"daemon: {daemon}/api/v1/nagios is reachable and accepts the token"

    (tmp_path / "file").write_text("")
    bad = await asyncio.to_thread(
        subprocess.run, [*command, "--spool-dir", str(tmp_path / "file" / "spool")],
        env={**env, "ALERTD_TOKEN": "wrong-token"}, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert bad.returncode == 2
    spool_line, daemon_line = bad.stdout.splitlines()
    assert spool_line.startswith("spool: NONE for ") and "LOST while the daemon is down" in (
        spool_line
    )
    assert daemon_line.startswith(f"daemon: {daemon}/api/v1/nagios refused: HTTP 401")
    assert "wrong-token" not in bad.stdout
    assert await incidents(daemon) == []


async def test_a_spool_others_could_write_to_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spool directory writable by others, a symlink to one, or one owned by someone else is
    refused (exit 2, nothing written): its files would be sent with our token."""
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    cases = [(open_dir, "writable by others (mode 777)"), (link, "not a directory")]
    if os.geteuid() == 0:  # only root can give a directory away
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 65534, 65534)
        cases.append((foreign, "owned by uid 65534"))
    down = f"http://127.0.0.1:{free_port()}"
    env = {**macros("notification_problem"), "ALERTD_TOKEN": TOKEN}
    for directory, why in cases:
        code = await run(["--url", down, "--spool-dir", str(directory), "--retries", "0"], env)
        out = capsys.readouterr().out
        assert code == 2 and why in out, out
        assert not [p for p in directory.iterdir()], directory
    assert list((tmp_path / "elsewhere").iterdir()) == []
