"""The web console in a real Chromium (tests/support/browser.py): the board and its address,
an incident and its ticket link, ack, silence, re-drive, refresh without reload, and hostile
monitored text that must never run. The board test takes the README's screenshot: into
docs/console.png when ALERTD_UPDATE_SCREENSHOT=1, else into a temporary folder (a test run
leaves the working tree as it found it)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from alertd.clock import ManualClock
from alertd.http.keys import ENGINE
from alertd.sandbox import Sandbox
from tests.support import CRIT, ROOT, Client, MakeClient, deliver, post
from tests.support.browser import Browser, browser_session

README_SCREENSHOT = ROOT / "docs" / "console.png"
# Each payload would change the title (or raise an alert) if it ever ran.
PAYLOADS = [
    "<script>document.title='pwned'</script>",
    "<img src=x onerror=\"document.title='pwned';alert(1)\">",
    "javascript:document.title='pwned'",
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    yield from browser_session(tmp_path_factory.mktemp("browser"))


def url(client: Client, path: str) -> str:
    return str(client.make_url(path))


async def test_board_filter_incident_ticket_and_ack(
    browser: Browser,
    start: Callable[..., Awaitable[Client]],
    clock: ManualClock,
    tmp_path: Path,
) -> None:
    """Open the board, filter it by its address, follow an incident to its page, see the
    ticket link, acknowledge it and see the badge change, on the page and on the board."""
    client = await start()
    await post(client, [
        {**CRIT, "host": "db-01", "service": "Disk /var", "state": "WARNING",
         "output": "DISK WARNING - 91% used", "labels": {"hostgroups": "prod,databases"}},
        {**CRIT, "host": "backup-01", "service": "Nightly", "state": "UNKNOWN",
         "output": "no status file"},
    ])  # fmt: skip
    clock.advance(timedelta(minutes=42))
    await post(client, {**CRIT, "labels": {"hostgroups": "prod,web"},
                         "output": "HTTP CRITICAL - 503 Service Unavailable"})  # fmt: skip
    await post(client, {"host": "edge-02", "state": "DOWN", "output": "PING CRITICAL - 100% loss"})
    await deliver(client)

    await browser.get(url(client, "/ui/"))
    board = await browser.text(".board")
    assert board.index("web-01/HTTP") < board.index("db-01/Disk /var")  # urgent/high first
    update = os.environ.get("ALERTD_UPDATE_SCREENSHOT") == "1"
    shot = README_SCREENSHOT if update else tmp_path / "console.png"
    await browser.screenshot(shot)
    assert shot.stat().st_size > 10_000  # a rendered page, not an empty one

    await browser.get(url(client, "/ui/?host=web-*"))
    board = await browser.text(".board")
    assert "web-01/HTTP" in board and "db-01" not in board
    await browser.click("a.key")
    await browser.until("the incident page", lambda: "/ui/incidents/" in
                        browser.driver.current_url)  # fmt: skip
    link = await browser.find("#ticket a.ticket")
    assert "/a/tickets/" in (await browser.run(link.get_attribute, "href"))
    assert "ACK" not in await browser.text("#flags")

    await browser.fill("input[name=author]", "alice")
    await browser.click("#ack-button")
    await browser.until("the ACK badge", lambda: "ACK" in browser.driver.find_element(
        "css selector", "#flags").text)  # fmt: skip
    assert "by alice" in await browser.text("#flags")
    await browser.get(url(client, "/ui/?host=web-*"))
    assert "ACK" in await browser.text(".board")


async def test_silence_from_an_incident_suppresses_it(
    browser: Browser, make_client: MakeClient
) -> None:
    """"Silence this" opens a form pre-filled from the incident; once created, the incident
    shows SUPPRESSED with the silence's reason."""
    client = await make_client()
    await post(client, {**CRIT, "labels": {"rack": "r7"}})
    (incident,) = client.app[ENGINE].incidents()
    await browser.get(url(client, f"/ui/incidents/{incident.id}"))
    await browser.click("#silence-link")
    host = await browser.find("input[name=host]")
    assert await browser.run(host.get_attribute, "value") == "web-01"
    assert "rack=r7" in await browser.run((await browser.find("textarea")).get_attribute, "value")
    await browser.fill("#silence-form input[name=author]", "bob")
    await browser.fill("#silence-form input[name=comment]", "kernel update")
    await browser.click("#silence-form button[type=submit]")
    await browser.until("the incident page", lambda: "/ui/incidents/" in
                        browser.driver.current_url)  # fmt: skip
    flags = await browser.text("#flags")
    assert "SUPPRESSED" in flags and "kernel update" in flags


