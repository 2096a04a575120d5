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

from alertd.config.reader import (
    MAX_TAG_LENGTH,
    _bool,
    _duration,
    _int,
    _one_of,
    _strings,
    _Table,
)
from alertd.config.routing import _ticket_rules
from alertd.config.secrets import read_secret
from alertd.routing import TicketRule

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
# Both products refuse a tag over 32 characters and more than 30 tags on a ticket (docs/protocols.md
# 1.2). The incident's tag `alertd-<instance>-<id>` must fit for every id alertd can reach: ids up
# to 10 digits (ten billion incidents) leave 32 - len("alertd-") - len("-") - 10 = 14 for the name.

MAX_TAGS = 30
MAX_ID_DIGITS = 10
MAX_INSTANCE = MAX_TAG_LENGTH - len("alertd-") - len("-") - MAX_ID_DIGITS
MISSING_TICKET_POLICIES = ("recreate", "dead_letter", "restore")


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
    # A service incident's ticket waits this long, so that its host's problem, which Nagios
    # may report just after it, absorbs it first (the incident itself is visible at once).
    service_grace: timedelta = timedelta(seconds=30)
    poll_interval: timedelta = timedelta(minutes=1)
    concurrency: int = 4
    timeout: timedelta = timedelta(seconds=30)
    keep_agent_priority: bool = True
    on_missing_ticket: str = "recreate"
    instance: str = "main"
    public_notes: bool = False
    # A recurrence after an agent resolved the ticket by hand: "new_ticket" (naming the old
    # one) or "reopen" (the same ticket back to Open).
    on_agent_close: str = "new_ticket"
    # The shared secret the helpdesk's automation sends to POST /api/v1/helpdesk/events
    # ("" = the webhook is off). A secret: from env or file only, never shown.
    webhook_secret: str = ""
    webhook_secret_source: str = ""
    # Ticket policy rules (alertd.routing): ordered, first match wins.
    rules: tuple[TicketRule, ...] = ()
    # Freshservice: the workspace tickets are created in, listed and filtered from (None: the
    # account's primary workspace, which is what the API uses when none is named).
    workspace_id: int | None = None
    # Statuses that mean an agent took the ticket (acknowledge the incident): Pending, and any
    # custom status (id 6 and up) the account uses that way.
    taken_statuses: tuple[int, ...] = (3,)
    # Custom statuses (6 and up) that mean the agents are done, like Resolved (4) and Closed (5).
    done_statuses: tuple[int, ...] = ()
    # Freshservice, admin keys only: resolve and close even when fields required for closure are
    # empty (`bypass_mandatory`), instead of a dead letter naming the field.
    bypass_mandatory: bool = False
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
    "rate_limit_per_minute", "note_interval", "release_grace", "service_grace", "poll_interval",
    "concurrency", "timeout",
    "keep_agent_priority",
    "on_missing_ticket", "instance", "public_notes", "on_agent_close",
    "webhook_secret_file", "webhook_secret_env", "rules",
    "workspace_id", "taken_statuses", "done_statuses", "bypass_mandatory", "outcome_wait", "plan",
    *(f"rate_limit_{c}_per_minute" for c in CALL_CLASSES),
)  # fmt: skip
AGENT_CLOSE_POLICIES = ("new_ticket", "reopen")
# Each product's ticket sources: the same numbers, other meanings (docs/protocols.md 1.2, 1.10).
SOURCES = {
    "freshdesk": {1: "Email", 2: "Portal", 3: "Phone", 7: "Chat", 9: "Feedback widget",
                  10: "Outbound email"},
    "freshservice": {1: "Email", 2: "Portal", 3: "Phone", 4: "Chat", 5: "Feedback widget",
                     6: "Yammer", 7: "AWS Cloudwatch", 8: "PagerDuty", 9: "Walkup", 10: "Slack"},
}  # fmt: skip


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
    kind = _one_of(t, "kind", HELPDESK_KINDS, d.kind)
    source = _int(t, "source", d.source, 1)
    if source not in SOURCES[kind]:
        listed = ", ".join(f"{n} ({name})" for n, name in SOURCES[kind].items())
        t.add("source", f"expected one of {kind}'s sources {listed}, got {source}")
    workspace_id = t.get("workspace_id", int, "an integer (a Freshservice workspace id)")
    if workspace_id is not None and (kind != "freshservice" or workspace_id < 1):
        t.add("workspace_id", 'only for kind = "freshservice", a workspace id from 1 up')
    bypass = _bool(t, "bypass_mandatory", d.bypass_mandatory)
    if bypass and kind != "freshservice":
        t.add("bypass_mandatory", 'only Freshservice has it (kind = "freshservice")')
    resolve_status = _int(t, "resolve_status", d.resolve_status, 4)
    if resolve_status not in (4, 5):
        t.add("resolve_status", f"expected 4 (Resolved) or 5 (Closed), got {resolve_status}")
    tags = _strings(t, "tags", d.tags)
    _check_tags(t, tags)
    instance = t.get("instance", str, "a string") or d.instance
    if not re.fullmatch(rf"[A-Za-z0-9_-]{{1,{MAX_INSTANCE}}}", instance):
        t.add(
            "instance",
            f"expected 1-{MAX_INSTANCE} letters, digits, - or _, got {instance!r} (the ticket tag"
            f" alertd-<instance>-<incident id> must stay within {MAX_TAG_LENGTH} characters)",
        )
    taken = _statuses(t, "taken_statuses", d.taken_statuses, allowed=(3,))
    done = _statuses(t, "done_statuses", d.done_statuses, allowed=())
    if set(taken) & set(done):
        t.add("done_statuses", "a status cannot be both taken and done")
    subject = t.get("subject_template", str, "a string") or d.subject_template
    monitoring_url = t.get("monitoring_url", str, "a string (a URL template)") or ""
    for name, template in (("subject_template", subject), ("monitoring_url", monitoring_url)):
        problem = _template_problem(template)
        if problem:
            t.add(name, problem)
    group_id = t.get("group_id", int, "an integer (a group id)")
    webhook_secret, webhook_source = _webhook_secret(t, base, env)
    kind = _one_of(t, "kind", HELPDESK_KINDS, d.kind)
    plan = _one_of(t, "plan", tuple(PLAN_LIMITS), d.plan)
    overrides = {
        c: _int(t, f"rate_limit_{c}_per_minute", 0, 1)
        for c in CALL_CLASSES
        if f"rate_limit_{c}_per_minute" in t.data
    }
    rules = _ticket_rules(t, kind)
    for rule in rules:
        # A created ticket carries the configured tags, the rule's and the incident's own.
        if len({"alertd", *tags, *rule.tags}) > MAX_TAGS - 1:
            t.add(
                "rules",
                f"rule {rule.name!r}: its tags and helpdesk.tags come to more than "
                f"{MAX_TAGS - 1}, and a ticket holds {MAX_TAGS} with the incident's own tag",
            )
    return HelpdeskConfig(
        url=url.rstrip("/"),
        api_key=api_key,
        api_key_source=key_source,
        requester_email=email,
        kind=kind,
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
        service_grace=_duration(t, "service_grace", d.service_grace),
        poll_interval=_duration(t, "poll_interval", d.poll_interval),
        concurrency=_int(t, "concurrency", d.concurrency, 1),
        timeout=_duration(t, "timeout", d.timeout),
        keep_agent_priority=_bool(t, "keep_agent_priority", d.keep_agent_priority),
        on_missing_ticket=_one_of(
            t, "on_missing_ticket", MISSING_TICKET_POLICIES, d.on_missing_ticket
        ),
        instance=instance,
        public_notes=_bool(t, "public_notes", d.public_notes),
        on_agent_close=_one_of(t, "on_agent_close", AGENT_CLOSE_POLICIES, d.on_agent_close),
        webhook_secret=webhook_secret,
        webhook_secret_source=webhook_source,
        rules=rules,
        workspace_id=workspace_id if kind == "freshservice" else None,
        taken_statuses=taken,
        done_statuses=done,
        bypass_mandatory=bypass,
        outcome_wait=_duration(t, "outcome_wait", d.outcome_wait),
        plan=plan,
        class_limits=MappingProxyType(_class_limits(PLAN_LIMITS[plan], overrides)),
    )


