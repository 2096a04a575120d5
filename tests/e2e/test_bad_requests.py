"""Requests aiohttp's own parser refuses, sent raw to a real `alertd run` over a socket: a short
JSON 400 that echoes nothing, and a log that stays JSON, secret-free and throttled."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

from tests.support.proc import free_port, log_file, start, stop, wait_ready

API_TOKEN = "s3cret-api-TOKEN-7f3a"
NRDP_TOKEN = "s3cret-nrdp-TOKEN-91bc"

MALFORMED = [
    # A control character in Authorization: the parser's message quotes the header value.
    f"POST /api/v1/results HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}\x01z\r\n"
    "Content-Length: 0\r\n\r\n",
    # A raw space in an NRDP GET URL (a shell script that forgot to encode its output).
    f"GET /nrdp/?token={NRDP_TOKEN}&cmd=submitcheck&xml=<a b> HTTP/1.1\r\nHost: x\r\n\r\n",
    # A header without a colon, after a good token header.
    f"GET /api/v1/incidents HTTP/1.1\r\nAuthorization: Bearer {API_TOKEN}\r\n"
    f"X-Broken {API_TOKEN}\r\n\r\n",
    # Not HTTP at all.
    f"HELLO {API_TOKEN}\r\n\r\n",
]


def send_raw(port: int, data: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data.encode("latin-1"))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_malformed_requests_get_a_json_400_and_leak_nothing(tmp_path: Path) -> None:
    """Each malformed request gets 400 with {"error": ...} and none of its bytes; 300 of them
    leave a few JSON log lines (throttled, with a count), none holding a token."""
    port = free_port()
    config = tmp_path / "alertd.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n[store]\npath = "a.db"\n'
        f'[auth]\ntokens = ["{API_TOKEN}"]\n[nrdp]\ntokens = ["{NRDP_TOKEN}"]\n'
    )
    proc = start(config)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        for data in MALFORMED:
            answer = send_raw(port, data)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.split(b" ")[1] == b"400", answer[:200]
            assert b"application/json" in head
            assert json.loads(body) == {"error": "malformed HTTP request"}
            assert b"s3cret" not in answer
        for n in range(300):  # a flood: the log must not grow with it
            send_raw(port, MALFORMED[n % len(MALFORMED)])
        proc.send_signal(signal.SIGTERM)
        assert stop(proc) == 0
    finally:
        proc.kill()
    text = log_file(config).read_text()
    assert "s3cret" not in text
    lines = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    bad = [line for line in lines if line["event"] == "bad_request"]
    assert 1 <= len(bad) <= 10, len(bad)
    assert all(line["remote"] == "127.0.0.1" and line["status"] == 400 for line in bad)
