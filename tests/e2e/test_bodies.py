"""A JSON body is read the same however it arrives: with the head or after it, with a length
or chunked, compressed or not; and one over `max_body_bytes` is refused the same way each time
(413, nothing stored), also when only its decompressed size is too large."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path

from tests.support import CRIT, Client, MakeClient, stored_incidents

LIMIT = "[server]\nmax_body_bytes = 4096\n"
TOO_LARGE = "request body too large: limit is 4096 bytes"


async def send(client: Client, first: bytes, parts: list[bytes]) -> tuple[int, dict[str, str]]:
    """`first` (the head, or the head and all of the body), then each of `parts` after a pause:
    the handler runs before the rest of the body is in."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(first)
        for part in parts:
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(part)
        answer = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    top, _, body = answer.partition(b"\r\n\r\n")
    return int(top.split()[1]), json.loads(body)


def head(length: int | None, extra: str = "") -> bytes:
    size = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    return (
        "POST /api/v1/results HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\n{size}\r\n{extra}\r\n"
    ).encode()


def chunked(body: bytes, size: int = 1000) -> list[bytes]:
    pieces = [body[n : n + size] for n in range(0, len(body), size)]
    return [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]


async def test_a_body_after_its_head_or_in_chunks_is_read_whole(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = await make_client(LIMIT)
    one = json.dumps({**CRIT, "host": "at-once"}).encode()
    assert await send(client, head(len(one)) + one, []) == (202, {"accepted": 1})
    one = json.dumps({**CRIT, "host": "later"}).encode()
    assert await send(client, head(len(one)), [one[:10], one[10:]]) == (202, {"accepted": 1})
    two = json.dumps([{**CRIT, "host": "chunked"}, {**CRIT, "host": "chunked-2"}]).encode()
    assert await send(client, head(None), chunked(two, 20)) == (202, {"accepted": 2})
    assert await send(client, head(None) + b"".join(chunked(two)), []) == (202, {"accepted": 2})
    hosts = {row[1] for row in stored_incidents(tmp_path)}
    assert hosts == {"at-once", "later", "chunked", "chunked-2"}


async def test_bodies_over_the_limit_are_refused_however_they_arrive(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = await make_client(LIMIT)
    big = json.dumps([{**CRIT, "output": "x" * 100}] * 50).encode()
    assert len(big) > 4096
    # Chunked (no length to check first): with the head, and in pieces after it.
    for first, parts in ((head(None) + b"".join(chunked(big)), []), (head(None), chunked(big))):
        status, answer = await send(client, first, parts)
        assert (status, answer["error"]) == (413, TOO_LARGE)
    # Small on the wire, too large once decompressed: with the head, and after it.
    packed = gzip.compress(big)
    assert len(packed) < 4096
    gzipped = head(len(packed), "Content-Encoding: gzip\r\n")
    for first, parts in ((gzipped + packed, []), (gzipped, [packed[:100], packed[100:]])):
        status, answer = await send(client, first, parts)
        assert (status, answer["error"]) == (413, TOO_LARGE)
    assert stored_incidents(tmp_path) == []
    # Still 202 for one at the limit's side, compressed.
    small = gzip.compress(json.dumps(CRIT).encode())
    response = await client.post(
        "/api/v1/results", data=small,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )  # fmt: skip
    assert response.status == 202, await response.text()


async def test_a_streamed_body_from_a_client_library_is_read(make_client: MakeClient) -> None:
    client = await make_client()

    async def pieces() -> AsyncIterator[bytes]:
        body = json.dumps(CRIT).encode()
        for n in range(0, len(body), 7):
            yield body[n : n + 7]
            await asyncio.sleep(0)

    response = await client.post(
        "/api/v1/results", data=pieces(), headers={"Content-Type": "application/json"}
    )
    assert response.status == 202, await response.text()
    assert await response.json() == {"accepted": 1}
