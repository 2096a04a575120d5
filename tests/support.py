"""Helpers for the end-to-end tests with the sandbox helpdesk (fixtures are in conftest)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from alertd.http.keys import DISPATCHER, ENGINE
from alertd.sandbox import Sandbox

KEY = "sandbox-key-0123"
CRIT = {"host": "web-01", "service": "HTTP", "state": "CRITICAL", "output": "connection refused"}
Client = TestClient[web.Request, web.Application]


async def post(client: Client, results: Any) -> None:
    response = await client.post("/api/v1/results", json=results)
    assert response.status == 202, await response.text()


async def deliver(client: Client) -> None:
    """Fire what the clock says is due, then send every ticket operation due now."""
    await client.app[ENGINE].run_timers()
    await client.app[DISPATCHER].drain()


def calls(sandbox: Sandbox) -> list[str]:
    """The helpdesk calls made, as `METHOD /path` without the /api/v2 prefix."""
    return [f"{r.method} {r.path.removeprefix('/api/v2')}" for r in sandbox.requests]


def notes_text(sandbox: Sandbox, ticket_id: int) -> list[str]:
    return [n["body"] for n in sandbox.notes.get(ticket_id, [])]
