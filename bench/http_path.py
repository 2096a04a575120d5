"""The HTTP layer's cost per one-result request, without the network and without the engine.

One POST /api/v1/results (the request `bench/compare.py`'s "single" shape sends, token and all)
goes through everything aiohttp and alertd do for it on the event loop: the HTTP parser, the
request and its routing, the middleware (request id, bearer token and scope, error map), the
handler (body, JSON, parser, clock, metrics) and the response writer, into an in-memory
transport. `Engine.accept` is replaced by a no-op: the inbox and the writer are measured by
`bench/compare.py` and `bench/ingest.py`; this isolates what happens around them.

Prints the CPU time per request (process time, the lowest of `--rounds` rounds of `--requests`,
the cyclic GC off while timed). On a shared machine that still varies by a third; for figures
that do not, count instructions with valgrind, as the difference between two request counts
(what start-up costs cancels out):

    .venv/bin/python bench/http_path.py
    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python bench/http_path.py \\
        --warm 200 --requests 0 --rounds 0        # then --warm 1200: (Ir2 - Ir1) / 1000
    .venv/bin/python bench/http_path.py --bare    # aiohttp alone: one route, a prebuilt 202
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

import alertd.engine
from alertd.app import build_app
from alertd.config import load_config
from alertd.http.server import GuardedRunner

BODY = (
    b'{"host":"p-host-00001","service":"svc-2","state":"OK","output":"OK - bench",'
    b'"perfdata":"time=0.012s;1;2;0"}'
)
REQUEST = (
    b"POST /api/v1/results HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"
    b"Authorization: Bearer bench-token\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\n"
    b"User-Agent: Python/3.11 aiohttp/3.14\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


class Transport(asyncio.Transport):
    """A connection that keeps what is written and wakes the request's waiter."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def writelines(self, data: Any) -> None:
        self.write(b"".join(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass


async def _accepted(self: alertd.engine.Engine, results: Sequence[object], **_: object) -> None:
    return None


def bare_app() -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b'{"accepted": 1}', status=202, content_type="application/json")

    app = web.Application()
    app.router.add_post("/api/v1/results", handler)
    return app


async def run(args: argparse.Namespace) -> None:
    alertd.engine.Engine.accept = _accepted  # type: ignore[method-assign,assignment]
    with tempfile.TemporaryDirectory(prefix="alertd-http-path-") as tmp:
        config_file = Path(tmp) / "alertd.toml"
        config_file.write_text(
            f'[server]\nlisten = "127.0.0.1:8080"\n[store]\npath = "{tmp}/alertd.db"\n'
            '[auth]\ntokens = ["bench-token"]\n'
        )
        app = bare_app() if args.bare else build_app(load_config(config_file, env={}))
        runner = GuardedRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            assert runner.server is not None
            connection = runner.server()
            transport = Transport()
            connection.connection_made(transport)
            loop = asyncio.get_running_loop()

            async def one() -> None:
                transport.waiter = loop.create_future()
                connection.data_received(REQUEST)
                await transport.waiter

            for _ in range(args.warm):
                await one()
            if args.warm:
                assert transport.written[-1].startswith(b"HTTP/1.1 202 "), transport.written[-1]
            times = []
            for _ in range(args.rounds):
                transport.written.clear()
                gc.collect()
                gc.disable()
                began = time.process_time()
                for _ in range(args.requests):
                    await one()
                times.append((time.process_time() - began) / args.requests * 1e6)
                gc.enable()
            if times:
                times.sort()
                who, median = "aiohttp alone" if args.bare else "alertd", times[len(times) // 2]
                print(f"{who}: {times[0]:.1f} us of CPU per request "
                      f"(lowest of {len(times)} rounds; median {median:.1f})")  # fmt: skip
        finally:
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="requests per timed round")
    parser.add_argument("--rounds", type=int, default=25, help="timed rounds")
    parser.add_argument("--warm", type=int, default=2000, help="requests before timing")
    parser.add_argument("--bare", action="store_true", help="aiohttp alone, for the floor")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it runs
        asyncio.run(run(args))
    else:
        uvloop.run(run(args))


if __name__ == "__main__":
    main()
