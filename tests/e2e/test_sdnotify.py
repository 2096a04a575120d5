"""sd_notify over real unix datagram sockets: the client alone, then the daemon under "systemd"."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from alertd.sdnotify import Notifier, ping_watchdog, watchdog_interval
from tests.support.proc import free_port, log_file, start, stop


class Manager:
    """The service manager's end: a bound datagram socket that records what arrives, and when."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address  # as NOTIFY_SOCKET spells it

    def receive(self, timeout: float = 5.0) -> tuple[float, dict[str, str]]:
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096)
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        return time.monotonic(), fields

    def until(self, key: str, timeout: float = 15.0) -> tuple[list[dict[str, str]], dict[str, str]]:
        """Messages up to the first with `key`: (those before it, it)."""
        seen: list[dict[str, str]] = []
        deadline = time.monotonic() + timeout
        while True:
            _, fields = self.receive(max(deadline - time.monotonic(), 0.01))
            if key in fields:
                return seen, fields
            seen.append(fields)


@pytest.fixture(params=["abstract", "path"])
def manager(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Manager]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "abstract":
        name = f"alertd-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        address = "@" + name
    else:
        # A short directory: unix socket paths are limited to 107 bytes.
        address = str(tmp_path_factory.mktemp("n") / "notify")
        sock.bind(address)
    with sock:
        yield Manager(sock, address)


def test_messages_arrive_as_one_datagram_each(manager: Manager) -> None:
    """READY with STATUS, RELOADING with MONOTONIC_USEC, STOPPING: one datagram per message."""
    notifier = Notifier.from_env({"NOTIFY_SOCKET": manager.address})
    try:
        assert notifier.ready("listening on http://x\nsecond line")
        _, ready = manager.receive()
        assert ready == {"READY": "1", "STATUS": "listening on http://x second line"}
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        notifier.reloading()
        _, reloading = manager.receive()
        assert reloading["RELOADING"] == "1"
        assert before <= int(reloading["MONOTONIC_USEC"]) <= before + 1_000_000
        notifier.stopping()
        assert manager.receive()[1] == {"STOPPING": "1"}
    finally:
        notifier.close()


def test_without_a_manager_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    """Unset, vsock, or a socket nobody listens on: sends return False, never raise."""
    for env in ({}, {"NOTIFY_SOCKET": "vsock:2:1234"}, {"NOTIFY_SOCKET": str(tmp_path / "gone")}):
        notifier = Notifier.from_env(env)
        assert not notifier.ready("x")
        assert not notifier.watchdog()
        notifier.close()


def test_watchdog_interval_is_half_the_timeout_and_only_for_our_pid() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, 42) is None
    assert watchdog_interval({}, 42) is None


@pytest.mark.parametrize("manager", ["abstract"], indirect=True)
async def test_watchdog_pings_at_its_cadence_from_the_loop(manager: Manager) -> None:
    """WATCHDOG=1 at once and then every interval; a blocked loop sends nothing meanwhile."""
    notifier = Notifier(manager.address)
    task = asyncio.create_task(ping_watchdog(notifier, 0.05))
    await asyncio.sleep(0.28)
    time.sleep(0.3)  # noqa: ASYNC251 - the loop stalls on purpose: no pings in this stretch
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    notifier.close()
    pings = 0
    manager.sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while manager.sock.recv(4096) == b"WATCHDOG=1":
            pings += 1
    # ~6 pings in 0.28 s of running loop (one at start), at most one more after the stall.
    assert 5 <= pings <= 8


def test_daemon_under_systemd_ready_watchdog_reload_and_stop(tmp_path: Path) -> None:
    """READY only once bound, the start timeout extended until then; WATCHDOG every
    WATCHDOG_USEC/2; SIGHUP is RELOADING then READY,
    a bad file keeping the old config; SIGTERM sends STOPPING and exits 0."""
    name = f"alertd-test-{uuid.uuid4().hex}"
    manager = Manager(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), "@" + name)
    manager.sock.bind("\0" + name)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "alertd.toml"
    (tmp_path / "tokens").write_text("first-token-A1\n")
    good = f'[server]\nlisten = "127.0.0.1:{port}"\n[store]\npath = "a.db"\n' \
           '[auth]\ntokens_file = "tokens"\n'  # fmt: skip
    config.write_text(good)
    env = {"NOTIFY_SOCKET": manager.address, "WATCHDOG_USEC": "200000"}
    proc = start(config, env)
    try:
        before, ready = manager.until("READY")
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            pass  # bound before READY=1
        assert ready["STATUS"].startswith(f"listening on {base}; 0 active incidents")
        # Pings start early; the start timeout is pushed ahead while the store opens and loads
        # (a migration or millions of incidents may outlast TimeoutStartSec); nothing else.
        extended = [m for m in before if "EXTEND_TIMEOUT_USEC" in m]
        assert extended and all(m["EXTEND_TIMEOUT_USEC"] == "30000000" for m in extended)
        assert extended[0]["STATUS"] == "starting: opening the store, loading incidents"
        assert all("WATCHDOG" in m for m in before if m not in extended)

        stamps = [manager.receive()[0] for _ in range(6)]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert all(0.05 < gap < 0.3 for gap in gaps), gaps  # 0.1 s = WATCHDOG_USEC / 2

        assert post(base, "first-token-A1") == 202

        config.write_text(good + '[lifecycle]\nrecovery_hold = "soon"\n')
        proc.send_signal(signal.SIGHUP)
        _, reloading = manager.until("RELOADING")
        assert "MONOTONIC_USEC" in reloading
        _, ready = manager.until("READY")
        assert ready["STATUS"].startswith("reload FAILED, previous config kept; listening on")
        assert post(base, "first-token-A1") == 202  # the old tokens still hold

        (tmp_path / "tokens").write_text("second-token-B2\n")
        moved = good.replace(str(port), str(port + 1))  # a listener change needs a restart
        config.write_text(moved + "[priority]\ndefault_impact = 'high'\n")
        proc.send_signal(signal.SIGHUP)
        manager.until("RELOADING")
        _, ready = manager.until("READY")
        assert ready["STATUS"].startswith("reloaded; listening on")
        assert post(base, "first-token-A1") == 401  # rotated at once, same listener
        assert post(base, "second-token-B2") == 202

        proc.send_signal(signal.SIGTERM)
        manager.until("STOPPING")
    finally:
        returncode = stop(proc)
        manager.sock.close()
    assert returncode == 0
    stderr = log_file(config).read_text()
    logged = [json.loads(line) for line in stderr.splitlines()]
    events = [e["event"] for e in logged]
    (problem,) = [e for e in logged if e["event"] == "config_problem"]
    assert problem["key"] == "lifecycle.recovery_hold" and "'soon'" in problem["problem"]
    assert events.count("config_reload_failed") == 1
    (reloaded,) = [e for e in logged if e["event"] == "config_reloaded"]
    assert reloaded["changed"] == ["auth.tokens", "priority.default_impact"]
    (restart,) = [e for e in logged if e["event"] == "config_needs_restart"]
    assert restart["keys"] == ["server.listen"]
    assert "first-token-A1" not in stderr and "second-token-B2" not in stderr


def post(base: str, token: str) -> int:
    request = urllib.request.Request(
        f"{base}/api/v1/results",
        json.dumps({"host": "web-01", "state": "DOWN"}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
