"""Metrics: what /metrics shows after real traffic, and the methods other components call."""

from __future__ import annotations

import platform
from datetime import timedelta
from typing import Any

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from alertd.clock import ManualClock
from alertd.http.keys import ENGINE
from alertd.metrics import METRIC_NAMES, Metrics
from tests.support import MakeClient

CRIT = {"host": "web-01", "service": "HTTP", "state": "CRITICAL", "output": "connection refused"}
TOKEN = "s3cret-token-for-metrics"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(sample name, sorted labels): value}; fetched without a token."""
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def exposed_names(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


async def test_every_documented_metric_is_exposed(make_client: MakeClient) -> None:
    """Each name in METRIC_NAMES (the README's table) is on /metrics from the start."""
    client = await make_client()
    text = await (await client.get("/metrics")).text()
    assert set(METRIC_NAMES) <= exposed_names(text)
    assert 'alertd_build_info{python="' in text


async def test_ingest_and_incident_metrics_follow_real_traffic(make_client: MakeClient) -> None:
    """Accepted results by state, refusals by reason, batches, opened/deduplicated, gauges."""
    client = await make_client(f'[auth]\ntokens = ["{TOKEN}"]\n')
    post = "/api/v1/results"
    assert (await client.post(post, json=[CRIT] * 3, headers=AUTH)).status == 202
    ok = {**CRIT, "host": "web-02", "state": "OK"}
    assert (await client.post(post, json=ok, headers=AUTH)).status == 202
    disk = {"host": "db-01", "service": "Disk", "state": "WARNING"}
    assert (await client.post(post, json=disk, headers=AUTH)).status == 202
    assert (await client.post(post, json={"host": ""}, headers=AUTH)).status == 400
    assert (await client.post(post, json=CRIT)).status == 401
    wrong = {"Authorization": "Bearer no"}
    assert (await client.post(post, json=CRIT, headers=wrong)).status == 401
    assert (await client.post(post, data=b"x", headers=AUTH)).status == 415

    m = await scrape(client)
    assert m["alertd_results_received_total", (("source", "api"), ("state", "CRITICAL"))] == 3
    assert m["alertd_results_received_total", (("source", "api"), ("state", "OK"))] == 1
    assert m["alertd_results_received_total", (("source", "api"), ("state", "WARNING"))] == 1
    rejected = "alertd_ingest_rejected_total"
    assert m[rejected, (("reason", "invalid"), ("source", "api"))] == 1
    assert m[rejected, (("reason", "unauthorized"), ("source", "api"))] == 2
    assert m[rejected, (("reason", "unsupported_media"), ("source", "api"))] == 1
    assert m["alertd_ingest_batch_size_count", ()] == 3
    assert m["alertd_ingest_batch_size_sum", ()] == 5
    assert m["alertd_ingest_commit_duration_seconds_count", ()] == 3
    assert m["alertd_incidents_opened_total", ()] == 2
    assert m["alertd_results_deduplicated_total", ()] == 2
    assert m["alertd_incidents", (("priority", "high"), ("status", "open"))] == 1
    assert m["alertd_incidents", (("priority", "medium"), ("status", "open"))] == 1
    assert m["alertd_incidents", (("priority", "urgent"), ("status", "pending"))] == 0
    assert m["alertd_incidents_flapping", ()] == 0
    assert m["alertd_ingest_queued_submissions", ()] == 0


async def test_resolved_and_reopened_are_counted(
    make_client: MakeClient, clock: ManualClock
) -> None:
    """A hold that ends counts a resolution; a problem inside the reopen window a reopening."""
    client = await make_client('[lifecycle]\nrecovery_hold = "30s"\n')
    engine = client.app[ENGINE]
    await client.post("/api/v1/results", json=CRIT)
    await client.post("/api/v1/results", json={**CRIT, "state": "OK"})
    recovering = ("alertd_incidents", (("priority", "high"), ("status", "recovering")))
    assert (await scrape(client))[recovering] == 1
    clock.advance(timedelta(seconds=31))
    await engine.run_timers()
    m = await scrape(client)
    assert m["alertd_incidents_resolved_total", ()] == 1
    assert m[recovering] == 0
    assert m["alertd_ingest_batch_size_count", ()] == 2  # the timer-only commit is no batch
    await client.post("/api/v1/results", json=CRIT)
    assert (await scrape(client))["alertd_incidents_reopened_total", ()] == 1


def test_helpdesk_outbox_and_escalation_methods_feed_their_metrics() -> None:
    """The methods issue 4/5 code calls land on the documented names and labels."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, version="1.2.3")
    metrics.helpdesk_request("create", "ok", 0.2)
    metrics.helpdesk_request("create", "rate_limited", 0.1)
    metrics.helpdesk_rate_limited()
    metrics.outbox_state(pending=4, oldest_pending_age=90.0, dead_letters=1)
    metrics.dead_lettered()
    metrics.escalated("tier2")
    metrics.reloaded(ok=False)
    value = registry.get_sample_value
    assert value("alertd_helpdesk_requests_total", {"operation": "create", "outcome": "ok"}) == 1
    assert value("alertd_helpdesk_request_duration_seconds_count", {"operation": "create"}) == 2
    assert value("alertd_helpdesk_rate_limited_total") == 1
    assert value("alertd_outbox_pending") == 4
    assert value("alertd_outbox_oldest_pending_age_seconds") == 90
    assert value("alertd_outbox_dead_letters") == 1
    assert value("alertd_outbox_dead_lettered_total") == 1
    assert value("alertd_escalations_total", {"level": "tier2"}) == 1
    assert value("alertd_config_reloads_total", {"outcome": "failed"}) == 1
    build = {"version": "1.2.3", "python": platform.python_version()}
    assert value("alertd_build_info", build) == 1


async def test_incident_changes_are_logged_with_id_key_and_source(
    make_client: MakeClient, clock: ManualClock
) -> None:
    """Opened comes from the api input; the timer's resolution is the engine's own doing."""
    client = await make_client('[lifecycle]\nrecovery_hold = "30s"\n')
    with structlog.testing.capture_logs() as logs:
        await client.post("/api/v1/results", json=[CRIT, CRIT])
        await client.post("/api/v1/results", json={**CRIT, "state": "OK"})
        clock.advance(timedelta(seconds=31))
        await client.app[ENGINE].run_timers()
    changes = [e for e in logs if e["event"].startswith("incident_")]
    assert [(e["event"], e["source"]) for e in changes] == [
        ("incident_opened", "api"),
        ("incident_recovering", "api"),
        ("incident_resolved", "engine"),
    ]
    assert all(e["incident_id"] == 1 and e["key"] == "web-01/HTTP" for e in changes)
    assert changes[0]["priority"] == "high" and changes[0]["status"] == "open"


async def test_process_series_and_watched_counters_exist_from_the_start(
    make_client: MakeClient,
) -> None:
    """Right after a start: the standard process_* series, and the counters alert rules watch
    at 0 for every input, so "no results" can fire before the first result ever comes."""
    client = await make_client()
    text = await (await client.get("/metrics")).text()
    assert "process_resident_memory_bytes " in text and "python_info{" in text
    for source in ("api", "nrdp", "nagios", "alertmanager"):
        assert f'alertd_results_received_total{{source="{source}",state="CRITICAL"}} 0.0' in text
    assert 'alertd_helpdesk_requests_total{operation="create_ticket",outcome="auth_error"} 0.0' in (
        text
    )
