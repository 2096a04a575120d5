"""Helpers shared by the tests (fixtures are in tests/conftest.py): paths, the sandbox key, and
small HTTP and store look-ups."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient

from alertd import logs
from alertd.http.keys import DISPATCHER, ENGINE
from alertd.inbox import decode
from alertd.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]  # the repository
# Captures from real peers (tests/samples/README.md says what produced each).
SAMPLES = ROOT / "tests" / "samples"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
KEY = "sandbox-key-0123"
CRIT = {"host": "web-01", "service": "HTTP", "state": "CRITICAL", "output": "connection refused"}
Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


async def post(client: Client, results: Any) -> None:
    response = await client.post("/api/v1/results", json=results)
    assert response.status == 202, await response.text()


async def deliver(client: Client) -> None:
    """Fire what the clock says is due, then send every ticket operation due now."""
    await client.app[ENGINE].run_timers()
    await client.app[DISPATCHER].drain()


def configure_logs(stream: TextIO | None = None) -> None:
    """`alertd.logs.configure` as the daemon calls it (JSON to `stream` when given), with
    loggers not cached: a cached one keeps the processors (and stream) of its first use, so a
    later test capturing logs would miss it."""
    if stream is None:
        logs.configure("info")
    else:
        logs.configure("info", json=True, stream=stream)
    structlog.configure(cache_logger_on_first_use=False)


def calls(sandbox: Sandbox) -> list[str]:
    """The helpdesk calls made, as `METHOD /path` without the /api/v2 prefix."""
    return [f"{r.method} {r.path.removeprefix('/api/v2')}" for r in sandbox.requests]


def notes_text(sandbox: Sandbox, ticket_id: int) -> list[str]:
    return [n["body"] for n in sandbox.notes.get(ticket_id, [])]


def stored_incidents(tmp_path: Path) -> list[tuple[Any, ...]]:
    """What is on disk, read with a separate connection: only committed data is visible."""
    with sqlite3.connect(tmp_path / "alertd.db") as db:
        return db.execute("SELECT id, host, service, status, occurrences FROM incidents").fetchall()


def inbox_inputs(tmp_path: Path) -> int:
    """Inputs acknowledged and not yet applied: in the store's inbox (alertd.inbox)."""
    with sqlite3.connect(tmp_path / "alertd.db") as db:
        (applied,) = db.execute("SELECT upto FROM inbox_applied").fetchone()
    with sqlite3.connect(tmp_path / "alertd.db-inbox") as db:
        rows = db.execute("SELECT body FROM inbox WHERE id > ?", (applied,))
        return sum(len(decode(body)) for (body,) in rows)


async def incidents(client: Any, **params: str) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/incidents", params=params)
    assert response.status == 200
    return list((await response.json())["incidents"])


def sample(name: str) -> dict[str, str]:
    return dict(json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8")))


# The macros Opsview passes to a notification script (a subset of Nagios's).
OPSVIEW = [
    "CONTACTEMAIL",
    "CONTACTGROUPLIST",
    "CONTACTNAME",
    "CONTACTPAGER",
    "HOSTACKAUTHOR",
    "HOSTACKCOMMENT",
    "HOSTADDRESS",
    "HOSTALIAS",
    "HOSTATTEMPT",
    "HOSTDOWNTIME",
    "HOSTDURATION",
    "HOSTGROUPNAME",
    "HOSTNAME",
    "HOSTNOTIFICATIONNUMBER",
    "HOSTOUTPUT",
    "HOSTSTATE",
    "HOSTSTATETYPE",
    "LASTHOSTCHECK",
    "LASTHOSTDOWN",
    "LASTHOSTSTATE",
    "LASTHOSTSTATECHANGE",
    "LASTHOSTUNREACHABLE",
    "LASTHOSTUP",
    "LASTSERVICECHECK",
    "LASTSERVICECRITICAL",
    "LASTSERVICEOK",
    "LASTSERVICESTATE",
    "LASTSERVICESTATECHANGE",
    "LASTSERVICEWARNING",
    "LASTSTATECHANGE",
    "LONGDATETIME",
    "LONGHOSTOUTPUT",
    "LONGSERVICEOUTPUT",
    "NOTIFICATIONAUTHOR",
    "NOTIFICATIONCOMMENT",
    "NOTIFICATIONNUMBER",
    "NOTIFICATIONTYPE",
    "SERVICEACKAUTHOR",
    "SERVICEACKCOMMENT",
    "SERVICEATTEMPT",
    "SERVICEDESC",
    "SERVICEDOWNTIME",
    "SERVICEDURATION",
    "SERVICENOTIFICATIONNUMBER",
    "SERVICEOUTPUT",
    "SERVICESTATE",
    "SERVICESTATETYPE",
    "SHORTDATETIME",
    "TIMET",
]


def opsview(macros: dict[str, str]) -> dict[str, str]:
    return {f"NAGIOS_{n}": macros[f"NAGIOS_{n}"] for n in OPSVIEW if f"NAGIOS_{n}" in macros}
