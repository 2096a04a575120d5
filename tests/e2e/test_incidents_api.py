"""End to end through HTTP: ingestion, durability, restart, bad input, the read API."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from alertd.clock import ManualClock
from alertd.http.keys import ENGINE
from tests.support import MakeClient, inbox_inputs, incidents, stored_incidents

CRIT = {"host": "web-01", "service": "HTTP", "state": "CRITICAL", "output": "connection refused"}


async def test_thousand_results_for_one_key_make_one_incident(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """1,000 results for one key, in one batch and in concurrent requests, are one incident."""
    client = await make_client()
    response = await client.post("/api/v1/results", json=[CRIT] * 500)
    assert response.status == 202
    assert await response.json() == {"accepted": 500}
    replies = await asyncio.gather(*(client.post("/api/v1/results", json=CRIT) for _ in range(500)))
    assert [r.status for r in replies] == [202] * 500

    (incident,) = await incidents(client)
    assert incident["key"] == "web-01/HTTP"
    assert incident["status"] == "open"
    assert incident["occurrences"] == 1000
    assert incident["priority"] == "high"  # medium impact x high urgency
    assert stored_incidents(tmp_path) == [(incident["id"], "web-01", "HTTP", "open", 1000)]


async def test_accepted_results_are_on_disk_before_the_answer(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """Every 202 means committed: another connection sees the result as soon as the answer
    comes, applied to its incident or still waiting in the inbox, never neither or both."""
    client = await make_client()
    for n in range(1, 4):
        response = await client.post("/api/v1/results", json=CRIT)
        assert response.status == 202
        applied = sum(row[4] for row in stored_incidents(tmp_path))
        assert applied + inbox_inputs(tmp_path) == n
    # Reads wait for what was acknowledged before them.
    (incident,) = await incidents(client)
    assert incident["occurrences"] == 3


async def test_restart_keeps_incidents_and_fires_holds_that_fell_due(
    make_client: MakeClient, clock: ManualClock, tmp_path: Path
) -> None:
    """A restart on the same file keeps incidents and counters; a hold due while down fires."""
    client = await make_client()
    await client.post("/api/v1/results", json=[CRIT] * 3)
    await client.post("/api/v1/results", json={**CRIT, "service": "Disk", "state": "WARNING"})
    await client.post("/api/v1/results", json={**CRIT, "state": "OK", "output": "HTTP OK"})
    (http,) = await incidents(client, status="recovering")
    await client.close()

    clock.advance(timedelta(minutes=4))
    client = await make_client()
    (still,) = await incidents(client, status="recovering")
    assert still["id"] == http["id"] and still["occurrences"] == 3
    await client.close()

    clock.advance(timedelta(minutes=2))  # the 5-minute hold ended while the daemon was down
    client = await make_client()
    (resolved,) = await incidents(client, status="resolved")
    assert resolved["id"] == http["id"]
    assert resolved["resolved_at"] is not None
    (disk,) = await incidents(client, status="open")
    assert disk["key"] == "web-01/Disk" and disk["occurrences"] == 1

    # Within the reopen window the same incident comes back, after the restart too.
    await client.post("/api/v1/results", json=CRIT)
    detail = await (await client.get(f"/api/v1/incidents/{http['id']}")).json()
    assert detail["status"] == "open"
    assert [e["kind"] for e in detail["events"]][-2:] == ["resolved", "reopened"]


async def test_recovery_hold_fires_on_the_engine_timer(
    make_client: MakeClient, clock: ManualClock
) -> None:
    """The writer's scheduler resolves a recovering incident once its hold is over."""
    client = await make_client('[lifecycle]\nrecovery_hold = "30s"\n')
    await client.post("/api/v1/results", json=CRIT)
    await client.post("/api/v1/results", json={**CRIT, "state": "OK"})
    engine = client.app[ENGINE]
    clock.advance(timedelta(seconds=29))
    await engine.run_timers()
    assert (await incidents(client))[0]["status"] == "recovering"
    clock.advance(timedelta(seconds=1))
    await engine.run_timers()
    assert (await incidents(client))[0]["status"] == "resolved"


