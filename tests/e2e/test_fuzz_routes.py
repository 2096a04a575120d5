"""Every route of a real `alertd run`, fuzzed: all methods, malformed and mistyped JSON, huge
and deeply nested bodies, odd query strings, wrong and malformed credentials. The routes come
from the app's own route table (`alertd.app.build_app`), so a new route is fuzzed without
anyone adding it here. Nothing may answer 5xx, the daemon stays up, and no secret shows in an
answer or the log, which stays JSON."""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from alertd.app import build_app
from alertd.config import load_config
from tests.support import KEY
from tests.support.daemon import live_helpdesk
from tests.support.proc import free_port, log_file, start, stop, wait_ready

helpdesk = live_helpdesk

TOKEN = "fuzz-Secret-API-7f3a9c"
INGEST_ONLY = "fuzz-Secret-INGEST-41d2"
NRDP_TOKEN = "fuzz-Secret-NRDP-b81e"
WEBHOOK = "fuzz-Secret-HOOK-5c07"
SECRETS = (TOKEN, INGEST_ONLY, NRDP_TOKEN, WEBHOOK, KEY)
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD")
# What a path's placeholders are replaced with: plain, absent, negative, too big, not a number,
# encoded NUL, a traversal, very long.
PLACEHOLDER_VALUES = ("1", "0", "-1", "9" * 30, "abc", "%00", "..%2F..%2Fetc", "x" * 5000)
# Field names the API reads anywhere, each set to every wrong value below in turn.
FIELDS = (
    "host", "service", "state", "output", "long_output", "perfdata", "timestamp", "interval",
    "reporting", "state_type", "attempt", "max_attempts", "labels", "author", "comment",
    "sticky", "reason", "matchers", "starts_at", "ends_at", "duration", "expires_at", "every",
    "grace", "ticket_id", "alerts", "status", "annotations", "version", "groupKey", "receiver",
    "commonLabels", "token", "cmd", "xml", "json", "NAGIOS_HOSTNAME", "NAGIOS_SERVICEDESC",
    "NAGIOS_NOTIFICATIONTYPE", "priority", "id", "ids",
)  # fmt: skip
WRONG: tuple[Any, ...] = (
    1, -1, 1e308, 2**70, [], {}, None, True, "", "\x00\x1b[31m", "\u202e", "x" * 200_000,
    [[[[[]]]]], {"a": {"b": {"c": None}}},
)  # fmt: skip
RAW_BODIES: tuple[tuple[str, bytes], ...] = (
    ("application/json", b"{"),
    ("application/json", b'{"host": "a",}'),
    ("application/json", b"[" * 100_000 + b"]" * 100_000),
    ("application/json", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
    ("application/json", b"\xff\xfe\x00garbage"),
    ("application/json", b'"\\ud800"'),
    ("application/json", b"NaN"),
    ("application/json", b"1e999999"),
    ("application/json", b'{"host": "a", "host": "b"}'),
    ("application/json", b"[]"),
    ("application/json", b"null"),
    ("application/json", b""),
    ("application/x-www-form-urlencoded", b"%%%&&&==\x00"),
    ("application/x-www-form-urlencoded", b"token=x&cmd=submitcheck&XMLDATA=<a><b"),
    ("multipart/form-data; boundary=zz", b"--zz\r\nbroken"),
    ("text/plain", b"\x00\x01\x02"),
    ("application/xml", b"<?xml version='1.0'?><!DOCTYPE a [<!ENTITY b SYSTEM 'file:///etc/passwd'>]><a>&b;</a>"),
)  # fmt: skip
QUERIES = (
    "",
    "?limit=-1&before=abc&status=nope&priority=%00&all=2&state=zzz",
    "?limit=99999999999999999999999&before=-5&events_limit=0&events_before=x",
    "?" + "a=1&" * 2000,
    "?token=" + "y" * 10_000 + "&cmd=submitcheck",
    "?q=%ff%fe&host=%00&page=1e9",
)


def config_text(tmp_path: Path, port: int, helpdesk_url: str) -> str:
    (tmp_path / "helpdesk.key").write_text(KEY)
    (tmp_path / "webhook.secret").write_text(WEBHOOK)
    return (
        f'[server]\nlisten = "127.0.0.1:{port}"\n[store]\npath = "{tmp_path / "a.db"}"\n'
        f'[auth]\ntokens = ["{TOKEN}", "{INGEST_ONLY}:ingest"]\n'
        f'[nrdp]\ntokens = ["{NRDP_TOKEN}"]\n'
        f'[helpdesk]\nurl = "{helpdesk_url}"\nrequester_email = "noc@example.com"\n'
        f'api_key_file = "{tmp_path / "helpdesk.key"}"\n'
        f'webhook_secret_file = "{tmp_path / "webhook.secret"}"\npoll_interval = "0s"\n'
    )


def routes(config_path: Path) -> list[tuple[str, str]]:
    """(method, path pattern) of every route the daemon serves, from its own route table."""
    app: web.Application = build_app(load_config(config_path, {}))
    found = {(route.method, route.resource.canonical) for route in app.router.routes()}
    assert len(found) > 30  # the table was read, not an empty app
    return sorted(found)


def paths(pattern: str) -> Iterator[str]:
    """The pattern with its placeholders filled with each test value; a static directory gets
    a file name and a traversal."""
    if "{" not in pattern:
        yield pattern
        if pattern.startswith("/ui/static"):
            yield from (f"{pattern}/console.css", f"{pattern}/../../../etc/passwd",
                        f"{pattern}/%2e%2e/%2e%2e/etc/passwd")  # fmt: skip
        return
    for value in PLACEHOLDER_VALUES:
        yield re.sub(r"\{[^}]+\}", value, pattern)


def bodies() -> Iterator[tuple[str, bytes]]:
    """Mistyped JSON (every known field set to one wrong value at a time), then raw oddities."""
    for value in WRONG:
        one = {name: value for name in FIELDS}
        yield "application/json", json.dumps(one).encode()
        yield "application/json", json.dumps([one, one]).encode()
    yield from RAW_BODIES


FORM_VALUES = ("", "\x00\x1b", "x" * 200_000, "-1", "9" * 30, "\u202e", "//evil.example/",
               "/ui//evil", "javascript:alert(1)", "ack", "unack")  # fmt: skip


def forms(csrf: str) -> Iterator[tuple[str, bytes]]:
    """Console forms: the session's CSRF token (or a wrong one) and every field set to one odd
    value at a time."""
    kind = "application/x-www-form-urlencoded"
    for value in FORM_VALUES:
        names = ("author", "comment", "reason", "do", "back", "host", "service", "starts_at",
                 "ends_at", "duration", "labels", "next")  # fmt: skip
        fields = dict.fromkeys(names, value)
        yield kind, urllib.parse.urlencode({"csrf": csrf, **fields}).encode()
    yield kind, urllib.parse.urlencode({"csrf": csrf + "x", "do": "ack"}).encode()
    yield kind, b"csrf=%ff%fe&do=%00"


async def console_session(http: aiohttp.ClientSession, base: str) -> tuple[dict[str, str], str]:
    """Signed in to the console: the headers a browser sends with its cookie, and the CSRF
    token its pages carry."""
    origin = {"Origin": base}
    async with http.post(
        "/ui/login", data={"token": TOKEN}, headers=origin, allow_redirects=False
    ) as answer:
        assert answer.status == 303, await answer.text()
        cookie = answer.cookies["alertd_console"].value
    headers = {**origin, "Cookie": f"alertd_console={cookie}"}
    async with http.get("/ui/silences/new", headers=headers) as answer:
        page = await answer.text()
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page[:500]
    return headers, found[1]


def credentials() -> Iterator[dict[str, str]]:
    yield {"Authorization": f"Bearer {TOKEN}", "X-Alertd-Webhook-Secret": WEBHOOK}
    yield {"Authorization": f"Bearer {INGEST_ONLY}"}
    yield {}
    yield {"Authorization": "Bearer wrong-token"}
    yield {"Authorization": f"Basic {TOKEN}"}
    yield {"Authorization": f"Bearer {TOKEN} {TOKEN}"}
    yield {"Authorization": "Bearer " + "z" * 20_000}
    yield {"Authorization": f"bearer {NRDP_TOKEN}", "X-Alertd-Webhook-Secret": TOKEN}


def raw_requests(path: str) -> Iterator[bytes]:
    """Requests no client library sends: control characters and bad bytes in the headers."""
    for header in (
        f"Authorization: Bearer {TOKEN}\x01\x7f",
        f"Authorization: Bearer {TOKEN}\r",
        f"Authorization: Bearer \x00{TOKEN}",
        f"X-Alertd-Webhook-Secret: {WEBHOOK}\x1b[2J",
        f"Authorization: Bearer {TOKEN}\xff\xfe",
        f"Cookie: alertd_session={TOKEN}\x08",
        f"Content-Length: -1\r\nAuthorization: Bearer {TOKEN}",
        f"Transfer-Encoding: chunked\r\nContent-Length: 5\r\nAuthorization: Bearer {TOKEN}",
    ):
        yield (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{header}\r\n\r\n"
        ).encode("latin-1")


def send_raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


class Seen:
    """Every answer: what failed (5xx) and what leaked."""

    def __init__(self) -> None:
        self.count = 0
        self.server_errors: list[str] = []
        self.leaks: list[str] = []

    def record(self, what: str, status: int, text: str) -> None:
        self.count += 1
        if status >= 500 or status == 0:
            self.server_errors.append(f"{status} {what}: {text[:200]}")
        leaked = [s for s in SECRETS if s in text]
        if leaked:
            self.leaks.append(f"{what}: {leaked}")


async def fuzz(base: str, table: list[tuple[str, str]], seen: Seen) -> None:
    limit = asyncio.Semaphore(8)
    timeout = aiohttp.ClientTimeout(total=60)
    # A connection per request: a body the server refused unread must not become the next
    # request on a kept-alive connection (that would be the client's doing, not alertd's).
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(base, timeout=timeout, connector=connector) as http:
        console, csrf = await console_session(http, base)

        async def one(method: str, path: str, headers: dict[str, str], body: bytes | None) -> None:
            what = f"{method} {path[:80]} {sorted(headers)} {(body or b'')[:40]!r}"
            async with limit:
                try:
                    async with http.request(
                        method,
                        path,
                        headers=headers,
                        data=None if body is None else io.BytesIO(body),
                        allow_redirects=False,
                    ) as answer:
                        text = await answer.text(errors="replace")
                        seen.record(what, answer.status, f"{answer.headers!r} {text}")
                except aiohttp.ClientResponseError as exc:
                    # An answer the client would not take: a 400 for a request line or header
                    # too long, with its short JSON body even to a HEAD.
                    seen.record(what, exc.status, str(exc))
                except aiohttp.ClientError as exc:
                    seen.record(what, 0, str(exc))  # no answer at all: a failure too

        jobs = []
        patterns = {pattern for _, pattern in table}
        own = {(m, p) for m, p in table}
        full_auth = next(credentials())
        for pattern in sorted(patterns):
            for path in paths(pattern):
                for method in METHODS:
                    if (method, pattern) not in own:
                        jobs.append(one(method, path, full_auth, None))  # 404/405, not 5xx
                        continue
                    for headers in (*credentials(), console):
                        jobs.append(one(method, path, headers, None))
                    if method in ("GET", "HEAD", "DELETE"):
                        for query in QUERIES:
                            jobs.append(one(method, path + query, full_auth, None))
                    if method in ("POST", "PUT", "DELETE"):
                        for kind, body in bodies():
                            headers = {**full_auth, "Content-Type": kind}
                            jobs.append(one(method, path, headers, body))
                    if method == "POST" and pattern.startswith("/ui/"):
                        for kind, body in forms(csrf):
                            headers = {**console, "Content-Type": kind}
                            jobs.append(one(method, path, headers, body))
        await asyncio.gather(*jobs)


async def test_every_route_survives_fuzzing_without_5xx_or_leaks(
    helpdesk: tuple[object, str], tmp_path: Path
) -> None:
    """Thousands of hostile requests over every route: each answered, none with a 5xx or a
    secret; afterwards the daemon is up, stops cleanly, and its log is JSON without secrets
    or errors."""
    port = free_port()
    config = tmp_path / "alertd.toml"
    config.write_text(config_text(tmp_path, port, helpdesk[1]))
    table = routes(config)
    proc = start(config)
    base = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(wait_ready, base, proc)
        seen = Seen()
        await fuzz(base, table, seen)
        for pattern in sorted({p for _, p in table}):
            path = next(paths(pattern))
            for data in raw_requests(path):
                answer = (await asyncio.to_thread(send_raw, port, data)).decode("latin-1")
                status = int(answer.split(" ", 2)[1]) if answer.startswith("HTTP/") else 0
                seen.record(f"raw {path} {data[-60:]!r}", status, answer)
        assert seen.server_errors == [], seen.server_errors[:20]
        assert seen.leaks == [], seen.leaks[:20]
        assert seen.count > 2000, seen.count
        assert proc.poll() is None, "the daemon died under fuzzing"
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{base}/healthz") as answer,
        ):
            assert answer.status == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(stop, proc) == 0
    finally:
        proc.kill()
        proc.wait()
    text = log_file(config).read_text(errors="replace")
    assert [s for s in SECRETS if s in text] == []
    lines = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    errors = [line for line in lines if line.get("level") in ("error", "critical")]
    assert errors == [], errors[:5]
