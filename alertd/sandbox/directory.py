"""The account's directory as the API shows it, read-only: the key's own agent
(`GET /agents/me`), agents and groups by id, and the ticket fields with their choices and
required flags (`GET /ticket_fields`), all derived from `SandboxOptions`. What
`alertd check-config --online` reads (docs/protocols.md 1.12)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from alertd.sandbox.account import AGENT_ID, API, PRIORITIES, SOURCES, STATUSES, SandboxOptions
from alertd.sandbox.endpoints import _only_on
from alertd.sandbox.errors import _not_found
from alertd.sandbox.state import SANDBOX

AGENT_EMAIL = "agent@sandbox.example"
_SOURCE_NAMES = {1: "Email", 2: "Portal", 3: "Phone", 7: "Chat", 9: "Feedback Widget",
                 10: "Outbound Email"}  # fmt: skip
_STATUS_NAMES = {2: "Open", 3: "Pending", 4: "Resolved", 5: "Closed"}
_PRIORITY_NAMES = {1: "Low", 2: "Medium", 3: "High", 4: "Urgent"}


def add_directory_routes(app: web.Application) -> None:
    app.router.add_get(f"{API}/agents/me", _me)
    app.router.add_get(API + r"/agents/{agent_id:\d+}", _agent)
    app.router.add_get(API + r"/groups/{group_id:\d+}", _group)
    app.router.add_get(f"{API}/ticket_fields", _ticket_fields)


def _agent_body(agent_id: int) -> dict[str, Any]:
    name = "Sandbox Agent" if agent_id == AGENT_ID else f"Agent {agent_id}"
    email = AGENT_EMAIL if agent_id == AGENT_ID else f"agent{agent_id}@sandbox.example"
    return {
        "id": agent_id,
        "available": True,
        "occasional": False,
        "ticket_scope": 1,
        "contact": {"name": name, "email": email, "active": True},
    }


async def _me(request: web.Request) -> web.Response:
    return web.json_response(_agent_body(AGENT_ID))


async def _agent(request: web.Request) -> web.Response:
    agent_id = int(request.match_info["agent_id"])
    if agent_id != AGENT_ID and agent_id not in request.app[SANDBOX].options.agents:
        raise _not_found()
    return web.json_response(_agent_body(agent_id))


async def _group(request: web.Request) -> web.Response:
    group_id = int(request.match_info["group_id"])
    groups = request.app[SANDBOX].options.groups
    # As ticket validation does: an account without configured groups accepts any id.
    if groups and group_id not in groups:
        raise _not_found()
    return web.json_response({"id": group_id, "name": f"Group {group_id}", "agent_ids": []})


async def _ticket_fields(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    _only_on(sandbox, "freshdesk")  # Freshservice's are at /ticket_form_fields
    return web.json_response(ticket_fields(sandbox.options))


def ticket_fields(options: SandboxOptions) -> list[dict[str, Any]]:
    """The fields as Freshdesk lists them: defaults with their choices (shapes differ by field:
    a list of names, name -> id, or id -> [agent label, customer label]), then custom fields."""
    defaults: list[tuple[str, str, Any]] = [
        ("requester", "default_requester", None),
        ("subject", "default_subject", None),
        ("ticket_type", "default_ticket_type", list(options.ticket_types)),
        ("source", "default_source", {_SOURCE_NAMES[s]: s for s in SOURCES}),
        ("status", "default_status",
         {str(s): [_STATUS_NAMES.get(s, f"Status {s}")] * 2
          for s in (*STATUSES, *options.custom_statuses)}),
        ("priority", "default_priority", {_PRIORITY_NAMES[p]: p for p in PRIORITIES}),
        ("group", "default_group", {f"Group {g}": g for g in options.groups}),
        ("agent", "default_agent", {"Sandbox Agent": AGENT_ID}),
        ("description", "default_description", None),
    ]  # fmt: skip
    fields = [_field(n + 1, name, kind, True, choices, options)
              for n, (name, kind, choices) in enumerate(defaults)]  # fmt: skip
    for n, name in enumerate(options.custom_fields, start=len(fields) + 1):
        choices = options.custom_field_choices.get(name)
        kind = "custom_text" if choices is None else "custom_dropdown"
        fields.append(_field(n, name, kind, False, None if choices is None else list(choices),
                             options))  # fmt: skip
    return fields


# The API's field names for what alertd's bodies call them (`required_fields` uses the latter).
_BODY_NAMES = {"requester": "email", "ticket_type": "type", "group": "group_id",
               "agent": "responder_id"}  # fmt: skip


def _field(
    position: int, name: str, kind: str, default: bool, choices: Any, options: SandboxOptions
) -> dict[str, Any]:
    body_name = _BODY_NAMES.get(name, name)
    field: dict[str, Any] = {
        "id": 1000 + position,
        "name": name,
        "label": name.removeprefix("cf_").replace("_", " ").capitalize(),
        "description": None,
        "position": position,
        "type": kind,
        "default": default,
        "required_for_agents": name == "requester" or body_name in options.required_fields,
        # `required_for_closure` names the field as a ticket body carries it.
        "required_for_closure": (name if default else f"custom_fields.{name}")
        in options.required_for_closure,
        "required_for_customers": False,
        "customers_can_edit": False,
        "displayed_to_customers": False,
        "created_at": "2020-01-01T00:00:00Z",
        "updated_at": "2020-01-01T00:00:00Z",
    }
    if choices is not None:
        field["choices"] = choices
    return field
