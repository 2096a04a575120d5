"""Hostile and broken input through HTTP: a clear 4xx naming the problem, never a 500 or a
503, and nothing stored that could fail later (times past year 9999, unencodable text)."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from alertd.clock import ManualClock
from alertd.server import ENGINE
from tests.conftest import MakeClient

CRIT = {"host": "web-01", "service": "HTTP", "state": "CRITICAL", "output": "connection refused"}
JSON = {"Content-Type": "application/json"}


def stored(tmp_path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tmp_path / "alertd.db") as db:
        return db.execute("SELECT host, service, last_seen, last_output FROM incidents").fetchall()


async def test_a_result_from_the_future_counts_as_received_now(
    make_client: MakeClient, clock: ManualClock, tmp_path: Path
) -> None:
    """A timestamp past now (year 9999 included) is taken as now: the stale sweep and later
    commits go on working."""
    client = await make_client('[lifecycle]\nstale_after = "1h"\n')
    response = await client.post(
        "/api/v1/results", json={**CRIT, "timestamp": "9999-12-31T23:59:59Z"}
    )
    assert response.status == 202, await response.text()
    clock.advance(timedelta(hours=2))
    await client.app[ENGINE].run_timers()
    response = await client.post("/api/v1/results", json={**CRIT, "service": "SSH"})
    assert response.status == 202, await response.text()
    assert [row[:3] for row in stored(tmp_path)] == [
        ("web-01", "HTTP", "2026-01-05T09:00:00.000000Z"),
        ("web-01", "SSH", "2026-01-05T11:00:00.000000Z"),
    ]
    (http,) = (await (await client.get("/api/v1/incidents?limit=1&before=2")).json())["incidents"]
    assert http["stale"] is True


# (what, method, path, request kwargs, status, text the error must contain)
HOSTILE: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    ("time past 9999 in UTC", "POST", "/api/v1/results",
     {"json": {**CRIT, "timestamp": "9999-12-31T20:00:00-05:00"}}, 400, "out of range in UTC"),
    ("time before year 1 in UTC", "POST", "/api/v1/results",
     {"json": {**CRIT, "timestamp": "0001-01-01T00:00:00+01:00"}}, 400, "out of range in UTC"),
    ("a 5000-digit number", "POST", "/api/v1/results",
     {"data": b"[" + b"1" * 5000 + b"]", "headers": JSON}, 400, "more than 4300 digits"),
    ("30000 nested arrays", "POST", "/api/v1/silences",
     {"data": b"[" * 30000, "headers": JSON}, 400, "nested too deeply"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "method", "path", "kwargs", "status", "message"), HOSTILE)
async def test_hostile_inputs_get_a_clear_4xx_and_store_nothing(
    make_client: MakeClient,
    tmp_path: Path,
    what: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    message: str,
) -> None:
    """Each hostile request is refused with a JSON error naming the problem; nothing is stored."""
    client = await make_client()
    response = await client.request(method, path, **kwargs)
    assert response.status == status, (what, await response.text())
    body = await response.json()
    assert message in f"{body['error']} {body.get('details')}", what
    assert "X-Request-Id" in response.headers
    assert stored(tmp_path) == []
    silences = await (await client.get("/api/v1/silences?all=1")).json()
    assert silences["silences"] == [], what
    assert (await (await client.get("/api/v1/heartbeats")).json())["heartbeats"] == [], what


async def test_text_no_store_can_keep_is_repaired_not_retried_forever(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """Lone surrogates in JSON (native, NRDP) and non-UTF-8 form bodies are stored with U+FFFD
    in their place and answered 2xx: a 503 would make the client resend them forever."""
    client = await make_client('[nrdp]\ntokens = ["nrdp-token"]\n')
    # json.dumps writes a lone surrogate as its escape, as the clients in question do.
    native = {"host": "native", "state": "DOWN", "output": "caf\udce9", "labels": {"k\ud800": "v"}}
    response = await client.post("/api/v1/results", data=json.dumps(native), headers=JSON)
    assert response.status == 202, await response.text()

    check = {"checkresult": {"type": "host"}, "hostname": "nrdp", "state": 1, "output": "caf\udce9"}
    form = {
        "token": "nrdp-token",
        "cmd": "submitcheck",
        "json": json.dumps({"checkresults": [check]}),
    }
    response = await client.post("/nrdp/", data=form)
    assert '"status": 0' in await response.text()

    macros = b"NAGIOS_HOSTNAME=%s&NAGIOS_HOSTSTATE=DOWN&NAGIOS_HOSTOUTPUT=caf\xe9"
    for host, charset in ((b"nagios", ""), (b"nagios-bogus", "; charset=nonexistent")):
        headers = {"Content-Type": f"application/x-www-form-urlencoded{charset}"}
        response = await client.post("/api/v1/nagios", data=macros % host, headers=headers)
        assert response.status == 202, await response.text()

    rows = {row[0]: row[3] for row in stored(tmp_path)}
    assert rows == dict.fromkeys(("native", "nrdp", "nagios", "nagios-bogus"), "caf\ufffd")
    listed = await (await client.get("/api/v1/incidents?host=native")).json()
    assert listed["incidents"][0]["labels"] == {"k\ufffd": "v"}
