"""NRDP end to end: every captured client request, token errors, bad data, external commands."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from alertd.http.keys import ENGINE
from tests.support import SAMPLES, MakeClient, incidents, stored_incidents

TOKEN = "s3cr3t-token"
NRDP = f'[nrdp]\ntokens = ["other-token", "{TOKEN}"]\n'
DISK = ("web-01/Disk /var", "CRITICAL", "DISK CRITICAL - /var 97% full", "var=97%;90;95;0;100")
PING_DOWN = ("web-01", "DOWN", "PING CRITICAL - 100% packet loss", "")
# The awkward output every `special` capture carries; send_nrdp.sh sends it unencoded.
SPECIAL = "HTTP WARNING - 'slow' & <rising> +5% a+b 50%ab"
# Per client mode: (results in the request, incidents expected: key, state, output, perfdata).
EXPECTED: dict[str, tuple[int, list[tuple[str, str, str, str]]]] = {
    "svc": (1, [DISK]),
    "host": (1, [PING_DOWN]),
    "stdin": (2, [("web-01/HTTP", "WARNING", "HTTP WARNING - 2.5 s response", "")]),
    "file": (2, [DISK]),  # plus web-01 UP, which opens nothing
    "special": (1, [("web-01/HTTP", "WARNING", SPECIAL, "time=2.5s;2;5")]),
}


def capture(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


async def replay(client: Any, request: dict[str, Any]) -> tuple[int, str]:
    """Send a captured request as the client sent it: method, path, query, type, raw body."""
    url = request["path"] + (f"?{request['query']}" if request["query"] else "")
    headers = {k: v for k, v in request["headers"].items() if k == "Content-Type"}
    response = await client.request(
        request["method"], url, data=request["body"].encode(), headers=headers
    )
    return response.status, await response.text()


def status_of(body: str) -> str:
    """What the clients do: send_nrdp.sh seds out <status>, the others read the first one."""
    if body.startswith("{"):
        return str(json.loads(body)["result"]["status"])
    match = re.search(r"<status>(.*)</status>", body)
    assert match, body
    return match.group(1)


@pytest.mark.parametrize("path", sorted((SAMPLES / "nrdp").glob("*.json")), ids=lambda p: p.stem)
async def test_every_captured_client_request_is_stored(make_client: MakeClient, path: Path) -> None:
    """Each real client request gets status 0 and `N checks processed`, and its results become
    the expected incidents, awkward characters intact (send_nrdp.sh's unencoded `+` too)."""
    request = capture(path)
    count, expected = EXPECTED[request["mode"]]
    client = await make_client(NRDP)

    status, body = await replay(client, request)

    assert status == 200
    assert status_of(body) == "0"
    assert f"{count} checks processed" in body
    assert "processed." not in body  # NRDP's text has no trailing period
    if request["client"] == "nrdpy":  # that library prefixes the output with the state name
        expected = [(k, s, f"{s}: {o}", p) for k, s, o, p in expected]
    found = [
        (i["key"], i["check_state"], i["last_output"], i["perfdata"])
        for i in await incidents(client)
    ]
    assert found == expected
    if request["mode"] == "host":
        assert (await incidents(client))[0]["state_type"] == "HARD"  # passive host: HARD
    metrics = await (await client.get("/metrics")).text()
    assert f'alertd_results_received_total{{source="nrdp",state="{expected[0][1]}"}}' in metrics


async def test_replies_take_the_format_of_the_request(make_client: MakeClient) -> None:
    """XML data gets an XML reply (text/xml), JSON data a JSON reply, as NRDP chooses."""
    client = await make_client(NRDP)
    _, body = await replay(client, capture(SAMPLES / "nrdp" / "sh_svc.json"))
    assert body.startswith('<?xml version="1.0" encoding="utf-8"?>\n<result>\n  <status>0</status>')
    assert "<output>1 checks processed</output>" in body

    response = await client.post(
        "/nrdp", data={"token": TOKEN, "cmd": "submitcheck", "JSONDATA": json.dumps(
            {"checkresults": [{"checkresult": {"type": "host"}, "hostname": "db-01",
                               "state": 1, "output": "PING CRITICAL"}]})},
    )  # fmt: skip
    assert response.content_type == "application/json"
    assert await response.json() == {
        "result": {"status": 0, "message": "OK", "meta": {"output": "1 checks processed"}}
    }
    response = await client.get("/nrdp/", params={"cmd": "hello"})  # no token needed
    assert "<product>nrdp</product>" in await response.text()


TOKEN_CASES = [
    ({"cmd": "submitcheck", "xml": "<checkresults/>"}, NRDP, "NO TOKEN"),
    ({"cmd": "submitcheck", "token": "guess", "xml": "<checkresults/>"}, NRDP, "BAD TOKEN"),
    ({"cmd": "submitcheck", "token": TOKEN, "json": "{}"}, "", "NO TOKENS"),
]


@pytest.mark.parametrize(("form", "toml", "message"), TOKEN_CASES)
async def test_token_errors_are_nrdp_refusals(
    make_client: MakeClient, tmp_path: Path, form: dict[str, str], toml: str, message: str
) -> None:
    """A missing or wrong token, or a server without NRDP tokens: HTTP 200, status -1."""
    client = await make_client(toml)
    response = await client.post("/nrdp/", data=form)
    assert response.status == 200
    body = await response.text()
    assert status_of(body) == "-1"
    assert message in body
    assert TOKEN not in body
    assert stored_incidents(tmp_path) == []
    metrics = await (await client.get("/metrics")).text()
    assert 'alertd_ingest_rejected_total{reason="unauthorized",source="nrdp"} 1.0' in metrics


GOOD = "<checkresult type='host'><hostname>web-01</hostname><state>1</state></checkresult>"
BAD_DATA = [
    ("xml", "", "BAD XML", "no element found"),
    ("xml", f"<checkresults>{GOOD}", "BAD XML", "line 1"),
    ("json", '{"checkresults": [', "BAD JSON", "line 1"),
    ("json", '{"results": []}', "BAD JSON", '{"checkresults": [...]}'),
    ("json", '{"checkresults": [' + "7" * 5000 + "]}", "BAD JSON", "more than 4300 digits"),
    ("json", "[" * 30000, "BAD JSON", "nested too deeply"),
    (
        "xml",
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
        f"<checkresults>{GOOD}</checkresults>",
        "BAD XML",
        "DOCTYPE",
    ),
    (
        "xml",
        f"<checkresults>{GOOD}<checkresult type='service'><hostname>web-01</hostname>"
        "<servicename>HTTP</servicename><state>two</state></checkresult>"
        "<checkresult type='host'><hostname>db-01</hostname><state>3</state></checkresult>"
        "</checkresults>",
        "BAD XML",
        "2 invalid, nothing stored: checkresult[1] (web-01/HTTP): state: 'two' is not an "
        "integer return code; checkresult[2] (db-01): state: host return code must be 0-2",
    ),
]


@pytest.mark.parametrize(("field", "data", "message", "information"), BAD_DATA)
async def test_malformed_batches_are_refused_whole(
    make_client: MakeClient,
    tmp_path: Path,
    field: str,
    data: str,
    message: str,
    information: str,
) -> None:
    """Unparseable data, a DTD, or one bad item: NRDP's refusal naming why; nothing stored."""
    client = await make_client(NRDP)
    response = await client.post("/nrdp/", data={"token": TOKEN, "cmd": "submitcheck", field: data})
    body = await response.text()
    assert response.status == 200
    if field == "json":
        result = json.loads(body)["result"]
        assert (result["status"], result["message"]) == (-1, message)
        assert information in result["information"]
    else:
        assert status_of(body) == "-1"
        assert f"<message>{message}</message>" in body
        assert information in body.replace("&lt;", "<").replace("&gt;", ">")
    assert stored_incidents(tmp_path) == []


async def test_mixed_batch_with_nagios_state_coercion(make_client: MakeClient) -> None:
    """Hosts and services in one batch; a service code outside 0-3 is UNKNOWN, as in Nagios;
    multi-line output splits into output, long output and perfdata."""
    client = await make_client(NRDP)
    xml = (
        "<checkresults>"
        "<checkresult type='host'><hostname>db-01</hostname><state>2</state>"
        "<output>PING UNREACHABLE</output><time>1767261600</time></checkresult>"
        "<checkresult type='service'><hostname>web-01</hostname><servicename>Load</servicename>"
        "<state>7</state><output>weird plugin|load=9\nline two\nline three|more=1</output>"
        "</checkresult>"
        "<checkresult><hostname>web-02</hostname><state>1</state></checkresult>"  # type: host
        "</checkresults>"
    )
    response = await client.post("/nrdp/", data={"token": TOKEN, "cmd": "submitcheck", "xml": xml})
    assert "3 checks processed" in await response.text()
    found = {i["key"]: i for i in await incidents(client)}
    assert {k: i["check_state"] for k, i in found.items()} == {
        "db-01": "UNREACHABLE", "web-01/Load": "UNKNOWN", "web-02": "DOWN",
    }  # fmt: skip
    load = found["web-01/Load"]
    assert (load["last_output"], load["long_output"], load["perfdata"]) == (
        "weird plugin", "line two\nline three", "load=9 more=1",
    )  # fmt: skip


async def test_submitcmd_results_and_acknowledgements(make_client: MakeClient) -> None:
    """External commands: results with Nagios's output unescaping, then an ack by command."""
    client = await make_client(NRDP)
    commands = [
        r"PROCESS_SERVICE_CHECK_RESULT;web-01;HTTP;2;HTTP CRITICAL; 503\nbody: a\\b|time=1s",
        "[1767261600] process_host_check_result;db-01;1;PING CRITICAL",
    ]
    form = [("token", TOKEN), ("cmd", "submitcmd"), *(("command[]", c) for c in commands)]
    response = await client.post("/nrdp/", data=form)
    assert status_of(await response.text()) == "0"
    found = {i["key"]: i for i in await incidents(client)}
    http = found["web-01/HTTP"]
    assert (http["check_state"], http["last_output"], http["long_output"], http["perfdata"]) == (
        "CRITICAL", "HTTP CRITICAL; 503", "body: a\\b", "time=1s",
    )  # fmt: skip
    assert found["db-01"]["check_state"] == "DOWN"

    ack = "ACKNOWLEDGE_SVC_PROBLEM;web-01;HTTP;2;1;1;alice;on it"
    form = {"token": TOKEN, "cmd": "submitcmd", "command": ack}
    response = await client.post("/nrdp/", data=form)
    assert status_of(await response.text()) == "0"
    detail = await (await client.get(f"/api/v1/incidents/{http['id']}")).json()
    assert detail["events"][-1]["kind"] == "acknowledged"
    assert detail["events"][-1]["detail"] == {
        "author": "alice", "comment": "on it", "source": "nagios", "sticky": True,
    }  # fmt: skip

    for command, information in [
        ("SCHEDULE_FORCED_SVC_CHECK;web-01;HTTP;1767261600", "is not supported"),
        ("PROCESS_HOST_CHECK_RESULT;db-01;3;what", "host return code must be 0-2"),
        ("PROCESS_SERVICE_CHECK_RESULT;web-01;HTTP", "needs 4 arguments, got 2"),
    ]:
        response = await client.post(
            "/nrdp/", data={"token": TOKEN, "cmd": "submitcmd", "command": command}
        )
        body = await response.text()
        assert status_of(body) == "-1" and "BAD COMMAND" in body and information in body


async def test_store_failure_is_a_5xx_not_a_refusal(make_client: MakeClient) -> None:
    """Our own failure to commit is the one NRDP answer that is not 200: clients may retry."""
    client = await make_client(NRDP)
    await client.app[ENGINE].stop()
    response = await client.post(
        "/nrdp/", data={"token": TOKEN, "cmd": "submitcheck", "xml": f"<r>{GOOD}</r>"}
    )
    assert response.status == 503
