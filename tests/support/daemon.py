"""`alertd run` as a real process beside real peers: a config with a token, short lifecycle
timers and the sandbox helpdesk; start, stop and start again on the same store; and the API
and helpdesk look-ups the real-peer scenarios wait on."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from alertd.sandbox import SANDBOX, Sandbox, SandboxOptions, create_app
from tests.support import KEY
from tests.support.proc import free_port, log_file, start, stop, wait_ready

TOKEN = "peer-test-token-0123456789"
# Short timers so that a whole outage, its recovery hold and a second outage fit in seconds;
# the reopen window is long enough that every outage in a scenario falls within it.
LIFECYCLE = {"recovery_hold": "3s", "reopen_window": "1h"}


class Daemon:
    """One alertd process on a free loopback port, its store and config in `base`."""

    def __init__(
        self,
        base: Path,
        helpdesk_url: str,
        *,
        release_grace: str = "20s",
        store: str | None = None,
        env: Mapping[str, str] | None = None,
        node: str | None = None,
        helpdesk: str = "",
    ) -> None:
        """`store` replaces the [store] table's body (a PostgreSQL url, say); `env` is added
        to the process's environment (the store's password, say)."""
        self.base = base
        self.env: dict[str, str] = dict(env or {})  # added to the environment at each start
        base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token_file = base / "alertd.token"
        self.token_file.write_text(f"# the API token (README: first non-comment line)\n{TOKEN}\n")
        (base / "helpdesk.key").write_text(KEY)
        self.config = base / "alertd.toml"
        lifecycle = "".join(f'{k} = "{v}"\n' for k, v in LIFECYCLE.items())
        default_store = f'path = "{base / "alertd.db"}"'
        self.config.write_text(
            f'[server]\nlisten = "127.0.0.1:{self.port}"\n'
            + (f'node = "{node}"\n' if node else "")
            + f"[store]\n{store or default_store}\n"
            f'[auth]\ntokens_file = "{self.token_file}"\n'
            f"[lifecycle]\n{lifecycle}"
            f'[helpdesk]\nurl = "{helpdesk_url}"\nrequester_email = "noc@example.com"\n'
            f'api_key_file = "{base / "helpdesk.key"}"\n'
            # No agent works the tickets here, so there is nothing to poll for.
            f'poll_interval = "0s"\nrelease_grace = "{release_grace}"\n'
            # Long enough for Nagios's host result to follow its services' (the field's reason
            # for the grace), short enough for the tests' deadlines.
            'service_grace = "5s"\n'
            f"{helpdesk}"
        )
        self.proc: subprocess.Popen[str] | None = None

    async def start(self) -> None:
        self.proc = start(self.config, self.env)
        await asyncio.to_thread(wait_ready, self.url, self.proc, 30.0)

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, as a crash or the OOM killer would end it."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    async def stop(self) -> None:
        """SIGTERM and wait; alertd exits 0 after a clean shutdown (README, Signals)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(stop, proc)
        assert code == 0, f"alertd exited {code}:\n{self.log()[-3000:]}"

    def log(self) -> str:
        path = log_file(self.config)
        return path.read_text(errors="replace") if path.exists() else ""

    async def get(self, path: str) -> Any:
        def fetch() -> Any:
            request = urllib.request.Request(
                self.url + path, headers={"Authorization": f"Bearer {TOKEN}"}
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)

        return await asyncio.to_thread(fetch)

    async def post(self, path: str, body: Any) -> int:
        """POST JSON; the HTTP status (an error status too, not an exception)."""

        def send() -> int:
            request = urllib.request.Request(
                self.url + path, json.dumps(body).encode(), method="POST",
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            )  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                return int(exc.code)

        return await asyncio.to_thread(send)

    async def text(self, path: str) -> str:
        def fetch() -> str:
            request = urllib.request.Request(
                self.url + path, headers={"Authorization": f"Bearer {TOKEN}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return str(response.read().decode())
            except urllib.error.HTTPError as exc:
                return str(exc.read().decode())

        return await asyncio.to_thread(fetch)

    async def incidents(self) -> dict[str, dict[str, Any]]:
        """Every incident the daemon knows, by key (`host` or `host/service`)."""
        found = await self.get("/api/v1/incidents?limit=1000")
        return {i["key"]: i for i in found["incidents"]}

    async def incident(self, incident_id: int) -> dict[str, Any]:
        return dict(await self.get(f"/api/v1/incidents/{incident_id}"))


def tickets(sandbox: Sandbox) -> list[dict[str, Any]]:
    """The helpdesk's tickets, oldest first."""
    return [sandbox.tickets[i] for i in sorted(sandbox.tickets)]


def describe(incidents: dict[str, dict[str, Any]], sandbox: Sandbox) -> str:
    """What a failed wait saw: each incident's flags, and each ticket, one line each."""
    lines = [
        f"incident {i['id']} {key}: {i['status']} {i['check_state']} {i['state_type']}"
        f" suppressed={i['suppressed']} flapping={i['flapping']} stale={i['stale']}"
        f" reopen_count={i['reopen_count']} psc={i['percent_state_change']}"
        for key, i in sorted(incidents.items())
    ]
    lines += [f"ticket {t['id']}: status {t['status']} {t['subject']!r}" for t in tickets(sandbox)]
    return "\n".join(lines) or "no incidents, no tickets"


# Fixtures for the real-peer tests; a test module binds them to its own names
# (`helpdesk = live_helpdesk`), since pytest finds fixtures by the name in the module.


@pytest.fixture
async def live_helpdesk(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
) -> tuple[Sandbox, str]:
    """The sandbox helpdesk on loopback, on the wall clock (the daemon runs on it too)."""
    app = create_app(SandboxOptions(api_key=KEY, rate_limit_per_minute=1000))
    server = await aiohttp_server(app)
    return app[SANDBOX], str(server.make_url("")).rstrip("/")


@pytest.fixture
async def live_daemon(tmp_path: Path, helpdesk: tuple[Sandbox, str]) -> AsyncIterator[Daemon]:
    daemon = Daemon(tmp_path / "alertd", helpdesk[1])
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()
