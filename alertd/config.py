"""Configuration: one TOML file loaded into a frozen tree of typed dataclasses.

Owns the file format (its key names are a public contract, documented in
`config/alertd.example.toml`), its validation, where secrets come from, and the default data
directory. Validation reports every problem of a file at once, each naming the file, the dotted
key and the bad value; token values are never shown. This is the only module that reads the
environment.
"""

from __future__ import annotations

import difflib
import os
import re
import string
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, time, timedelta
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from alertd.errors import ConfigError, ConfigProblem
from alertd.escalation import (
    DEFAULT_CADENCE,
    DEFAULT_LEVELS,
    EscalationLevel,
    EscalationPolicy,
)
from alertd.model import CheckState, Level, Priority
from alertd.policy import (
    DEFAULT_MATRIX,
    DEFAULT_URGENCY,
    ImpactRule,
    LifecyclePolicy,
    Pattern,
    PriorityPolicy,
)

DEFAULTS_FILE = "<defaults>"
DEFAULT_TOKENS_ENV = "ALERTD_TOKENS"
DEFAULT_NRDP_TOKENS_ENV = "ALERTD_NRDP_TOKENS"
LOG_LEVELS = ("debug", "info", "warning", "error")
SYNCHRONOUS_MODES = ("FULL", "NORMAL")

_T = TypeVar("_T")
_E = TypeVar("_E", bound=StrEnum)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8780
    max_body_bytes: int = 16 * 1024 * 1024
    max_results_per_request: int = 10_000


@dataclass(frozen=True, slots=True)
class StoreConfig:
    # No default here: the default lives under the data directory, which depends on the env.
    path: Path
    synchronous: str = "FULL"


@dataclass(frozen=True, slots=True, repr=False)
class AuthConfig:
    """Accepted API tokens (secrets) and, printable, the sources they were read from."""

    tokens: tuple[str, ...] = ()
    token_sources: tuple[str, ...] = ()

    def __repr__(self) -> str:
        # The tokens are secrets: a repr ends up in logs and tracebacks.
        return (
            f"AuthConfig(tokens=<{len(self.tokens)} hidden>, token_sources={self.token_sources!r})"
        )


# What a firing alert's severity label becomes: a check state, or None to ignore the alert.
SeverityAction = CheckState | None
SEVERITY_ACTIONS = ("CRITICAL", "WARNING", "UNKNOWN", "ignore")
# kube-prometheus's vocabulary (critical, warning, info, none); "none" is its always-firing
# Watchdog, which must not become a permanent incident, and "info" is informational.
DEFAULT_SEVERITY_MAP: Mapping[str, SeverityAction] = MappingProxyType(
    {
        "critical": CheckState.CRITICAL,
        "error": CheckState.CRITICAL,
        "warning": CheckState.WARNING,
        "info": None,
        "none": None,
    }
)


@dataclass(frozen=True, slots=True)
class AlertmanagerConfig:
    """How Alertmanager webhook alerts map onto incident keys and states."""

    key_labels: tuple[str, ...] = ("alertname", "instance")
    host_label: str = "host"
    service_label: str = "alertname"
    severity_label: str = "severity"
    severity_map: Mapping[str, SeverityAction] = field(default_factory=lambda: DEFAULT_SEVERITY_MAP)
    unmapped_severity: SeverityAction = CheckState.UNKNOWN


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"


