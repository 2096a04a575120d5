"""NRDP under a hostile body: the token is checked before the form is decoded, the number of
fields is capped, and a large submission is parsed without holding the event loop."""

from __future__ import annotations

import asyncio
import io
import time
from urllib.parse import quote_plus

from tests.support import MakeClient

TOKEN = "nrdp-t0ken"
NRDP = f'[nrdp]\ntokens = ["{TOKEN}"]\n'
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
MIB = 1024 * 1024


async def _stall_during(client: object, send: object) -> tuple[float, object]:
    """The longest /healthz round trip while `send` runs (the app shares the test's loop, so
    a stalled loop shows as a slow probe), and what `send` returned."""
    worst = 0.0
    task = asyncio.ensure_future(send)  # type: ignore[call-overload]
    while not task.done():
        started = time.perf_counter()
        await client.get("/healthz")  # type: ignore[attr-defined]
        worst = max(worst, time.perf_counter() - started)
    return worst, task.result()


async def test_a_16_mib_form_with_a_wrong_token_is_refused_at_once(
    make_client: MakeClient,
) -> None:
    """16 MiB of tiny fields (or of one escaped field) with a wrong token: BAD TOKEN, and the
    loop never stalls (it once decoded the whole form first: seconds)."""
    client = await make_client(NRDP)
    bodies = [
        b"a=b&" * (4 * MIB - 16) + b"token=wrong&cmd=submitcheck",
        b"token=wrong&cmd=submitcheck&xml=" + b"%41" * (5 * MIB),
    ]
    for body in bodies:
        started = time.perf_counter()
        worst, response = await _stall_during(
            client, client.post("/nrdp/", data=io.BytesIO(body), headers=FORM)
        )
        text = await response.text()  # type: ignore[attr-defined]
        assert "<status>-1</status>" in text and "BAD TOKEN" in text
        assert worst < 1.0, worst  # was 1.8-3 s; the bound only tells "off the loop" from "on it"
        assert time.perf_counter() - started < 2.0


async def test_too_many_fields_with_a_good_token_are_refused_unparsed(
    make_client: MakeClient,
) -> None:
    """Millions of empty fields with the right token: refused by count, quickly."""
    client = await make_client(NRDP)
    body = f"token={TOKEN}&cmd=submitcheck&".encode() + b"&" * (4 * MIB)
    worst, response = await _stall_during(
        client, client.post("/nrdp/", data=io.BytesIO(body), headers=FORM)
    )
    text = await response.text()  # type: ignore[attr-defined]
    assert "<status>-1</status>" in text and "too many form fields" in text
    assert worst < 1.0, worst  # was 1.8-3 s; the bound only tells "off the loop" from "on it"


async def test_a_large_valid_submission_is_parsed_off_the_loop(make_client: MakeClient) -> None:
    """1,000 check results of 4,000 escaped characters each (12 MiB) are all accepted while
    /healthz keeps answering promptly."""
    client = await make_client(NRDP)
    item = (
        "<checkresult type='service'><hostname>host-{n}</hostname>"
        "<servicename>disk</servicename><state>2</state><output>{pad}</output></checkresult>"
    )
    pad = "%" * 4000  # each sent as %25: 12 MiB of escapes to decode
    xml = (
        "<checkresults>"
        + "".join(item.format(n=n, pad=pad) for n in range(1000))
        + "</checkresults>"
    )
    body = f"token={TOKEN}&cmd=submitcheck&xml={quote_plus(xml)}".encode()
    assert len(body) > 3 * MIB
    worst, response = await _stall_during(
        client, client.post("/nrdp/", data=io.BytesIO(body), headers=FORM)
    )
    text = await response.text()  # type: ignore[attr-defined]
    assert "1000 checks processed" in text, text[:300]
    assert worst < 1.0, worst  # was 1.8-3 s; the bound only tells "off the loop" from "on it"
