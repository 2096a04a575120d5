"""Nagios / Opsview macro sets through `POST /api/v1/nagios`, from the real captures."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from alertd.clock import ManualClock
from alertd.http.keys import ENGINE
from tests.support import SAMPLES, MakeClient, incidents, opsview, sample, stored_incidents

# What Opsview's notification methods export (docs/protocols.md 4.3): no *STATEID, MAX*ATTEMPTS,
# perfdata or problem ids.


async def post(client: Any, name: str, *, form: bool = False) -> Any:
    if form:
        body = (SAMPLES / f"nagios_form_{name}.form").read_bytes()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        response = await client.post("/api/v1/nagios", data=body, headers=headers)
    else:
        response = await client.post("/api/v1/nagios", json=sample(f"nagios_{name}"))
    assert response.status == 202, await response.text()
    assert await response.json() == {"accepted": 1}
    return response


async def one(client: Any) -> dict[str, Any]:
    (incident,) = await incidents(client)
    return incident


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
async def test_ocsp_results_follow_soft_then_hard_then_ok(
    make_client: MakeClient, form: bool
) -> None:
    """OCSP results (no notification type) keep Nagios's state type and attempts: SOFT 1/2 is
    pending, HARD opens, OK starts the recovery hold; labels from custom variables."""
    client = await make_client()
    await post(client, "ocsp_soft_critical", form=form)
    pending = await one(client)
    assert (pending["key"], pending["status"], pending["state_type"]) == (
        "web-01/Disk /var", "pending", "SOFT",
    )  # fmt: skip
    assert pending["last_output"] == "DISK CRITICAL - /var 97% full"
    assert pending["perfdata"] == "var=97%;90;95;0;100"
    assert pending["labels"] == {"_HOSTENVIRONMENT": "test", "_SERVICESEVERITY": "critical"}

    await post(client, "ocsp_hard_critical", form=form)
    opened = await one(client)
    assert (opened["id"], opened["status"], opened["state_type"]) == (pending["id"], "open", "HARD")

    await post(client, "ocsp_ok", form=form)
    assert (await one(client))["status"] == "recovering"

    await post(client, "ochp_host_up", form=form)  # a host UP result opens nothing
    assert len(await incidents(client)) == 1


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
async def test_problem_and_recovery_notifications_drive_the_incident(
    make_client: MakeClient, clock: ManualClock, form: bool
) -> None:
    """PROBLEM opens at once (HARD), RECOVERY starts the hold, and the hold resolves it."""
    client = await make_client('[lifecycle]\nrecovery_hold = "1m"\n')
    await post(client, "notification_problem", form=form)
    incident = await one(client)
    assert (incident["status"], incident["check_state"], incident["priority"]) == (
        "open", "CRITICAL", "high",
    )  # fmt: skip
    await post(client, "notification_recovery", form=form)
    assert (await one(client))["status"] == "recovering"
    clock.advance(timedelta(minutes=1))
    await client.app[ENGINE].run_timers()
    resolved = await one(client)
    assert (resolved["status"], resolved["last_output"]) == ("resolved", "DISK OK - /var 41% full")


NOTICE_CASES = [
    ("ACKNOWLEDGEMENT", "acknowledged", {"acknowledged": True}),
    ("DOWNTIMESTART", "suppressed", {"suppressed": True}),
    ("FLAPPINGSTART", "flapping_started", {"flapping": True}),
    ("CUSTOM", "note", {}),
]


@pytest.mark.parametrize(("kind", "event", "flags"), NOTICE_CASES)
async def test_other_notification_types_become_incident_events(
    make_client: MakeClient, kind: str, event: str, flags: dict[str, bool]
) -> None:
    """ACKNOWLEDGEMENT, DOWNTIME*, FLAPPING*, CUSTOM set flags and leave an event carrying the
    author and comment; they neither open nor resolve anything."""
    client = await make_client()
    await post(client, "notification_problem")
    macros = {
        **sample("nagios_notification_problem"),
        "NAGIOS_NOTIFICATIONTYPE": kind,
        "NAGIOS_NOTIFICATIONAUTHOR": "alice",
        "NAGIOS_NOTIFICATIONCOMMENT": "disk swap tonight",
    }
    response = await client.post("/api/v1/nagios", json=macros)
    assert response.status == 202
    incident = await one(client)
    assert incident["status"] == "open"
    for flag, value in flags.items():
        assert incident[flag] is value
    detail = await (await client.get(f"/api/v1/incidents/{incident['id']}")).json()
    last = detail["events"][-1]
    assert last["kind"] == event
    assert (last["detail"]["author"], last["detail"]["comment"], last["detail"]["source"]) == (
        "alice", "disk swap tonight", "nagios",
    )  # fmt: skip


async def test_opsview_subset_is_enough(make_client: MakeClient) -> None:
    """Opsview's fixed variable list (state names only, no max attempts, no perfdata) opens and
    recovers the same incident; its primary host group becomes the hostgroups label."""
    client = await make_client()
    problem = {**opsview(sample("nagios_notification_problem")), "NAGIOS_HOSTGROUPNAME": "web"}
    assert "NAGIOS_SERVICESTATEID" not in problem
    response = await client.post("/api/v1/nagios", json=problem)
    assert response.status == 202
    incident = await one(client)
    assert (incident["key"], incident["status"], incident["check_state"]) == (
        "web-01/Disk /var", "open", "CRITICAL",
    )  # fmt: skip
    assert incident["labels"] == {"hostgroups": "web"}
    assert incident["perfdata"] == ""
    recovery = opsview(sample("nagios_notification_recovery"))
    assert (await client.post("/api/v1/nagios", json=recovery)).status == 202
    assert (await one(client))["status"] == "recovering"


async def test_bad_macro_sets_are_refused_naming_each_macro(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """Every unusable macro is named (index and macro), and nothing of the request is stored."""
    client = await make_client()
    good = sample("nagios_notification_problem")
    batch = [
        good,
        {**good, "NAGIOS_HOSTNAME": " "},
        {**good, "NAGIOS_SERVICESTATE": "DOWN"},  # a host state on a service
        {**good, "NAGIOS_NOTIFICATIONTYPE": "PROBLEMATIC", "NAGIOS_TIMET": "soon"},
        {"NAGIOS_HOSTNAME": "web-01"},  # no state at all
    ]
    response = await client.post("/api/v1/nagios", json=batch)
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "4 invalid macro sets; nothing was stored"
    assert {(d["index"], d["field"]) for d in body["details"]} == {
        (1, "NAGIOS_HOSTNAME"), (2, "NAGIOS_SERVICESTATE"), (3, "NAGIOS_NOTIFICATIONTYPE"),
        (3, "NAGIOS_TIMET"), (4, "NAGIOS_HOSTSTATE"),
    }  # fmt: skip
    response = await client.post("/api/v1/nagios", data=b"NAGIOS_HOSTNAME", headers={
        "Content-Type": "text/plain"})  # fmt: skip
    assert response.status == 415
    assert stored_incidents(tmp_path) == []


async def test_one_check_seen_by_ocsp_and_by_its_notification_counts_once(
    make_client: MakeClient, clock: ManualClock
) -> None:
    """Found with a real Nagios 4: with OCSP and notifications both on, the HARD check that
    notifies arrives twice, stamped with the same check time; it is one occurrence, and a
    later check of the same state counts again."""
    clock.advance(timedelta(days=400))  # past the captures' check times (no capping to now)
    client = await make_client()
    await post(client, "ocsp_hard_critical")
    await post(client, "notification_problem")
    assert (await one(client))["occurrences"] == 1
    later = {**sample("nagios_ocsp_hard_critical"), "NAGIOS_LASTSERVICECHECK": "1795324269"}
    response = await client.post("/api/v1/nagios", json=later)
    assert response.status == 202
    assert (await one(client))["occurrences"] == 2
