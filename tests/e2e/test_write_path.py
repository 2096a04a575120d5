"""The write path belongs to the writer: probes never touch its connection, and requests racing
the writer (an ack for an incident that just went away, a beat racing a DELETE) get a clear 4xx,
never a 500 and never an action on the wrong incident."""

from __future__ import annotations

import asyncio
from typing import Any

from alertd.http.keys import ENGINE
from tests.support import MakeClient, post


async def test_readiness_probes_at_full_speed_never_fail_an_ingest(make_client: MakeClient) -> None:
    """/readyz polled as fast as possible beside steady ingestion: every probe is ready and every
    result is accepted (the probe once shared the writer's connection: 503s on both sides)."""
    client = await make_client()
    statuses: dict[str, list[int]] = {"readyz": [], "ingest": []}

    async def probe() -> None:
        for _ in range(150):
            response = await client.get("/readyz")
            statuses["readyz"].append(response.status)

    async def ingest(n: int) -> None:
        for i in range(75):
            result = {"host": f"h{n}", "service": f"s{i}", "state": "CRITICAL"}
            response = await client.post("/api/v1/results", json=result)
            statuses["ingest"].append(response.status)

    await asyncio.gather(probe(), probe(), ingest(1), ingest(2))
    assert set(statuses["readyz"]) == {200}, statuses["readyz"]
    assert set(statuses["ingest"]) == {202}, statuses["ingest"]


async def test_malformed_state_or_empty_object_is_a_400(make_client: MakeClient) -> None:
    """A state that is a list (or an empty object) names the bad field in a 400, not a 500."""
    client = await make_client()
    for body, field in (
        ({"host": "a", "service": "b", "state": []}, "state"),
        ({"host": "a", "service": "b", "state": {}}, "state"),
        ({"host": "a", "state": [1]}, "state"),
        ({}, "host"),
        ([{}], "host"),
    ):
        response = await client.post("/api/v1/results", json=body)
        answer = await response.json()
        assert response.status == 400, (body, answer)
        assert field in {d["field"] for d in answer["details"]}, (body, answer)


async def _open(client: Any, host: str) -> int:
    await post(client, {"host": host, "service": "disk", "state": "CRITICAL"})
    incidents = (await (await client.get("/api/v1/incidents", params={"host": host})).json())
    return int(incidents["incidents"][0]["id"])


async def test_an_ack_for_a_discarded_incident_never_acknowledges_its_successor(
    make_client: MakeClient,
) -> None:
    """Incident N is discarded (a soft recovery) and a new pending incident takes its key: an
    ack for N is refused (404), in order or racing the writer, and the successor stays
    unacknowledged. (Racing, the ack may also land on N before the discard: 200 for N.)"""
    client = await make_client("[lifecycle]\nopen_after = 3\n")
    ok = {"host": "db", "service": "disk", "state": "OK"}
    crit = {"host": "db", "service": "disk", "state": "CRITICAL"}
    await post(client, crit)
    first = (await (await client.get("/api/v1/incidents")).json())["incidents"][0]["id"]
    await post(client, ok)
    await post(client, crit)
    successor = client.app[ENGINE].cached(("db", "disk"))
    assert successor is not None and successor.id != first
    late = await client.post(f"/api/v1/incidents/{first}/ack", json={})
    assert late.status == 404, await late.text()
    assert not client.app[ENGINE].cached(("db", "disk")).acknowledged  # type: ignore[union-attr]

    await post(client, ok)
    await post(client, crit)
    current = client.app[ENGINE].cached(("db", "disk"))
    assert current is not None
    # Ack, soft recovery (discards it) and a new problem (pending) racing in the writer.
    ack = asyncio.ensure_future(client.post(f"/api/v1/incidents/{current.id}/ack", json={}))
    await asyncio.sleep(0)
    await asyncio.gather(post(client, ok), ack, post(client, crit))
    assert ack.result().status in (200, 404, 409), await ack.result().text()
    successor = client.app[ENGINE].cached(("db", "disk"))
    assert successor is not None and successor.id != current.id
    assert not successor.acknowledged


async def test_acks_racing_a_discard_get_a_4xx_never_a_500(make_client: MakeClient) -> None:
    """Many acks and escalations racing soft recoveries: each answer is 200, 404 or 409."""
    client = await make_client("[lifecycle]\nopen_after = 3\n")
    seen: set[int] = set()
    for round_ in range(20):
        host = f"h{round_}"
        await post(client, {"host": host, "service": "disk", "state": "CRITICAL"})
        found = (await (await client.get("/api/v1/incidents", params={"host": host})).json())
        number = found["incidents"][0]["id"]
        calls = [
            client.post(f"/api/v1/incidents/{number}/ack", json={"author": "a"}),
            client.post(f"/api/v1/incidents/{number}/escalate", json={"reason": "r"}),
            client.post("/api/v1/results", json={"host": host, "service": "disk", "state": "OK"}),
            client.delete(f"/api/v1/incidents/{number}/ack"),
        ]
        for response in await asyncio.gather(*calls):
            seen.add(response.status)
            assert response.status < 500, await response.text()
    assert seen <= {200, 202, 404, 409}, seen


async def test_a_beat_racing_its_delete_gets_an_answer_not_a_500(make_client: MakeClient) -> None:
    """A beat and a DELETE of the same heartbeat in one writer round: both answer below 500,
    and the heartbeat ends in whichever state the writer applied last."""
    client = await make_client()
    for round_ in range(20):
        name = f"job-{round_}"
        first = await client.post(f"/api/v1/heartbeats/{name}", json={"interval": "1m"})
        assert first.status == 200
        answers = await asyncio.gather(
            client.delete(f"/api/v1/heartbeats/{name}"),
            client.post(f"/api/v1/heartbeats/{name}", json={"interval": "1m"}),
            client.delete(f"/api/v1/heartbeats/{name}"),
            client.post(f"/api/v1/heartbeats/{name}"),  # no interval: needs the known one
        )
        for response in answers:
            assert response.status in (200, 400, 404), await response.text()


async def test_what_was_just_committed_is_read_back_while_others_read(
    make_client: MakeClient,
) -> None:
    """Read your writes: a silence answered 200 is listed by the very next request, however
    many other reads (the console, probes, the dispatcher's) share the reader meanwhile. Before,
    a read left open between two awaits held an old snapshot that interleaved reads saw."""
    client = await make_client()
    stop = asyncio.Event()

    async def other_readers() -> None:
        while not stop.is_set():
            await client.get("/api/v1/outbox")
            await client.get("/api/v1/incidents", params={"limit": "5"})

    readers = [asyncio.create_task(other_readers()) for _ in range(8)]
    missing = []
    try:
        for n in range(150):
            body = {"host": f"web-{n:02}", "duration": "1h", "author": "ops", "comment": "swap"}
            created = await client.post("/api/v1/silences", json=body)
            assert created.status == 201, await created.text()
            silence_id = (await created.json())["id"]
            shown = await client.get(f"/api/v1/silences/{silence_id}")
            if shown.status != 200:
                missing.append(silence_id)
    finally:
        stop.set()
        await asyncio.gather(*readers)
    assert missing == []
