"""`alertd check-config --online`: the configured helpdesk, asked with the configured key,
whether it will take what alertd sends. Read-only GETs; reports problems in the offline form
(file, dotted key, reason) and facts (the key's agent, the rate limit) as lines for the
operator. Facts about the endpoints: docs/protocols.md 1.12.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from alertd.config import Config, HelpdeskConfig
from alertd.errors import ConfigProblem

# What alertd sends on every create, by the API's field names (connectors.freshdesk).
_ALWAYS_SENT = frozenset({"requester", "subject", "description", "status", "priority", "source",
                          "ticket_type", "tags"})  # fmt: skip
_FIELDS_PATH = {"freshdesk": "/ticket_fields", "freshservice": "/ticket_form_fields"}


@dataclass(slots=True)
class Report:
    problems: list[ConfigProblem] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)


class _Unusable(Exception):
    """The helpdesk cannot be asked at all (unreachable): nothing more to check."""


class _Stop(Exception):
    """A problem already reported leaves nothing more to check (the key was refused)."""


class _Api:
    def __init__(self, session: aiohttp.ClientSession, helpdesk: HelpdeskConfig) -> None:
        self._session = session
        token = base64.b64encode(f"{helpdesk.api_key}:X".encode()).decode()
        self._headers = {"Accept": "application/json", "Authorization": f"Basic {token}"}
        self._base = f"{helpdesk.url}/api/v2"
        self.last_headers: Mapping[str, str] = {}

    async def get(self, path: str) -> tuple[int, Any]:
        try:
            async with self._session.get(self._base + path, headers=self._headers) as answer:
                text = await answer.text()
                self.last_headers = answer.headers
                try:
                    body = json.loads(text) if text else None
                except ValueError:
                    body = None
                return answer.status, body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Unusable(f"cannot reach {self._base}{path}: {type(exc).__name__} {exc}") from exc


async def check_online(config: Config) -> Report:
    """Every problem the helpdesk reveals in `config` (which has a [helpdesk])."""
    helpdesk = config.helpdesk
    assert helpdesk is not None
    report = Report()
    file = str(config.source) if config.source is not None else "<defaults>"

    def problem(key: str, message: str) -> None:
        report.problems.append(ConfigProblem(file, key, message))

    timeout = aiohttp.ClientTimeout(total=helpdesk.timeout.total_seconds())
    async with aiohttp.ClientSession(timeout=timeout) as session:
        api = _Api(session, helpdesk)
        try:
            await _key(api, helpdesk, report, problem)
            await _fields(api, config, helpdesk, report, problem)
            await _references(api, config, helpdesk, problem)
        except _Unusable as exc:
            problem("helpdesk.url", str(exc))
        except _Stop:
            pass
    if helpdesk.kind == "freshservice":
        report.facts.append(
            "priority matrix: not readable through the API; see Admin -> Helpdesk settings -> "
            "Priority Matrix (README, 'check-config --online')"
        )
    return report


async def _key(api: _Api, helpdesk: HelpdeskConfig, report: Report, problem: Any) -> None:
    status, body = await api.get("/agents/me")
    key = "helpdesk.api_key_file" if helpdesk.api_key_source.startswith("file") else (
        "helpdesk.api_key_env")  # fmt: skip
    if status in (401, 403):
        problem(key, f"the helpdesk refused the API key ({status}) from {helpdesk.api_key_source}")
        raise _Stop
    if status != 200 or not isinstance(body, dict):
        problem("helpdesk.url", f"GET /api/v2/agents/me answered {status}: not a helpdesk API?")
        raise _Stop
    # Freshdesk nests the person in `contact`; Freshservice's agent is flat.
    nested = body.get("contact")
    contact: dict[str, Any] = nested if isinstance(nested, dict) else body
    name, email = contact.get("name"), contact.get("email")
    report.facts.append(f"API key OK: agent {name} <{email}> (id {body.get('id')})")
    total = _header_int(api.last_headers, "X-RateLimit-Total")
    remaining = _header_int(api.last_headers, "X-RateLimit-Remaining")
    if total is None:
        report.facts.append("rate limit: the helpdesk sent no X-RateLimit-Total header")
        return
    report.facts.append(
        f"rate limit: {total} calls a minute for the whole account, {remaining} left now; "
        f"alertd's share (rate_limit_per_minute): {helpdesk.rate_limit_per_minute}"
    )
    if helpdesk.rate_limit_per_minute > total:
        problem("helpdesk.rate_limit_per_minute",
                f"{helpdesk.rate_limit_per_minute} is more than the account's whole limit of "
                f"{total} a minute")  # fmt: skip


async def _fields(
    api: _Api, config: Config, helpdesk: HelpdeskConfig, report: Report, problem: Any
) -> None:
    path = _FIELDS_PATH[helpdesk.kind]
    status, body = await api.get(path)
    if isinstance(body, dict):  # Freshservice wraps the list: {"ticket_fields": [...]}
        body = body.get("ticket_fields")
    if status != 200 or not isinstance(body, list):
        problem("helpdesk", f"cannot read the ticket fields (GET /api/v2{path} answered {status})")
        return
    fields = {f["name"]: f for f in body if isinstance(f, dict) and isinstance(f.get("name"), str)}
    types = _choices(fields.get("ticket_type"))
    if types:
        for key, value in _configured(helpdesk, "type"):
            if value not in types:
                problem(key, f"ticket type {value!r} is not one of the account's: "
                             f"{', '.join(map(str, types))}")  # fmt: skip
    sources = _choices(fields.get("source"))
    if sources and helpdesk.source not in sources:
        problem("helpdesk.source", f"source {helpdesk.source} is not one of the account's: "
                                   f"{', '.join(map(str, sources))}")  # fmt: skip
    for key, name, value in _custom_values(helpdesk):
        field_ = fields.get(name)
        if field_ is None or field_.get("default") is True:
            problem(key, f"no custom field named {name!r} (names are exact; the account has: "
                         f"{', '.join(n for n, f in fields.items() if not f.get('default'))})")
            continue
        allowed = _choices(field_)
        if allowed and value not in allowed:
            problem(key, f"{value!r} is not a choice of {name!r}: "
                         f"{', '.join(map(str, allowed))}")  # fmt: skip
    sent = _ALWAYS_SENT | {name for _, name, _ in _custom_values(helpdesk)}
    if helpdesk.group_id is not None:
        sent |= {"group"}
    for name, field_ in fields.items():
        label = f"{name!r} ({field_.get('label')})"
        if field_.get("required_for_agents") and name not in sent:
            problem(_key_for(name), f"field {label} is required on create and alertd does not "
                                    "send it: creates will fail (set it in custom_fields)")
        if field_.get("required_for_closure") and name not in sent:
            problem(_key_for(name), f"field {label} is required to resolve or close and alertd "
                                    "does not send it: resolves will fail with 400")
    report.facts.append(f"ticket fields: {len(fields)} read from GET /api/v2{path}")


async def _references(
    api: _Api, config: Config, helpdesk: HelpdeskConfig, problem: Any
) -> None:
    """Every group, agent (and Freshservice workspace) id the config names exists."""
    seen: dict[str, int] = {}
    for key, path in _ids(config, helpdesk):
        if path not in seen:
            seen[path] = (await api.get(path))[0]
        status = seen[path]
        if status == 404:
            problem(key, f"{path.strip('/').replace('/', ' ')} does not exist in the helpdesk")
        elif status != 200:
            problem(key, f"cannot check {path.strip('/')}: the helpdesk answered {status}")


def _ids(config: Config, helpdesk: HelpdeskConfig) -> Iterator[tuple[str, str]]:
    if helpdesk.group_id is not None:
        yield "helpdesk.group_id", f"/groups/{helpdesk.group_id}"
    for n, rule in enumerate(helpdesk.rules, start=1):
        for name, kind in (("group_id", "groups"), ("responder_id", "agents"),
                           ("workspace_id", "workspaces")):  # fmt: skip
            value = rule.fields.get(name)
            if value is not None:
                yield f"helpdesk.rules[{n}].{name}", f"/{kind}/{value}"
    for priority, levels in config.escalation.levels.items():
        for n, level in enumerate(levels, start=1):
            where = f"escalation.{priority.value}[{n}]"
            if level.group_id is not None:
                yield f"{where}.group_id", f"/groups/{level.group_id}"
            if level.responder_id is not None:
                yield f"{where}.responder_id", f"/agents/{level.responder_id}"


def _configured(helpdesk: HelpdeskConfig, name: str) -> Iterator[tuple[str, Any]]:
    yield f"helpdesk.{name}", getattr(helpdesk, name)
    for n, rule in enumerate(helpdesk.rules, start=1):
        if name in rule.fields:
            yield f"helpdesk.rules[{n}].{name}", rule.fields[name]


def _custom_values(helpdesk: HelpdeskConfig) -> Iterator[tuple[str, str, Any]]:
    for name, value in helpdesk.custom_fields.items():
        yield f"helpdesk.custom_fields.{name}", name, value
    for n, rule in enumerate(helpdesk.rules, start=1):
        for name, value in rule.custom_fields.items():
            yield f"helpdesk.rules[{n}].custom_fields.{name}", name, value


def _choices(field_: Mapping[str, Any] | None) -> list[Any]:
    """A field's allowed values, whatever the shape: a list of names (ticket types, dropdowns),
    name -> id (source, priority), or Freshservice's [{"id", "value"}]. Empty: any value."""
    if field_ is None:
        return []
    choices = field_.get("choices")
    if isinstance(choices, dict):
        values = list(choices.values())
        return values if all(isinstance(v, int) for v in values) else list(choices)
    if isinstance(choices, list):
        return [c.get("value") if isinstance(c, dict) else c for c in choices]
    return []


def _key_for(name: str) -> str:
    return {"group": "helpdesk.group_id", "ticket_type": "helpdesk.type"}.get(
        name, "helpdesk.custom_fields"
    )


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    return int(value) if value is not None and value.isdigit() else None
