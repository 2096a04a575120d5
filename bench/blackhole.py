"""The webhook receiver Alertmanager notifies in bench/compare.py: answers 200 to anything.

A separate process so that its work is neither alertd's nor Alertmanager's in the CPU figures.
"""

from __future__ import annotations

import sys

from aiohttp import web


async def swallow(request: web.Request) -> web.Response:
    await request.read()
    return web.Response()


def main() -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", swallow)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
