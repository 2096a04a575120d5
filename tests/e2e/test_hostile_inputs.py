"""Hostile and broken input through HTTP: a clear 4xx naming the problem, never a 500 or a
503, and nothing stored that could fail later (times past year 9999, unencodable text)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from alertd.clock import ManualClock
from alertd.http.keys import ENGINE
from tests.support import Client, MakeClient

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
        "/api/v1/results",
        json={**CRIT, "timestamp": "9999-12-31T23:59:59Z", "reporting": "stream"},
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


TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SILENCE = {"host": "web-01", "author": "alice", "comment": "disk swap"}
HUGE = "9" * 25  # beyond SQLite's INTEGER
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
    ("a token that is not UTF-8", "GET", "/api/v1/incidents",
     {"raw_headers": b"Authorization: Bearer \xff\xfe\r\n"}, 401, "invalid token"),
    ("a digit int() refuses", "GET", "/api/v1/incidents/%C2%B2", {}, 404, "not found"),
    ("an id beyond SQLite", "GET", f"/api/v1/incidents/{HUGE}", {}, 404, "not found"),
    ("an id beyond SQLite to ack", "POST", f"/api/v1/incidents/{HUGE}/ack", {}, 404, "not found"),
    ("a silence id int() refuses", "DELETE", "/api/v1/silences/%C2%B2", {}, 404, "not found"),
    ("a silence id beyond SQLite", "GET", f"/api/v1/silences/{HUGE}", {}, 404, "not found"),
    ("an outbox id beyond SQLite", "POST", f"/api/v1/outbox/{HUGE}/retry", {}, 404, "not found"),
    ("a page before an id beyond SQLite", "GET", f"/api/v1/incidents?before={HUGE}", {}, 400,
     "out of range"),
    ("a page of outbox before an id beyond SQLite", "GET", f"/api/v1/outbox?before={HUGE}", {},
     400, "out of range"),
    ("a silence for 999999999 days", "POST", "/api/v1/silences",
     {"json": {**SILENCE, "duration": "999999999d"}}, 400, "more than 100 years ahead"),
    ("a silence starting in 9999", "POST", "/api/v1/silences",
     {"json": {**SILENCE, "starts_at": "9999-12-30T00:00:00Z", "duration": "3d"}}, 400,
     "more than 100 years ahead"),
    ("a weekly silence starting in 9999", "POST", "/api/v1/silences",
     {"json": {**SILENCE, "starts_at": "9999-12-30T00:00:00Z", "recurring": {
         "days": ["sun"], "start": "02:00", "duration": "2h"}}}, 400, "100 years ahead"),
    ("a silence with a backtracking regex", "POST", "/api/v1/silences",
     {"json": {**SILENCE, "host": "re:(a+)+b", "duration": "1h"}}, 400,
     "regular expressions are not accepted in silences"),
    ("a label silence with a regex", "POST", "/api/v1/silences",
     {"json": {**SILENCE, "labels": {"env": "re:prod|dev"}, "duration": "1h"}}, 400,
     "'field': 'labels.env', 'message': 'regular expressions are not accepted"),
    ("a heartbeat every 999999999 days", "POST", "/api/v1/heartbeats/backup?interval=999999999d",
     {}, 400, "at most 365d"),
    ("a Nagios check time of 5000 digits", "POST", "/api/v1/nagios",
     {"json": {"NAGIOS_HOSTNAME": "web-01", "NAGIOS_HOSTSTATE": "DOWN",
               "NAGIOS_LASTHOSTCHECK": "1" * 5000}}, 400, "NAGIOS_LASTHOSTCHECK"),
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
    client = await make_client(f'[auth]\ntokens = ["{TOKEN}"]\n')
    if "raw_headers" in kwargs:  # bytes no HTTP client library would send
        answer, headers, text = await raw_request(client, method, path, kwargs["raw_headers"])
    else:
        kwargs = {**kwargs, "headers": {**AUTH, **kwargs.get("headers", {})}}
        response = await client.request(method, path, **kwargs)
        answer, headers, text = response.status, response.headers, await response.text()
    assert answer == status, (what, text)
    body = json.loads(text)
    assert message in f"{body['error']} {body.get('details')}", what
    assert "X-Request-Id" in headers
    assert stored(tmp_path) == []
    silences = await (await client.get("/api/v1/silences?all=1", headers=AUTH)).json()
    assert silences["silences"] == [], what
    beats = await (await client.get("/api/v1/heartbeats", headers=AUTH)).json()
    assert beats["heartbeats"] == [], what


async def raw_request(
    client: Client, method: str, path: str, headers: bytes
) -> tuple[int, Mapping[str, str], str]:
    """A request written byte for byte: (status, headers, body)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode())
        writer.write(headers + b"\r\n")
        answer = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = answer.decode().partition("\r\n\r\n")
    status_line, *lines = head.split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), fields, body


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
