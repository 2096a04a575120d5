"""The sandbox as an aiohttp app: its routes (`create_app`) and the `alertd sandbox` runner
(`serve`)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from alertd.sandbox.account import API, SandboxOptions
from alertd.sandbox.directory import add_directory_routes
from alertd.sandbox.endpoints import (
    _add_note,
    _archived_ticket,
    _conversations,
    _create_ticket,
    _delete_ticket,
    _filter_tickets,
    _list_tickets,
    _merge_tickets,
    _restore_ticket,
    _search_tickets,
    _ticket_fields,
    _update_ticket,
    _view_ticket,
)
from alertd.sandbox.front_door import _front_door
from alertd.sandbox.state import SANDBOX, Sandbox


def create_app(options: SandboxOptions | None = None) -> web.Application:
    """The sandbox as an aiohttp app; `app[SANDBOX]` is its state."""
    app = web.Application(middlewares=[_front_door])
    app[SANDBOX] = Sandbox(options)
    one = API + r"/tickets/{ticket_id:\d+}"
    app.router.add_post(f"{API}/tickets", _create_ticket)
    app.router.add_get(f"{API}/tickets", _list_tickets)
    app.router.add_get(one, _view_ticket)
    app.router.add_put(one, _update_ticket)
    app.router.add_delete(one, _delete_ticket)
    app.router.add_post(f"{one}/notes", _add_note)
    app.router.add_get(f"{one}/conversations", _conversations)
    app.router.add_put(f"{one}/restore", _restore_ticket)
    app.router.add_put(f"{API}/tickets/merge", _merge_tickets)
    app.router.add_get(API + r"/tickets/archived/{ticket_id:\d+}", _archived_ticket)
    # Each product answers only its own of these; the other's is a 404 (endpoints._only_on).
    app.router.add_get(f"{API}/search/tickets", _search_tickets)
    app.router.add_get(f"{API}/tickets/filter", _filter_tickets)
    app.router.add_get(f"{API}/ticket_form_fields", _ticket_fields)  # Freshservice's
    add_directory_routes(app)  # agents, groups, and Freshdesk's /ticket_fields
    return app


async def serve(host: str, port: int, options: SandboxOptions) -> None:
    """Serve the sandbox until cancelled; print where it listens (port 0 picks a free one)."""
    runner = web.AppRunner(create_app(options))
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        for address in runner.addresses:
            where = f"[{address[0]}]" if ":" in address[0] else address[0]
            product = "Freshservice" if options.service else "Freshdesk"
            print(
                f"sandbox: {product} API v2 at http://{where}:{address[1]}{API}/"
                f" (Basic auth, user {options.api_key!r}, any password)",
                flush=True,
            )
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
