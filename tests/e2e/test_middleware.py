"""The app's plumbing: request ids in answers and logs, and pluggable readiness checks."""

from __future__ import annotations

import asyncio
import re

import pytest
import structlog

from alertd.http import ingest
from alertd.http.keys import CONFIG, READINESS, ReadinessCheck
from tests.support import MakeClient

CRIT = {"host": "web-01", "service": "HTTP", "state": "CRITICAL"}


async def test_request_id_is_echoed_and_bound_into_request_logs(make_client: MakeClient) -> None:
    """A sane X-Request-Id is kept, a garbled one replaced; logs of the request carry it."""
    client = await make_client('[auth]\ntokens = ["t0ken-abc"]\n')
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        kept = await client.post(
            "/api/v1/results", json=CRIT, headers={"X-Request-Id": "nagios-42.7"}
        )
        garbled = await client.get("/healthz", headers={"X-Request-Id": "a b;c"})
        fresh = await client.get("/healthz")
    assert kept.status == 401
    assert kept.headers["X-Request-Id"] == "nagios-42.7"
    made = [garbled.headers["X-Request-Id"], fresh.headers["X-Request-Id"]]
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]+", m) for m in made)
    assert made[0] != made[1]
    (auth_failed,) = [e for e in logs if e["event"] == "auth_failed"]
    assert auth_failed["request_id"] == "nagios-42.7"
    assert auth_failed["reason"].startswith("missing Authorization header")


async def test_readyz_runs_every_registered_check(make_client: MakeClient) -> None:
    """Checks registered by other components count: a failing or hung one makes it 503."""
    client = await make_client()
    ready = await client.get("/readyz")
    assert ready.status == 200
    body = await ready.json()
    assert body == {
        "status": "ready", "checks": {"writer": "ok", "store": "ok"},
        "store": {"kind": "sqlite", "path": str(client.app[CONFIG].store.path)},
    }  # fmt: skip

    async def unauthorised() -> str | None:
        return "helpdesk answered 401: check the API key"

    async def hung() -> str | None:
        await asyncio.sleep(60)
        return None

    client.app[READINESS].append(ReadinessCheck("helpdesk", unauthorised))
    client.app[READINESS].append(ReadinessCheck("outbox", hung))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("alertd.http.health.READINESS_TIMEOUT", 0.05)
        response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "not ready"
    assert body["problems"] == [
        "helpdesk: helpdesk answered 401: check the API key",
        "outbox: no answer within 0.05s",
    ]
    assert body["checks"]["store"] == "ok"
    assert (await client.get("/healthz")).status == 200  # alive, only not ready


async def test_a_bug_in_a_handler_is_a_json_500_logged_with_its_traceback(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception is answered {"error": "internal error"} with the request id, and
    logged with its traceback under that id; it is not counted as a refused input."""

    def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ingest, "parse_results", broken)
    client = await make_client()
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        response = await client.post("/api/v1/results", json=CRIT, headers={"X-Request-Id": "r-1"})
    assert response.status == 500
    assert await response.json() == {"error": "internal error"}
    assert response.headers["X-Request-Id"] == "r-1"
    (failed,) = [e for e in logs if e["event"] == "request_failed"]
    assert (failed["request_id"], failed["path"], failed["exc_info"]) == (
        "r-1",
        "/api/v1/results",
        True,
    )
    metrics = await (await client.get("/metrics")).text()
    assert "alertd_ingest_rejected_total{" in metrics  # every label set starts at 0 ...
    assert not re.search(r"alertd_ingest_rejected_total\{.*\} [1-9]", metrics)  # ... and stays


async def test_accepted_results_are_answered_in_json_with_the_request_id(
    make_client: MakeClient,
) -> None:
    """The prebuilt 202 is the JSON a client parses: body, Content-Type with charset, id."""
    client = await make_client('[auth]\ntokens = ["t0ken-abc"]\n')
    auth = {"Authorization": "Bearer t0ken-abc"}
    one = await client.post("/api/v1/results", json=CRIT, headers={**auth, "X-Request-Id": "n-1"})
    both = [CRIT, {**CRIT, "host": "web-02"}]
    two = await client.post("/api/v1/results", json=both, headers=auth)
    for response, count in ((one, 1), (two, 2)):
        assert response.status == 202
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        assert await response.read() == b'{"accepted": %d}' % count
        assert await response.json() == {"accepted": count}
    assert one.headers["X-Request-Id"] == "n-1"
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]+", two.headers["X-Request-Id"])