HELPDESK_KINDS = ("freshdesk", "freshservice")
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

    def __repr__(self) -> str:
        # The API key is a secret: a repr ends up in logs and tracebacks.
        return f"HelpdeskConfig(kind={self.kind!r}, url={self.url!r}, api_key=<hidden>)"


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig
    store: StoreConfig
    auth: AuthConfig
    lifecycle: LifecyclePolicy
    log: LogConfig
    # NRDP's own tokens (`token=` form field); NRDP clients cannot send a bearer header.
    nrdp: AuthConfig = AuthConfig()
    alertmanager: AlertmanagerConfig = AlertmanagerConfig()
    source: Path | None = None  # the file it was loaded from; None = built-in defaults
    helpdesk: HelpdeskConfig | None = None  # None: incidents only, no tickets
    escalation: EscalationPolicy = field(default_factory=EscalationPolicy)


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Load `path` (None: defaults only), or raise ConfigError listing every problem found."""
    env = os.environ if env is None else env
    file = DEFAULTS_FILE if path is None else str(path)
    problems = _Problems(file)
    root = _Table({} if path is None else _read_toml(path), "", problems)
    root.check_keys(
        ("server", "store", "auth", "nrdp", "alertmanager", "log", "lifecycle", "priority",
         "helpdesk", "escalation", "updates")
    )  # fmt: skip
    # Relative paths in the file mean "next to the file", whatever the daemon's cwd is later.
    base = None if path is None else path.absolute().parent
    # Sections are read in the example file's order, so problems are listed in that order.
    server = _server(root.table("server"))
    store = _store(root.table("store"), base, env)
    auth = _tokens(root.table("auth"), base, env, DEFAULT_TOKENS_ENV)
    nrdp = _tokens(root.table("nrdp"), base, env, DEFAULT_NRDP_TOKENS_ENV)
    alertmanager = _alertmanager(root.table("alertmanager"))
    log = _log(root.table("log"))
    lifecycle = _lifecycle(root.table("lifecycle"))
    priority = _priority(root.table("priority"))
    helpdesk = _helpdesk(root.table("helpdesk"), base, env) if "helpdesk" in root.data else None
    escalation = _escalation(root.table("escalation"), root.table("updates"))
    config = Config(
        server=server,
        store=store,
        auth=auth,
        lifecycle=replace(lifecycle, priority=priority),
        log=log,
        nrdp=nrdp,
        alertmanager=alertmanager,
        source=path,
        helpdesk=helpdesk,
        escalation=escalation,
    )
    if problems.items:
        raise ConfigError(problems.items)
    return config


def default_data_dir(env: Mapping[str, str]) -> Path:
    """systemd's StateDirectory=, else the XDG state directory, else ~/.local/state/alertd."""
    state = env.get("STATE_DIRECTORY", "")
    if state:
        # systemd joins several StateDirectory= entries with colons; ours is the first.
        return Path(state.split(":")[0])
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore relative values
        return Path(xdg) / "alertd"
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".local" / "state" / "alertd"


_DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")


def parse_duration(text: str) -> timedelta:
    """Parse "30s", "5m", "2h", "1d" or a combination in that order such as "1h30m"."""
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f'expected a duration like "30s", "5m", "2h" or "1d", got {text!r}')
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    try:
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError as exc:
        raise ValueError(f"duration too long, got {text!r}") from exc


def summary(config: Config) -> str:
    """One line for the operator saying what was loaded; never shows token values."""
    server = config.server
    host = f"[{server.host}]" if ":" in server.host else server.host
    tokens = _count(len(config.auth.tokens), "auth token")
    if config.auth.tokens:
        tokens += f" ({', '.join(config.auth.token_sources)})"
    if config.nrdp.tokens:
        tokens += f", {_count(len(config.nrdp.tokens), 'NRDP token')}"
        tokens += f" ({', '.join(config.nrdp.token_sources)})"
    rules = _count(len(config.lifecycle.priority.rules), "impact rule")
    return f"config OK: listen {host}:{server.port}, store {config.store.path}, {tokens}, {rules}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# --- reading TOML tables ---------------------------------------------------------------------


