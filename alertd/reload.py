"""Reloading the configuration on SIGHUP: all of the new file or none of it.

The file is loaded and validated in full first; if it has any problem, each is logged and the
running configuration stays as it was. Otherwise the reloadable parts are swapped in one
synchronous step (no await in between, so no request or batch sees half of it): the lifecycle
and priority policy (engine), the API tokens (`LIVE`), and whatever other components take
through their `RELOAD_HOOKS`. Settings that only take effect at start (`[server]`, `[store]`,
`[log]`) keep their old values, and the log says which ones differ and need a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from alertd.config import Config, load_config
from alertd.errors import ConfigError
from alertd.http.keys import LIVE, METRICS, RELOAD_HOOKS

log: structlog.typing.FilteringBoundLogger = structlog.get_logger(__name__)

# Sections read once at start: listener, store, logging.
RESTART_SECTIONS = ("server", "store", "log")
# Config field -> the key the operator wrote, where the two differ.
_KEY_NAMES = {
    "server.host": "server.listen",
    "server.port": "server.listen",
    "lifecycle.priority.urgency": "priority.unknown_urgency",
    "auth.token_sources": "auth.tokens",
}


@dataclasses.dataclass(frozen=True, slots=True)
class ReloadReport:
    applied: bool
    changed: tuple[str, ...] = ()  # keys whose new values are now in force
    needs_restart: tuple[str, ...] = ()  # keys that differ but keep their old values
    problems: tuple[str, ...] = ()  # why the file was refused (nothing applied)


def differences(old: Config, new: Config) -> tuple[list[str], list[str]]:
    """(keys that changed and apply live, keys that changed but need a restart)."""
    live: list[str] = []
    restart: list[str] = []
    for f in dataclasses.fields(old):
        if f.name == "source":
            continue
        keys = _changed_keys(f.name, getattr(old, f.name), getattr(new, f.name))
        (restart if f.name in RESTART_SECTIONS else live).extend(keys)
    return _unique(live), _unique(restart)


def _changed_keys(prefix: str, old: Any, new: Any) -> list[str]:
    if old == new:
        return []
    if not (dataclasses.is_dataclass(old) and dataclasses.is_dataclass(new)):
        return [_KEY_NAMES.get(prefix, prefix).replace("lifecycle.priority.", "priority.")]
    keys: list[str] = []
    for f in dataclasses.fields(old):
        keys += _changed_keys(f"{prefix}.{f.name}", getattr(old, f.name), getattr(new, f.name))
    return keys


def _unique(keys: list[str]) -> list[str]:
    return list(dict.fromkeys(keys))


def apply(app: web.Application, new: Config) -> ReloadReport:
    """Swap the reloadable parts of `new` into the running app, synchronously."""
    live = app[LIVE]
    old = live.config
    changed, needs_restart = differences(old, new)
    for hook in app[RELOAD_HOOKS]:
        hook(old, new)
    live.reconfigure(new)
    return ReloadReport(applied=True, changed=tuple(changed), needs_restart=tuple(needs_restart))


async def reload(
    app: web.Application, path: Path | None, env: Mapping[str, str] | None = None
) -> ReloadReport:
    """Re-read `path` (None: the built-in defaults) and apply it, or keep the old config.

    Everything it decides is logged; the report is for the caller's status line and tests.
    """
    shown = str(path) if path is not None else "<defaults>"
    try:
        # File reads (config, token file) off the event loop.
        new = await asyncio.to_thread(load_config, path, env)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("config_problem", file=problem.file, key=problem.key, problem=problem.message)
        log.error(
            "config_reload_failed",
            file=shown,
            problems=len(exc.problems),
            hint="the previous configuration stays in force; fix the file and reload again",
        )
        app[METRICS].reloaded(ok=False)
        return ReloadReport(applied=False, problems=tuple(str(p) for p in exc.problems))
    # Token values are secrets: the log says how many there are, never which.
    before = len(app[LIVE].config.auth.tokens)
    report = apply(app, new)
    app[METRICS].reloaded(ok=True)
    log.info(
        "config_reloaded",
        file=shown,
        changed=list(report.changed),
        tokens=len(new.auth.tokens),
        tokens_before=before,
    )
    if report.needs_restart:
        log.warning(
            "config_needs_restart",
            keys=list(report.needs_restart),
            hint="these keep their old values until alertd is restarted",
        )
    return report
