"""Alertmanager webhooks through `POST /api/v1/alertmanager`, from the real captures."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from alertd.clock import ManualClock
from alertd.http.keys import ENGINE
from tests.support import SAMPLES, MakeClient, incidents, stored_incidents


def webhook(name: str) -> dict[str, Any]:
    return dict(json.loads((SAMPLES / f"alertmanager_{name}.json").read_text(encoding="utf-8")))


async def deliver(client: Any, body: Any) -> Any:
    """Post as Alertmanager does (its captured headers), and return the answer."""
    headers = json.loads((SAMPLES / "alertmanager_firing.headers.json").read_text())["headers"]
    wire = {k: v for k, v in headers.items() if k in ("Content-Type", "User-Agent")}
    return await client.post("/api/v1/alertmanager", data=json.dumps(body), headers=wire)


async def test_firing_then_resolved_then_held(make_client: MakeClient, clock: ManualClock) -> None:
    """A firing alert opens an incident at once (it is HARD); resolved starts the recovery hold;
    the hold resolves it. Summary is the output, description the long output; labels and
    annotations are kept."""
    client = await make_client('[lifecycle]\nrecovery_hold = "2m"\n')
    response = await deliver(client, webhook("firing"))
    assert response.status == 200
    assert await response.json() == {"accepted": 1, "ignored": 0}
    (incident,) = await incidents(client)
    assert (incident["host"], incident["service"], incident["status"], incident["check_state"]) == (
        "web-01", "HarnessDiskFull (job=node, service=storage, severity=critical)", "open",
        "CRITICAL",
    )  # fmt: skip
    assert incident["last_output"] == "Disk almost full on web-01"
    assert incident["long_output"] == "/var is 97% full"
    assert incident["labels"]["job"] == "node"
    assert incident["labels"]["annotations.runbook_url"] == "https://runbooks.example.invalid/disk"
    assert incident["labels"]["alertmanager.fingerprint"] == "07fedfe48ec048de"

    assert (await deliver(client, webhook("resolved"))).status == 200
    (recovering,) = await incidents(client)
    assert (recovering["id"], recovering["status"]) == (incident["id"], "recovering")
    clock.advance(timedelta(minutes=2))
    await client.app[ENGINE].run_timers()
    assert (await incidents(client))[0]["status"] == "resolved"


async def test_group_of_alerts_makes_one_incident_per_instance(make_client: MakeClient) -> None:
    """A group notification carries several alerts; each instance is its own incident."""
    client = await make_client()
    response = await deliver(client, webhook("group_firing"))
    assert await response.json() == {"accepted": 3, "ignored": 0}
    found = {(i["host"], i["service"], i["check_state"]) for i in await incidents(client)}
    name = "HarnessHighLatency (job=api, severity=warning)"
    assert found == {(f"api-0{n}", name, "WARNING") for n in (1, 2, 3)}


async def test_key_and_severity_follow_configuration(make_client: MakeClient) -> None:
    """host label -> host; unused key labels stay in the service name; severities map through
    severity_map, info/none are ignored, unmapped ones take unmapped_severity."""
    client = await make_client(
        '[alertmanager]\nkey_labels = ["alertname", "instance", "mountpoint"]\n'
        'severity_map = { page = "CRITICAL", warning = "ignore" }\n'
        'unmapped_severity = "WARNING"\n'
    )
    base = webhook("firing")
    alert = base["alerts"][0]
    alerts = [
        {**alert, "labels": {**alert["labels"], "host": "web-01", "mountpoint": "/var",
                             "severity": "page"}},
        {**alert, "labels": {"alertname": "Odd", "instance": "x:1", "severity": "mystery"}},
        {**alert, "labels": {"alertname": "Watchdog", "severity": "none"}},
        {**alert, "labels": {"alertname": "Meh", "instance": "x:1", "severity": "warning"}},
        {**alert, "labels": {"alertname": "Global"}, "annotations": {}},
    ]  # fmt: skip
    response = await deliver(client, {**base, "alerts": alerts, "newField": {"x": 1}})
    assert await response.json() == {"accepted": 3, "ignored": 2}
    found = {(i["host"], i["service"], i["check_state"], i["last_output"])
             for i in await incidents(client)}  # fmt: skip
    assert found == {
        ("web-01", "HarnessDiskFull (instance=web-01:9100, mountpoint=/var)", "CRITICAL",
         "Disk almost full on web-01"),
        ("x", "Odd", "WARNING", "Disk almost full on web-01"),
        ("alertmanager", "Global", "WARNING", "Global"),
    }  # fmt: skip


async def test_distinct_alerts_never_merge_and_read_well(
    make_client: MakeClient, clock: ManualClock
) -> None:
    """DiskFull on /var and on /home of one instance are two incidents, as in Alertmanager
    (identity = the full label set): /home still firing is not resolved when /var resolves,
    and nothing swings between their severities. The host is the machine's name without the
    exporter's port, the service is readable, and dropped info/none alerts are counted."""
    client = await make_client('[lifecycle]\nrecovery_hold = "1m"\n')
    alert = webhook("firing")["alerts"][0]
    labels = {"alertname": "DiskFull", "instance": "web-02:9100", "job": "node"}

    def disk(mountpoint: str, severity: str, status: str = "firing") -> dict[str, Any]:
        more = {"mountpoint": mountpoint, "severity": severity}
        return {**alert, "status": status, "labels": {**labels, **more}}

    watchdog = {**alert, "labels": {"alertname": "Watchdog", "severity": "none"}}
    info = {**alert, "labels": {**labels, "alertname": "Info", "severity": "info"}}
    body = {**webhook("firing"), "alerts": [disk("/var", "critical"), disk("/home", "warning"),
                                            watchdog, info]}  # fmt: skip
    assert await (await deliver(client, body)).json() == {"accepted": 2, "ignored": 2}
    found = {i["service"]: i for i in await incidents(client)}
    assert set(found) == {
        "DiskFull (job=node, mountpoint=/home, severity=warning)",
        "DiskFull (job=node, mountpoint=/var, severity=critical)",
    }
    assert {i["host"] for i in found.values()} == {"web-02"}

    body = {**webhook("resolved"), "alerts": [disk("/var", "critical", "resolved")]}
    assert (await deliver(client, body)).status == 200
    clock.advance(timedelta(minutes=2))
    await client.app[ENGINE].run_timers()
    states = {i["service"]: (i["status"], i["check_state"], i["flapping"])
              for i in await incidents(client)}  # fmt: skip
    assert states == {
        "DiskFull (job=node, mountpoint=/home, severity=warning)": ("open", "WARNING", False),
        "DiskFull (job=node, mountpoint=/var, severity=critical)": ("resolved", "OK", False),
    }
    metrics = await (await client.get("/metrics")).text()
    assert "alertd_alertmanager_alerts_ignored_total 2.0" in metrics