BAD_INPUTS: list[tuple[str, dict[str, Any], int, str]] = [
    (
        "malformed json",
        {"data": b'[{"host": "a",', "headers": {"Content-Type": "application/json"}},
        400,
        "malformed JSON",
    ),
    ("not json content type", {"data": b"host=a&state=0"}, 415, "Content-Type must be"),
    ("empty array", {"json": []}, 400, "empty batch"),
    ("not an object", {"json": [CRIT, 42]}, 400, "1 invalid result"),
]


@pytest.mark.parametrize(("name", "request_kwargs", "status", "message"), BAD_INPUTS)
async def test_bad_requests_are_refused_and_store_nothing(
    make_client: MakeClient,
    tmp_path: Path,
    name: str,
    request_kwargs: dict[str, Any],
    status: int,
    message: str,
) -> None:
    """Malformed or mistyped requests get a clear error and leave the store untouched."""
    client = await make_client()
    response = await client.post("/api/v1/results", **request_kwargs)
    assert response.status == status, name
    assert message in (await response.json())["error"]
    assert stored_incidents(tmp_path) == []


async def test_every_bad_item_is_named_and_the_batch_is_refused_whole(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """A batch with several bad items names each one (index, field, reason) and stores none."""
    client = await make_client()
    batch = [
        CRIT,
        {"service": "HTTP", "state": "CRITICAL"},  # no host
        {**CRIT, "state": "DOWN"},  # a host state on a service
        {**CRIT, "state": 7},
        {"host": "web-01", "state": "CRITICAL"},  # a service state on a host check
        {**CRIT, "attempt": "2", "labels": {"env": 1}, "timestamp": "yesterday"},
        {**CRIT, "sevrity": "high"},
    ]
    response = await client.post("/api/v1/results", json=batch)
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "6 invalid results; nothing was stored"
    named = {(d["index"], d["field"]) for d in body["details"]}
    assert named == {
        (1, "host"), (2, "state"), (3, "state"), (4, "state"),
        (5, "attempt"), (5, "labels.env"), (5, "timestamp"), (6, "sevrity"),
    }  # fmt: skip
    assert any("UP, DOWN, UNREACHABLE" in d["message"] for d in body["details"] if d["index"] == 4)
    assert stored_incidents(tmp_path) == []


async def test_oversized_bodies_and_batches_are_refused(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """Bodies over max_body_bytes get 413; batches over max_results_per_request get 400."""
    client = await make_client("[server]\nmax_body_bytes = 4096\nmax_results_per_request = 5\n")
    big = [{**CRIT, "output": "x" * 100}] * 50
    response = await client.post("/api/v1/results", json=big)
    assert response.status == 413
    assert "limit is 4096 bytes" in (await response.json())["error"]
    response = await client.post("/api/v1/results", json=[CRIT] * 6)
    assert response.status == 400
    assert "too many results in one request: 6 > 5" in (await response.json())["error"]
    assert stored_incidents(tmp_path) == []


async def test_tokens_are_required_when_configured(make_client: MakeClient, tmp_path: Path) -> None:
    """With tokens set, no token or a wrong one is 401 and stores nothing; a right one works."""
    client = await make_client('[auth]\ntokens = ["s3cret-one", "s3cret-two"]\n')
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-one"}):
        response = await client.post("/api/v1/results", json=CRIT, headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "s3cret" not in await response.text()
    response = await client.get("/api/v1/incidents")
    assert response.status == 401
    assert stored_incidents(tmp_path) == []

    response = await client.post(
        "/api/v1/results", json=CRIT, headers={"Authorization": "Bearer s3cret-two"}
    )
    assert response.status == 202
    assert (await client.get("/healthz")).status == 200  # probes need no token


async def test_read_api_filters_pages_and_shows_events(make_client: MakeClient) -> None:
    """Incidents can be filtered by status, priority and host, paged, and read with events."""
    client = await make_client()
    batch = [{"host": f"h{n:02}", "service": "Ping", "state": "WARNING"} for n in range(25)]
    batch.append({"host": "h00", "state": "DOWN"})
    await client.post("/api/v1/results", json=batch)

    page = await (await client.get("/api/v1/incidents", params={"limit": "10"})).json()
    assert len(page["incidents"]) == 10
    seen = [i["id"] for i in page["incidents"]]
    while page["next_before"] is not None:
        page = await (
            await client.get("/api/v1/incidents", params={"before": page["next_before"]})
        ).json()
        seen += [i["id"] for i in page["incidents"]]
    assert sorted(seen, reverse=True) == seen and len(set(seen)) == 26

    assert len(await incidents(client, priority="medium")) == 25
    (host,) = await incidents(client, priority="high")
    assert host["key"] == "h00" and host["check_state"] == "DOWN"
    assert {i["key"] for i in await incidents(client, host="h00")} == {"h00", "h00/Ping"}

    detail = await (await client.get(f"/api/v1/incidents/{host['id']}")).json()
    assert [e["kind"] for e in detail["events"]] == ["opened"]
    assert (await client.get("/api/v1/incidents/9999")).status == 404
    response = await client.get("/api/v1/incidents", params={"status": "closed"})
    assert response.status == 400
    assert "pending, open, recovering, resolved" in (await response.json())["error"]


async def test_the_audit_trail_shows_the_newest_events_and_pages_back(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """An incident with more events than one answer holds shows its newest ones (the last
    thing that happened to it), and `events_before` pages back through every older one."""
    client = await make_client()
    await client.post("/api/v1/results", json=CRIT)
    (incident,) = await incidents(client)
    with sqlite3.connect(tmp_path / "alertd.db") as db:  # a long history, written directly
        db.executemany(
            "INSERT INTO events (incident_id, at, kind, detail) VALUES (?, ?, 'note', ?)",
            [(incident["id"], "2026-01-01T00:00:00+00:00", f'{{"n": {n}}}') for n in range(1200)],
        )
    await client.post(f"/api/v1/incidents/{incident['id']}/ack", json={"author": "bob"})

    detail = await (await client.get(f"/api/v1/incidents/{incident['id']}")).json()
    events = detail["events"]
    assert len(events) == 1000
    assert events[-1]["kind"] == "acknowledged"  # the newest, last in time order
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)

    seen = [e["id"] for e in events]
    cursor = detail["events_next_before"]
    while cursor is not None:
        page = await (
            await client.get(
                f"/api/v1/incidents/{incident['id']}",
                params={"events_before": str(cursor), "events_limit": "300"},
            )
        ).json()
        assert page["events"] and page["events"][-1]["id"] < seen[0]
        seen = [e["id"] for e in page["events"]] + seen
        cursor = page["events_next_before"]
    assert len(seen) == len(set(seen)) == 1202  # opened, 1,200 notes, acknowledged
    assert seen == sorted(seen)
    bad = await client.get(f"/api/v1/incidents/{incident['id']}", params={"events_limit": "0"})
    assert bad.status == 400


async def test_repeats_are_one_event_per_run_not_one_per_commit(make_client: MakeClient) -> None:
    """A problem repeated commit after commit adds no row per commit: the run of repeats is
    one `deduplicated` event whose count grows; something else happening ends the run."""
    client = await make_client()
    for _ in range(40):  # one request, one commit, each
        assert (await client.post("/api/v1/results", json=CRIT)).status == 202
    (incident,) = await incidents(client)
    await client.post(f"/api/v1/incidents/{incident['id']}/ack", json={"author": "bob"})
    for _ in range(5):
        await client.post("/api/v1/results", json=CRIT)

    detail = await (await client.get(f"/api/v1/incidents/{incident['id']}")).json()
    trail = [(e["kind"], e["detail"].get("count")) for e in detail["events"]]
    assert trail == [
        ("opened", None), ("deduplicated", 39), ("acknowledged", None), ("deduplicated", 5)
    ]
    assert detail["occurrences"] == 45