class _Problems:
    """Collects problems so that one load reports all of them, not just the first."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[ConfigProblem] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(ConfigProblem(self.file, key, message))


def _read_toml(path: Path) -> dict[str, object]:
    def error(message: str) -> ConfigError:
        return ConfigError([ConfigProblem(str(path), "", message)])

    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"not valid UTF-8 (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise error(f"not valid TOML: {exc}") from exc


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class _Table:
    """One TOML table being read: its content, its dotted name, and where problems go."""

    data: Mapping[str, object]
    name: str
    problems: _Problems

    def key(self, name: str) -> str:
        part = name if _BARE_KEY.fullmatch(name) else f'"{name}"'
        return f"{self.name}.{part}" if self.name else part

    def add(self, name: str, message: str) -> None:
        self.problems.add(self.key(name), message)

    def check_keys(self, allowed: Collection[str]) -> None:
        for name in self.data:
            if name not in allowed:
                close = difflib.get_close_matches(name, list(allowed), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
                self.add(name, f"unknown key; {hint}")

    def get(self, name: str, kind: type[_T], what: str) -> _T | None:
        """The value if present and of type `kind`; None if absent or wrong (a problem)."""
        if name not in self.data:
            return None
        value = self.data[name]
        # TOML booleans are Python ints; `port = true` must not read as 1.
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
            return value
        self.add(name, f"expected {what}, got {_describe(value)}")
        return None

    def table(self, name: str) -> _Table:
        """The sub-table `name`; empty if absent or not a table (a problem)."""
        value = self.get(name, dict, "a table")
        return _Table(value or {}, self.key(name), self.problems)


def _kind(value: object) -> str:
    for type_, name in _KINDS:
        if isinstance(value, type_):
            return name
    return type(value).__name__


_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    (list, "an array"),
    (dict, "a table"),
    (date, "date"),  # datetime is a date subclass
    (time, "time"),
)


def _describe(value: object) -> str:
    """The value as the reader wrote it, with its TOML type: `string '5 minutes'`."""
    kind = _kind(value)
    if isinstance(value, list | dict):
        return kind
    if isinstance(value, bool):
        return f"{kind} {str(value).lower()}"
    if isinstance(value, date | time):
        return f"{kind} {value.isoformat()}"
    return f"{kind} {value!r}"


def _int(t: _Table, name: str, default: int, minimum: int) -> int:
    value = t.get(name, int, "an integer")
    if value is None:
        return default
    if value < minimum:
        t.add(name, f"must be at least {minimum}, got {value}")
        return default
    return value


def _percent(t: _Table, name: str, default: float) -> float | None:
    """A number in 0..100; None if the key was given but is wrong."""
    if name not in t.data:
        return default
    value = t.data[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        t.add(name, f"expected a number, got {_describe(value)}")
        return None
    if not 0 <= value <= 100:
        t.add(name, f"must be between 0 and 100, got {value}")
        return None
    return float(value)


def _duration(t: _Table, name: str, default: timedelta) -> timedelta:
    text = t.get(name, str, 'a duration string like "5m"')
    if text is None:
        return default
    try:
        return parse_duration(text)
    except ValueError as exc:
        t.add(name, str(exc))
        return default


def _one_of(
    t: _Table, name: str, allowed: tuple[str, ...], default: str, *, upper: bool = False
) -> str:
    """One of `allowed`; with `upper`, any case is accepted and stored upper case."""
    value = t.get(name, str, f"a string, one of {', '.join(allowed)}")
    if value is None:
        return default
    folded = value.upper() if upper else value
    if folded not in allowed:
        t.add(name, f"expected one of {', '.join(allowed)}, got {value!r}")
        return default
    return folded


def _enum(t: _Table, name: str, kind: type[_E], default: _E) -> _E:
    return kind(_one_of(t, name, tuple(kind), default))


# --- sections --------------------------------------------------------------------------------


def _server(t: _Table) -> ServerConfig:
    t.check_keys(("listen", "max_body_bytes", "max_results_per_request"))
    default = ServerConfig()
    host, port = default.host, default.port
    listen = t.get("listen", str, 'a string "host:port"')
    if listen is not None:
        try:
            host, port = _parse_listen(listen)
        except ValueError as exc:
            t.add("listen", str(exc))
    return ServerConfig(
        host=host,
        port=port,
        max_body_bytes=_int(t, "max_body_bytes", default.max_body_bytes, 1),
        max_results_per_request=_int(
            t, "max_results_per_request", default.max_results_per_request, 1
        ),
    )


def _parse_listen(text: str) -> tuple[str, int]:
    """Split "host:port" or "[v6addr]:port" into (host without brackets, port)."""
    expected = f'expected "host:port" like "127.0.0.1:8780" or "[::1]:8780", got {text!r}'
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:
            raise ValueError(f'an IPv6 address needs brackets, like "[::1]:8780", got {text!r}')
    if not (sep and host and port.isascii() and port.isdigit()):
        raise ValueError(expected)
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port must be between 1 and 65535, got {text!r}")
    return host, int(port)


def _store(t: _Table, base: Path | None, env: Mapping[str, str]) -> StoreConfig:
    t.check_keys(("path", "synchronous"))
    path = default_data_dir(env) / "alertd.db"
    given = t.get("path", str, "a string (a file path)")
    if given == "":
        t.add("path", "must not be empty")
    elif given is not None:
        path = _beside(base, given)
    # SQLite spells its pragma values in upper case but accepts any case; so do we.
    synchronous = _one_of(t, "synchronous", SYNCHRONOUS_MODES, "FULL", upper=True)
    return StoreConfig(path=path, synchronous=synchronous)


def _beside(base: Path | None, given: str) -> Path:
    path = Path(given)
    return path if base is None or path.is_absolute() else base / path


def _tokens(t: _Table, base: Path | None, env: Mapping[str, str], default_env: str) -> AuthConfig:
    """Tokens of one section ([auth], [nrdp]) from its three sources: the list, a file, env."""
    t.check_keys(("tokens", "tokens_file", "tokens_env"))
    found: list[tuple[str, list[str]]] = [(t.key("tokens"), _listed_tokens(t))]
    file = t.get("tokens_file", str, "a string (a file path)")
    if file == "":
        t.add("tokens_file", "must not be empty; leave it out for no tokens file")
    elif file is not None:
        path = _beside(base, file)
        found.append((f"file {path}", _file_tokens(t, path)))
    name = t.get("tokens_env", str, "a string (an environment variable name)")
    name = default_env if name is None else name
    if name:  # tokens_env = "" switches the environment source off
        found.append((f"env {name}", _split_tokens(env.get(name, ""))))
    # A token may sit in two sources while being rotated; keep its first place only.
    tokens = tuple(dict.fromkeys(token for _, listed in found for token in listed))
    return AuthConfig(tokens=tokens, token_sources=tuple(src for src, listed in found if listed))


# Token problems describe the token, never show it: it is a secret.


def _listed_tokens(t: _Table) -> list[str]:
    raw = t.data.get("tokens", [])
    if not isinstance(raw, list):
        t.add("tokens", f"expected an array of strings, got {_kind(raw)}")
        return []
    tokens = []
    for n, token in enumerate(raw, 1):
        if not isinstance(token, str):
            t.problems.add(f"{t.key('tokens')}[{n}]", f"expected a string, got {_kind(token)}")
        elif not token or any(c.isspace() for c in token):
            t.problems.add(f"{t.key('tokens')}[{n}]", "a token must be non-empty, without spaces")
        else:
            tokens.append(token)
    return tokens


def _file_tokens(t: _Table, path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        t.add("tokens_file", f"cannot read {str(path)!r}: {exc.strerror or type(exc).__name__}")
        return []
    except UnicodeDecodeError:
        t.add("tokens_file", f"{str(path)!r} is not valid UTF-8")
        return []
    tokens = []
    for n, line in enumerate(lines, 1):
        token = line.strip()
        if not token or token.startswith("#"):
            continue
        if any(c.isspace() for c in token):
            t.add("tokens_file", f"{str(path)!r} line {n}: one token per line, without spaces")
        else:
            tokens.append(token)
    return tokens


def _split_tokens(text: str) -> list[str]:
    return [token for token in re.split(r"[\s,]+", text) if token]


_HELPDESK_KEYS = (
    "kind", "url", "api_key_env", "api_key_file", "requester_email", "source", "type",
    "group_id", "tags", "custom_fields", "resolve_status", "subject_template", "monitoring_url",
    "rate_limit_per_minute", "note_interval", "release_grace", "poll_interval", "concurrency",
    "timeout",
    "keep_agent_priority",
    "on_missing_ticket", "instance", "public_notes",
)  # fmt: skip
_SOURCES = (1, 2, 3, 7, 9, 10)  # Freshdesk's ticket sources (protocols.md 1.2)


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
    )


_LEVEL_KEYS = ("name", "after", "group_id", "responder_id", "priority", "note",
               "notify_emails", "tags")  # fmt: skip


def _escalation(t: _Table, updates: _Table) -> EscalationPolicy:
    priorities = tuple(p.value for p in Priority)
    t.check_keys(("stop_on_ack", *priorities))
    levels = dict(DEFAULT_LEVELS)
    for priority in Priority:
        if priority.value in t.data:
            levels[priority] = _levels(t, priority.value)
    updates.check_keys(("public", *priorities))
    cadence = dict(DEFAULT_CADENCE)
    for priority in Priority:
        text = updates.get(priority.value, str, 'a duration like "1h", or "none"')
        if text is None:
            continue
        if text == "none":
            cadence[priority] = None
            continue
        try:
            cadence[priority] = parse_duration(text)
        except ValueError as exc:
            updates.add(priority.value, f'{exc}, or "none"')
    return EscalationPolicy(
        levels=MappingProxyType(levels),
        stop_on_ack=_bool(t, "stop_on_ack", True),
        cadence=MappingProxyType(cadence),
        public_updates=_bool(updates, "public", False),
    )


def _levels(t: _Table, name: str) -> tuple[EscalationLevel, ...]:
    raw = t.data[name]
    if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
        t.add(name, "expected an array of tables ([[escalation.<priority>]] levels)")
        return ()
    levels: list[EscalationLevel] = []
    for n, data in enumerate(raw, 1):
        level = _Table(data, f"{t.key(name)}[{n}]", t.problems)
        level.check_keys(_LEVEL_KEYS)
        after = _duration(level, "after", timedelta(0))
        if "after" not in level.data:
            level.add("after", "required: how long after opening this level fires")
        elif levels and after <= levels[-1].after:
            level.add("after", "levels must come in increasing order of `after`")
        priority = level.get("priority", str, 'a string: "raise" or a priority')
        if priority is not None and priority != "raise" and priority not in set(Priority):
            level.add("priority", f'expected "raise" or one of {", ".join(Priority)}, '
                                  f"got {priority!r}")  # fmt: skip
            priority = None
        levels.append(
            EscalationLevel(
                name=level.get("name", str, "a string") or f"level {n}",
                after=after,
                group_id=level.get("group_id", int, "an integer (a group id)"),
                responder_id=level.get("responder_id", int, "an integer (an agent id)"),
                priority=priority,
                note=level.get("note", str, "a string") or "",
                notify_emails=_strings(level, "notify_emails", ()),
                tags=_strings(level, "tags", ()),
            )
        )
    return tuple(levels)


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


def _strings(t: _Table, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = t.get(name, list, "an array of strings")
    if raw is None:
        return default
    if not all(isinstance(item, str) and item for item in raw):
        t.add(name, "expected an array of non-empty strings")
        return default
    return tuple(raw)


def _bool(t: _Table, name: str, default: bool) -> bool:
    value = t.get(name, bool, "true or false")
    return default if value is None else value


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


def _alertmanager(t: _Table) -> AlertmanagerConfig:
    t.check_keys(
        ("key_labels", "host_label", "service_label", "severity_label", "severity_map",
         "unmapped_severity")
    )  # fmt: skip
    default = AlertmanagerConfig()
    key_labels = default.key_labels
    raw = t.get("key_labels", list, "an array of label names")
    if raw is not None:
        if not raw or not all(isinstance(v, str) and _LABEL_NAME.fullmatch(v) for v in raw):
            t.add("key_labels", "expected a non-empty array of Prometheus label names")
        else:
            key_labels = tuple(dict.fromkeys(raw))
    severity_map = dict(default.severity_map)
    given = t.table("severity_map")
    for severity in given.data:
        action = _severity_action(given, severity)
        if action is not _BAD:
            severity_map[severity.lower()] = action
    unmapped = _severity_action(t, "unmapped_severity", default.unmapped_severity)
    return AlertmanagerConfig(
        key_labels=key_labels,
        host_label=_label_name(t, "host_label", default.host_label),
        service_label=_label_name(t, "service_label", default.service_label),
        severity_label=_label_name(t, "severity_label", default.severity_label),
        severity_map=MappingProxyType(severity_map),
        unmapped_severity=default.unmapped_severity if unmapped is _BAD else unmapped,
    )


_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _label_name(t: _Table, name: str, default: str) -> str:
    value = t.get(name, str, "a label name")
    if value is None:
        return default
    if not _LABEL_NAME.fullmatch(value):
        t.add(name, f"not a Prometheus label name: {value!r}")
        return default
    return value


# Marks a severity action given but wrong (already reported); distinct from None = "ignore".
_BAD: SeverityAction = CheckState.OK


def _severity_action(t: _Table, name: str, default: SeverityAction = None) -> SeverityAction:
    """A state for a severity, None for "ignore", or `_BAD` if the value is wrong (reported)."""
    if name not in t.data:
        return default
    value = t.get(name, str, f"a string, one of {', '.join(SEVERITY_ACTIONS)}")
    if value is None:
        return _BAD
    if value.lower() == "ignore":
        return None
    if value.upper() not in SEVERITY_ACTIONS:
        t.add(name, f"expected one of {', '.join(SEVERITY_ACTIONS)}, got {value!r}")
        return _BAD
    return CheckState(value.upper())


def _log(t: _Table) -> LogConfig:
    t.check_keys(("level",))
    return LogConfig(level=_one_of(t, "level", LOG_LEVELS, "info"))


def _lifecycle(t: _Table) -> LifecyclePolicy:
    """The lifecycle thresholds and timers; the caller adds the priority policy."""
    t.check_keys(
        ("open_after", "recovery_hold", "reopen_window", "flap_low", "flap_high", "history_limit",
         "stale_after")
    )  # fmt: skip
    default = LifecyclePolicy()
    open_after = _int(t, "open_after", default.open_after, 1)
    recovery_hold = _duration(t, "recovery_hold", default.recovery_hold)
    reopen_window = _duration(t, "reopen_window", default.reopen_window)
    low = _percent(t, "flap_low", default.flap_low)
    high = _percent(t, "flap_high", default.flap_high)
    if low is not None and high is not None and low >= high:
        t.add("flap_low", f"must be less than {t.key('flap_high')} ({high}), got {low}")
    return LifecyclePolicy(
        open_after=open_after,
        recovery_hold=recovery_hold,
        reopen_window=reopen_window,
        flap_low=default.flap_low if low is None else low,
        flap_high=default.flap_high if high is None else high,
        history_limit=_int(t, "history_limit", default.history_limit, 1),
        stale_after=_stale_after(t),
    )


# The engine looks for stale incidents at least this often; a shorter threshold is not kept.
MIN_STALE_AFTER = timedelta(minutes=1)


def _stale_after(t: _Table) -> timedelta | None:
    """`"auto"` (None: from each check's observed interval) or a duration of a minute or more."""
    if t.data.get("stale_after", "auto") == "auto":
        return None
    value = _duration(t, "stale_after", MIN_STALE_AFTER)
    if value < MIN_STALE_AFTER:
        t.add("stale_after", f'must be "auto" or at least 1m, got {t.data["stale_after"]!r}')
    return max(value, MIN_STALE_AFTER)


# --- priority --------------------------------------------------------------------------------


def _priority(t: _Table) -> PriorityPolicy:
    t.check_keys(("default_impact", "unknown_urgency", "matrix", "rules"))
    default_impact = _enum(t, "default_impact", Level, Level.MEDIUM)
    unknown = _enum(t, "unknown_urgency", Level, DEFAULT_URGENCY[CheckState.UNKNOWN])
    matrix = _matrix(t.table("matrix"))
    return PriorityPolicy(
        matrix=matrix,
        urgency=MappingProxyType({**DEFAULT_URGENCY, CheckState.UNKNOWN: unknown}),
        rules=_rules(t),
        default_impact=default_impact,
    )


def _matrix(t: _Table) -> Mapping[Level, Mapping[Level, Priority]]:
    """DEFAULT_MATRIX with the cells the file gives replaced."""
    t.check_keys(tuple(Level))
    matrix: dict[Level, Mapping[Level, Priority]] = {}
    for impact in Level:
        row = t.table(impact)
        row.check_keys(tuple(Level))
        cells = {u: _enum(row, u, Priority, p) for u, p in DEFAULT_MATRIX[impact].items()}
        matrix[impact] = MappingProxyType(cells)
    return MappingProxyType(matrix)


def _rules(t: _Table) -> tuple[ImpactRule, ...]:
    raw = t.get("rules", list, "an array of tables ([[priority.rules]])") or []
    rules: list[ImpactRule] = []
    for n, item in enumerate(raw, 1):
        key = f"{t.key('rules')}[{n}]"
        if not isinstance(item, dict):
            t.problems.add(key, f"expected a table, got {_describe(item)}")
            continue
        rule = _rule(_Table(item, key, t.problems), n)
        if rule is not None and any(r.name == rule.name for r in rules):
            # The name is what an incident records as the reason for its priority.
            t.problems.add(f"{key}.name", f"duplicate rule name {rule.name!r}")
        elif rule is not None:
            rules.append(rule)
    return tuple(rules)


_MATCHERS = ("host", "service", "labels")


def _rule(t: _Table, n: int) -> ImpactRule | None:
    t.check_keys(("name", "impact", "match", *_MATCHERS))
    name = t.get("name", str, "a string") or f"rule {n}"
    if t.data.get("name") == "":
        t.add("name", "must not be empty; leave it out for the default name")
    if "impact" not in t.data:
        t.add("impact", f"required; one of {', '.join(Level)}")
    impact = _enum(t, "impact", Level, Level.MEDIUM)
    matchers = _matchers(t)
    if matchers is None:
        return None
    return ImpactRule(
        impact=impact,
        name=name,
        host=_pattern(matchers, "host"),
        service=_pattern(matchers, "service"),
        labels=_labels(matchers.table("labels")),
    )


def _matchers(t: _Table) -> _Table | None:
    """The table holding the rule's matchers (the rule, or its `match`); None if unusable."""
    if "match" in t.data:
        if any(m in t.data for m in _MATCHERS):
            t.add("match", "give matchers either in match or directly in the rule, not both")
            return None
        if not isinstance(t.data["match"], dict):
            t.table("match")  # reports the wrong type
            return None
        t = t.table("match")
        t.check_keys(_MATCHERS)
    if not any(t.data.get(m) not in (None, {}) for m in _MATCHERS):
        # Reported at the rule's own key: the problem is what is missing from it.
        rule = t.name.removesuffix(".match")
        t.problems.add(rule, "matches everything; use priority.default_impact")
        return None
    return t


def _labels(t: _Table) -> Mapping[str, Pattern]:
    labels = {label: _pattern(t, label) for label in t.data}
    return MappingProxyType({k: v for k, v in labels.items() if v is not None})


def _pattern(t: _Table, name: str) -> Pattern | None:
    """A glob, or "re:<regex>"; both must match the whole value, case-sensitively."""
    source = t.get(name, str, 'a pattern string (a glob like "db-*", or "re:<regex>")')
    if source is None:
        return None
    try:
        return Pattern.compile(source)
    except ValueError as exc:
        t.add(name, str(exc))
        return None
