"""[helpdesk]: where tickets go and how they look, the API key (from a file or the environment,
never from the config file), and the subject and URL templates, checked at load time."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType

from alertd.config.paths import _beside
from alertd.config.reader import _bool, _duration, _int, _one_of, _strings, _Table

HELPDESK_KINDS = ("freshdesk", "freshservice")
# The helpdesk's per-minute limits per plan: the account total, then each endpoint's own
# (ticket create, update, list; Freshservice also view). docs/protocols.md section 1.
PLAN_LIMITS: Mapping[str, Mapping[str, int]] = MappingProxyType({
    "growth": {"total": 200, "create": 80, "update": 80, "list": 20},
    "pro": {"total": 400, "create": 160, "update": 160, "list": 100},
    "enterprise": {"total": 700, "create": 280, "update": 280, "list": 200},
    "freshservice-starter": {"total": 100, "create": 50, "update": 50, "list": 40, "view": 50},
})  # fmt: skip
CALL_CLASSES = ("create", "update", "list")  # those with a rate_limit_<class>_per_minute key
DEFAULT_SUBJECT = "[{state}] {host}{slash_service}: {output}"


@dataclass(frozen=True, slots=True, repr=False)
class HelpdeskConfig:
    """Where tickets go and how they look. `api_key` is a secret (from env or file only)."""

    url: str
    api_key: str
    api_key_source: str
    requester_email: str
    kind: str = "freshdesk"
    source: int = 2  # Portal; "Monitoring" is not among Freshdesk's sources
    type: str = "Incident"
    group_id: int | None = None
    tags: tuple[str, ...] = ("alertd",)
    custom_fields: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    resolve_status: int = 4
    subject_template: str = DEFAULT_SUBJECT
    monitoring_url: str = ""
    rate_limit_per_minute: int = 100
    note_interval: timedelta = timedelta(minutes=30)
    release_grace: timedelta = timedelta(minutes=2)
    poll_interval: timedelta = timedelta(minutes=1)
    concurrency: int = 4
    timeout: timedelta = timedelta(seconds=30)
    keep_agent_priority: bool = True
    on_missing_ticket: str = "recreate"
    instance: str = "main"
    public_notes: bool = False
    # How long past a request's deadline the helpdesk may still act on it: an operation whose
    # outcome is unknown is looked for (and perhaps sent again) only after that.
    outcome_wait: timedelta = timedelta(seconds=30)
    plan: str = "growth"
    # Per-minute limit of each call class (create, update, list; view on Freshservice): the
    # plan's, or the rate_limit_<class>_per_minute keys; each is paced besides the total.
    class_limits: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType(_class_limits(PLAN_LIMITS["growth"], {}))
    )

    def __repr__(self) -> str:
        # The API key is a secret: a repr ends up in logs and tracebacks.
        return f"HelpdeskConfig(kind={self.kind!r}, url={self.url!r}, api_key=<hidden>)"


_HELPDESK_KEYS = (
    "kind", "url", "api_key_env", "api_key_file", "requester_email", "source", "type",
    "group_id", "tags", "custom_fields", "resolve_status", "subject_template", "monitoring_url",
    "rate_limit_per_minute", "note_interval", "release_grace", "poll_interval", "concurrency",
    "timeout",
    "keep_agent_priority",
    "on_missing_ticket", "instance", "public_notes", "outcome_wait", "plan",
    *(f"rate_limit_{c}_per_minute" for c in CALL_CLASSES),
)  # fmt: skip
_SOURCES = (1, 2, 3, 7, 9, 10)  # Freshdesk's ticket sources (docs/protocols.md 1.2)


def _helpdesk(t: _Table, base: Path | None, env: Mapping[str, str]) -> HelpdeskConfig:
    t.check_keys(_HELPDESK_KEYS)
    d = HelpdeskConfig(url="", api_key="", api_key_source="", requester_email="")
    url = t.get("url", str, "a string (https://<account>.freshdesk.com)") or ""
    if not re.fullmatch(r"https?://[^/\s]+/?", url):
        t.add("url", f"expected the account URL like https://acme.freshdesk.com, got {url!r}")
    email = t.get("requester_email", str, "a string (an email address)") or ""
    if "@" not in email:
        t.add("requester_email", f"expected the email address tickets are raised as, got {email!r}")
    api_key, key_source = _api_key(t, base, env)
    source = _int(t, "source", d.source, 1)
    if source not in _SOURCES:
        t.add("source", f"expected one of {', '.join(map(str, _SOURCES))}, got {source}")
    resolve_status = _int(t, "resolve_status", d.resolve_status, 4)
    if resolve_status not in (4, 5):
        t.add("resolve_status", f"expected 4 (Resolved) or 5 (Closed), got {resolve_status}")
    tags = _strings(t, "tags", d.tags)
    instance = t.get("instance", str, "a string") or d.instance
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,20}", instance):
        t.add("instance", f"expected 1-20 letters, digits, - or _, got {instance!r}")
    subject = t.get("subject_template", str, "a string") or d.subject_template
    monitoring_url = t.get("monitoring_url", str, "a string (a URL template)") or ""
    for name, template in (("subject_template", subject), ("monitoring_url", monitoring_url)):
        problem = _template_problem(template)
        if problem:
            t.add(name, problem)
    group_id = t.get("group_id", int, "an integer (a group id)")
    plan = _one_of(t, "plan", tuple(PLAN_LIMITS), d.plan)
    overrides = {
        c: _int(t, f"rate_limit_{c}_per_minute", 0, 1)
        for c in CALL_CLASSES
        if f"rate_limit_{c}_per_minute" in t.data
    }
    return HelpdeskConfig(
        url=url.rstrip("/"),
        api_key=api_key,
        api_key_source=key_source,
        requester_email=email,
        kind=_one_of(t, "kind", HELPDESK_KINDS, d.kind),
        source=source,
        type=t.get("type", str, "a string (a ticket type of the account)") or d.type,
        group_id=group_id,
        # Every ticket carries "alertd", so agents and alertd itself can find them.
        tags=tuple(dict.fromkeys(("alertd", *tags))),
        custom_fields=MappingProxyType(dict(t.get("custom_fields", dict, "a table") or {})),
        resolve_status=resolve_status,
        subject_template=subject,
        monitoring_url=monitoring_url,
        rate_limit_per_minute=_int(t, "rate_limit_per_minute", d.rate_limit_per_minute, 1),
        note_interval=_duration(t, "note_interval", d.note_interval),
        release_grace=_duration(t, "release_grace", d.release_grace),
        poll_interval=_duration(t, "poll_interval", d.poll_interval),
        concurrency=_int(t, "concurrency", d.concurrency, 1),
        timeout=_duration(t, "timeout", d.timeout),
        keep_agent_priority=_bool(t, "keep_agent_priority", d.keep_agent_priority),
        on_missing_ticket=_one_of(
            t, "on_missing_ticket", ("recreate", "dead_letter"), d.on_missing_ticket
        ),
        instance=instance,
        public_notes=_bool(t, "public_notes", d.public_notes),
        outcome_wait=_duration(t, "outcome_wait", d.outcome_wait),
        plan=plan,
        class_limits=MappingProxyType(_class_limits(PLAN_LIMITS[plan], overrides)),
    )


def _class_limits(plan: Mapping[str, int], overrides: Mapping[str, int]) -> dict[str, int]:
    """Each call class's limit: the key's if set, else the plan's (a class the plan does not
    limit counts against the total only)."""
    limits = {c: n for c, n in plan.items() if c != "total"}
    return {**limits, **overrides}


def _api_key(t: _Table, base: Path | None, env: Mapping[str, str]) -> tuple[str, str]:
    """The API key from `api_key_file` or the env var `api_key_env`; never from the file itself."""
    file = t.get("api_key_file", str, "a string (a file path)")
    if file:
        path = _beside(base, file)
        try:
            key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            t.add("api_key_file", f"cannot read {str(path)!r}: {type(exc).__name__}")
            return "", ""
        if not key:
            t.add("api_key_file", f"{str(path)!r} is empty")
        return key, f"file {path}"
    name = t.get("api_key_env", str, "a string (an environment variable name)")
    name = name or "ALERTD_HELPDESK_API_KEY"
    key = env.get(name, "").strip()
    if not key:
        t.add("api_key_env", f"environment variable {name} is not set (or set api_key_file)")
    return key, f"env {name}"


_TEMPLATE_FIELDS = frozenset(
    {"state", "host", "service", "slash_service", "output", "priority", "id", "status"}
)


def _template_problem(template: str) -> str | None:
    """Why a `str.format` template would fail at render time, checked at load time instead."""
    try:
        names = {field for _, field, _, _ in string.Formatter().parse(template) if field}
    except ValueError as exc:
        return f"not a valid template: {exc}"
    unknown = sorted(names - _TEMPLATE_FIELDS)
    if unknown:
        return f"unknown field {{{unknown[0]}}}; allowed: {', '.join(sorted(_TEMPLATE_FIELDS))}"
    return None