async def test_port_kept_and_key_narrowed_when_configured(make_client: MakeClient) -> None:
    """strip_port = false keeps `host:port`; key_labels narrows the identity, so alerts that
    differ only in other labels merge, as the user asked."""
    client = await make_client(
        '[alertmanager]\nstrip_port = false\nkey_labels = ["alertname", "instance"]\n'
    )
    alert = webhook("firing")["alerts"][0]
    labels = {"alertname": "DiskFull", "instance": "[2001:db8::7]:9100", "severity": "warning"}
    alerts = [{**alert, "labels": {**labels, "mountpoint": m}} for m in ("/var", "/home")]
    assert await (await deliver(client, {**webhook("firing"), "alerts": alerts})).json() == {
        "accepted": 2, "ignored": 0,
    }  # fmt: skip
    (incident,) = await incidents(client)
    assert (incident["host"], incident["service"]) == ("[2001:db8::7]:9100", "DiskFull")


BAD = [
    ("not json", b'{"alerts": [', 400, "malformed JSON"),
    ("no alerts", {"version": "4"}, 400, "alerts: expected an array"),
    ("old version", {"version": "3", "alerts": []}, 400, "unsupported webhook payload version"),
    (
        "bad alert",
        {
            "version": "4",
            "alerts": [
                {"status": "firing", "labels": {"alertname": "A"}},
                {"status": "gone", "labels": {"alertname": 5}},
            ],
        },
        400,
        "1 invalid alert; nothing was stored",
    ),
]


@pytest.mark.parametrize(("name", "body", "status", "message"), BAD, ids=[b[0] for b in BAD])
async def test_malformed_bodies_are_4xx_and_store_nothing(
    make_client: MakeClient, tmp_path: Path, name: str, body: Any, status: int, message: str
) -> None:
    """A malformed body is a 4xx (Alertmanager will not retry it) and stores nothing."""
    client = await make_client()
    if isinstance(body, bytes):
        response = await client.post(
            "/api/v1/alertmanager", data=body, headers={"Content-Type": "application/json"}
        )
    else:
        response = await deliver(client, body)
    assert response.status == status, name
    assert message in (await response.json())["error"]
    assert stored_incidents(tmp_path) == []


async def test_bearer_token_applies_and_store_failure_is_5xx(make_client: MakeClient) -> None:
    """Under /api/ the bearer token is required when configured (Alertmanager's
    http_config.authorization sends it); our own commit failure is a 5xx it will retry."""
    client = await make_client('[auth]\ntokens = ["am-token"]\n')
    assert (await deliver(client, webhook("firing"))).status == 401
    auth = {"Authorization": "Bearer am-token", "Content-Type": "application/json"}
    await client.app[ENGINE].stop()
    response = await client.post("/api/v1/alertmanager", json=webhook("firing"), headers=auth)
    assert response.status == 503
