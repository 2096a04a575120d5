"""The typed keys of the aiohttp application, and the small types stored under them.

A leaf of the HTTP layer: route modules and the composition root (`alertd.app`) import these
keys; this module imports no route module, so the routes and the root never import each other.
Settings a SIGHUP reload may change (tokens, lifecycle policy) are read through `LIVE` on every
use, never captured at build time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from alertd.clock import Clock
from alertd.config import Config, Scope
from alertd.engine import Engine
from alertd.metrics import Metrics
from alertd.outbox import Dispatcher
from alertd.ratelimit import RateLimiter
from alertd.store import Store


class Live:
    """The reloadable view of the configuration: replaced whole by a reload, read per use."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tokens: tuple[tuple[bytes, frozenset[Scope]], ...] = ()
        self.auth_disabled = False
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        self.config = config
        self.tokens = tuple((t.encode(), scopes) for t, scopes in config.auth.scoped())
        # Only an explicit `auth.disabled = true` opens the API; no tokens alone never does.
        self.auth_disabled = config.auth.disabled


# A readiness probe answers None when fine, or the reason it is not (shown in /readyz).
ReadinessProbe = Callable[[], Awaitable[str | None]]
# A reload hook applies the reloadable parts of (old, new) config to its component.
ReloadHook = Callable[[Config, Config], None]


@dataclass(frozen=True, slots=True)
class ReadinessCheck:
    name: str
    probe: ReadinessProbe


CONFIG = web.AppKey("config", Config)  # the configuration the app was built with
LIVE = web.AppKey("live", Live)  # the configuration in force now (after reloads)
CLOCK = web.AppKey("clock", Clock)
STORE = web.AppKey("store", Store)
ENGINE = web.AppKey("engine", Engine)
METRICS = web.AppKey("metrics", Metrics)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)  # only with a [helpdesk]
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)  # only with a [helpdesk]
# Components append their checks here (in their cleanup_ctx); /readyz runs them all.
READINESS: web.AppKey[list[ReadinessCheck]] = web.AppKey("readiness")
# Components append a hook here to take their part of a reloaded configuration.
RELOAD_HOOKS: web.AppKey[list[ReloadHook]] = web.AppKey("reload_hooks")
# (method, route path) -> the scope a token needs for it; filled with the route table.
ROUTE_SCOPES: web.AppKey[dict[tuple[str, str], Scope]] = web.AppKey("route_scopes")
# Ingest routes: path -> input source name, so refusals are counted per source.
INGEST_SOURCES: web.AppKey[dict[str, str]] = web.AppKey("ingest_sources")
