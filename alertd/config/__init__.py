"""Configuration: one TOML file loaded into a frozen tree of typed dataclasses.

Owns the file format (its key names are a public contract, documented in
`config/alertd.example.toml`), its validation, where secrets come from, and the default data
directory. Validation reports every problem of a file at once, each naming the file, the dotted
key and the bad value; token values are never shown. This is the only package that reads the
environment: `load_config` reads it and hands it to the sections that need it.

This module holds the whole (`Config`, `load_config`, `summary`) and exports every public name of
the package. The rest, each module importing only those above it:

    duration      the duration syntax ("1h30m"), also used by silences and heartbeats
    paths         paths beside the file; the default data directory
    reader        the TOML file, `_Table`, `_Problems` and the typed getters
    server        [server], [store], [log]
    auth          [auth] and [nrdp]: API tokens and their sources
    alertmanager  [alertmanager]
    lifecycle     [lifecycle]
    priority      [priority]
    helpdesk      [helpdesk]
    nagios        [nagios]: the command file and acknowledging ticketed problems there
    escalation    [escalation] and [updates]
    ui            [ui]: the web console

A name with a leading underscore is shared between these modules but belongs to none of their
users.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from alertd.config.alertmanager import (
    DEFAULT_SEVERITY_MAP,
    SEVERITY_ACTIONS,
    AlertmanagerConfig,
    SeverityAction,
    _alertmanager,
)
from alertd.config.auth import (
    ALL_SCOPES,
    DEFAULT_NRDP_TOKENS_ENV,
    DEFAULT_TOKENS_ENV,
    INGEST_ONLY,
    AuthConfig,
    Scope,
    _tokens,
)
from alertd.config.escalation import _escalation
from alertd.config.helpdesk import DEFAULT_SUBJECT, HELPDESK_KINDS, HelpdeskConfig, _helpdesk
from alertd.config.lifecycle import MIN_STALE_AFTER, _lifecycle
from alertd.config.nagios import ACK_SOURCES, NagiosConfig, _nagios
from alertd.config.paths import default_data_dir
from alertd.config.priority import _priority
from alertd.config.reader import _Problems, _read_toml, _Table
from alertd.config.server import (
    LOG_LEVELS,
    SYNCHRONOUS_MODES,
    LogConfig,
    ServerConfig,
    StoreConfig,
    _log,
    _server,
    _store,
)
from alertd.config.ui import UiConfig, _ui
from alertd.durations import parse_duration
from alertd.errors import ConfigError
from alertd.escalation import EscalationPolicy
from alertd.policy import LifecyclePolicy

__all__ = [
    "ACK_SOURCES",
    "ALL_SCOPES",
    "DEFAULTS_FILE",
    "DEFAULT_NRDP_TOKENS_ENV",
    "DEFAULT_SEVERITY_MAP",
    "DEFAULT_SUBJECT",
    "DEFAULT_TOKENS_ENV",
    "HELPDESK_KINDS",
    "INGEST_ONLY",
    "LOG_LEVELS",
    "MIN_STALE_AFTER",
    "SEVERITY_ACTIONS",
    "SYNCHRONOUS_MODES",
    "AlertmanagerConfig",
    "AuthConfig",
    "Config",
    "HelpdeskConfig",
    "LogConfig",
    "NagiosConfig",
    "Scope",
    "ServerConfig",
    "SeverityAction",
    "StoreConfig",
    "UiConfig",
    "default_data_dir",
    "load_config",
    "parse_duration",
    "summary",
]


DEFAULTS_FILE = "<defaults>"


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
    ui: UiConfig = UiConfig()
    nagios: NagiosConfig = field(default_factory=NagiosConfig)


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Load `path` (None: defaults only), or raise ConfigError listing every problem found."""
    env = os.environ if env is None else env
    file = DEFAULTS_FILE if path is None else str(path)
    problems = _Problems(file)
    root = _Table({} if path is None else _read_toml(path), "", problems)
    root.check_keys(
        ("server", "store", "auth", "nrdp", "alertmanager", "log", "lifecycle", "priority",
         "helpdesk", "escalation", "updates", "ui", "nagios")
    )  # fmt: skip
    # Relative paths in the file mean "next to the file", whatever the daemon's cwd is later.
    base = None if path is None else path.absolute().parent
    # Sections are read in the example file's order, so problems are listed in that order.
    server = _server(root.table("server"))
    store = _store(root.table("store"), base, env)
    auth = _tokens(root.table("auth"), base, env, DEFAULT_TOKENS_ENV)
    nrdp = _tokens(root.table("nrdp"), base, env, DEFAULT_NRDP_TOKENS_ENV, nrdp=True)
    alertmanager = _alertmanager(root.table("alertmanager"))
    log = _log(root.table("log"))
    lifecycle = _lifecycle(root.table("lifecycle"))
    priority = _priority(root.table("priority"))
    helpdesk = _helpdesk(root.table("helpdesk"), base, env) if "helpdesk" in root.data else None
    escalation = _escalation(root.table("escalation"), root.table("updates"))
    ui = _ui(root.table("ui"))
    nagios = _nagios(root.table("nagios"), base)
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
        ui=ui,
        nagios=nagios,
    )
    if problems.items:
        raise ConfigError(problems.items)
    return config


def summary(config: Config) -> str:
    """One line for the operator saying what was loaded; never shows token values."""
    server = config.server
    host = f"[{server.host}]" if ":" in server.host else server.host
    tokens = _count(len(config.auth.tokens), "auth token")
    if config.auth.disabled:
        tokens = "auth DISABLED (auth.disabled = true: the API is open)"
    elif config.auth.tokens:
        tokens += f" ({', '.join(config.auth.token_sources)})"
    if config.nrdp.tokens:
        tokens += f", {_count(len(config.nrdp.tokens), 'NRDP token')}"
        tokens += f" ({', '.join(config.nrdp.token_sources)})"
    rules = _count(len(config.lifecycle.priority.rules), "impact rule")
    helpdesk = "no helpdesk"
    if config.helpdesk is not None:
        # The key's source, never the key.
        helpdesk = (
            f"helpdesk {config.helpdesk.kind} {config.helpdesk.url} "
            f"(key from {config.helpdesk.api_key_source})"
        )
    return (
        f"config OK: listen {host}:{server.port}, store {config.store.where}, {tokens}, "
        f"{rules}, {helpdesk}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