async def test_a_dead_letter_is_redriven(
    browser: Browser, start: Callable[..., Awaitable[Client]], sandbox: tuple[Sandbox, str]
) -> None:
    """A refused ticket create shows as a dead letter; Re-drive sends it again."""
    helpdesk, _ = sandbox
    client = await start('type = "Alert"\n')
    await post(client, CRIT)
    await deliver(client)
    await browser.get(url(client, "/ui/outbox"))
    assert "DEAD" in await browser.text(".ops")
    assert "1 dead letter" in await browser.text(".health")
    helpdesk.options.ticket_types = (*helpdesk.options.ticket_types, "Alert")
    await browser.click(".ops button[type=submit]")
    await browser.until("no dead letter", lambda: "0 dead letters" in
                        browser.driver.find_element("css selector", ".health").text)  # fmt: skip
    await deliver(client)
    assert len(helpdesk.tickets) == 1


async def test_the_board_refreshes_without_a_reload(
    browser: Browser, make_client: MakeClient
) -> None:
    """A new incident appears on an open board by itself, and the page is not reloaded (a
    marker set in the page survives)."""
    client = await make_client('[ui]\nrefresh = "1s"\n')
    await post(client, CRIT)
    await browser.get(url(client, "/ui/"))
    await browser.script("window.alertdMarker = 42;")
    await post(client, {**CRIT, "host": "late-01"})
    await browser.until("the new incident", lambda: "late-01" in
                        browser.driver.find_element("css selector", ".board").text)  # fmt: skip
    assert await browser.script("return window.alertdMarker;") == 42


async def test_hostile_monitored_text_never_runs(
    browser: Browser, make_client: MakeClient
) -> None:
    """`<script>`, `<img onerror>` and a `javascript:` URL as output, long output, labels and
    host names are shown as text; none runs, on the board, the incident page, or after the
    board's refresh has swapped the fresh part in."""
    client = await make_client('[ui]\nrefresh = "1s"\n')
    for n, payload in enumerate(PAYLOADS):
        await post(client, {"host": f"h{n}{payload}", "service": payload, "state": "CRITICAL",
                            "output": payload, "long_output": payload, "perfdata": payload,
                            "labels": {"hostgroups": payload, payload: payload}})  # fmt: skip
    await browser.get(url(client, "/ui/?group=hostgroup"))
    title = await browser.run(lambda: browser.driver.title)
    await browser.until("a refresh", lambda: "updated" in
                        browser.driver.find_element("css selector", "#refresh-state").text)
    for incident in list(client.app[ENGINE].incidents()):
        await browser.get(url(client, f"/ui/incidents/{incident.id}"))
        assert incident.last_output in await browser.text("#output")  # shown, as text
        assert not await browser.alert_open()
        assert await browser.run(lambda: browser.driver.title) != "pwned"
    await browser.get(url(client, "/ui/?group=hostgroup"))
    body = await browser.text("body")
    assert all(p in body for p in PAYLOADS)
    assert await browser.all("img") == [] and await browser.all("a[href^='javascript']") == []
    assert not await browser.alert_open()
    assert await browser.run(lambda: browser.driver.title) == title != "pwned"