def _check_tags(t: _Table, tags: tuple[str, ...]) -> None:
    """Configured tags must each fit the API's limit and leave room for the incident's tag."""
    long = [tag for tag in tags if len(tag) > MAX_TAG_LENGTH]
    if long:
        t.add("tags", f"{long[0]!r} is longer than {MAX_TAG_LENGTH} characters, the API's limit")
    if len({"alertd", *tags}) > MAX_TAGS - 1:
        t.add("tags", f'at most {MAX_TAGS - 2} besides "alertd": a ticket holds {MAX_TAGS} tags')


def _statuses(
    t: _Table, name: str, default: tuple[int, ...], *, allowed: tuple[int, ...]
) -> tuple[int, ...]:
    """Status ids: those in `allowed`, or custom ones (6 and up, as the account defines)."""
    raw = t.get(name, list, "an array of status ids")
    if raw is None:
        return default
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
        t.add(name, "expected an array of integers (status ids)")
        return default
    bad = [v for v in raw if v not in allowed and v < 6]
    if bad:
        extra = f"{', '.join(map(str, allowed))} or " if allowed else ""
        t.add(name, f"expected {extra}custom status ids (6 and up), got {bad[0]}")
        return default
    return tuple(dict.fromkeys(raw))


def _class_limits(plan: Mapping[str, int], overrides: Mapping[str, int]) -> dict[str, int]:
    """Each call class's limit: the key's if set, else the plan's (a class the plan does not
    limit counts against the total only)."""
    limits = {c: n for c, n in plan.items() if c != "total"}
    return {**limits, **overrides}


def _api_key(t: _Table, base: Path | None, env: Mapping[str, str]) -> tuple[str, str]:
    """The API key from `api_key_file` or the env var `api_key_env`; never from the file itself."""
    key = read_secret(t, base, env, "api_key", "ALERTD_HELPDESK_API_KEY", required=True)
    return key.value, key.source


DEFAULT_WEBHOOK_SECRET_ENV = "ALERTD_HELPDESK_WEBHOOK_SECRET"
MIN_WEBHOOK_SECRET = 16  # characters: a guessable secret would let anyone acknowledge incidents


def _webhook_secret(t: _Table, base: Path | None, env: Mapping[str, str]) -> tuple[str, str]:
    """The webhook's shared secret from `webhook_secret_file` or the env var
    `webhook_secret_env`; none at all turns the webhook off (the poll still runs)."""
    secret = read_secret(
        t, base, env, "webhook_secret", DEFAULT_WEBHOOK_SECRET_ENV, required=False
    )
    if not secret.value:
        return "", ""
    if len(secret.value) < MIN_WEBHOOK_SECRET:
        # The length only, never the secret itself.
        t.add(
            secret.key,
            f"the secret is {len(secret.value)} characters; use at least {MIN_WEBHOOK_SECRET}",
        )
    return secret.value, secret.source


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
