"""The layers, checked on the source: no import circle, dependencies point inward, and the
command Nagios runs per notification stays on the standard library.

Read with `ast`, so every import counts: module level, inside functions, under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from tests.support import ROOT

PACKAGES = ("alertd", "connectors")
# The pure core and the one writer: they know the model, never HTTP, the CLI, the sandbox or
# a concrete helpdesk (the outbox talks to a HelpdeskClient Protocol).
CORE = (
    "alertd.agent_actions", "alertd.batch", "alertd.clock", "alertd.codec", "alertd.durations",
    "alertd.cache", "alertd.gauges", "alertd.routing", "alertd.host_index", "alertd.inbox",
    "alertd.inbox_file", "alertd.worker",
    "alertd.engine", "alertd.errors", "alertd.escalation", "alertd.flapping", "alertd.heartbeats",
    "alertd.jsontext", "alertd.lifecycle", "alertd.metrics", "alertd.model", "alertd.nagios_ack",
    "alertd.notices",
    "alertd.outbox", "alertd.policy", "alertd.priority", "alertd.ratelimit", "alertd.silences",
    "alertd.staleness", "alertd.store", "alertd.tickets", "alertd.watch",
    "alertd.store_pg", "alertd.journal",
)  # fmt: skip
OUTER = ("alertd.http", "alertd.cli", "alertd.sandbox", "alertd.app", "alertd.daemon",
         "alertd.reload", "alertd.ui", "connectors")  # fmt: skip
# Pure: decisions only, no I/O libraries at all (only the standard library and each other).
PURE = ("alertd.agent_actions", "alertd.durations", "alertd.escalation", "alertd.flapping",
        "alertd.gauges",
        "alertd.lifecycle", "alertd.model", "alertd.notices", "alertd.policy", "alertd.priority",
        "alertd.routing",
        "alertd.silences", "alertd.staleness", "alertd.tickets")  # fmt: skip


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imported(name: str) -> Iterator[str]:
    """Every module `name` imports (project modules by their full name, others top-level)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1],
                                 *([base] if base else [])])  # fmt: skip
            yield base
            # `from alertd import codec` imports the module alertd.codec.
            yield from (f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES)


@cache
def imports(name: str) -> frozenset[str]:
    return frozenset(_imported(name))


def project_imports(name: str) -> set[str]:
    return {m for m in imports(name) if m in MODULES and m != name}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_no_import_circle() -> None:
    """No module reaches itself through its imports (function-level ones included)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for dep in sorted(project_imports(name)):
            if state.get(dep) == 1:
                circle = [*path[path.index(dep) :], dep]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[name] = 2

    for name in sorted(MODULES):
        if name not in state:
            visit(name)


def test_core_imports_no_outer_layer() -> None:
    """The core never imports HTTP routes, the CLI, the sandbox, the composition root or a
    connector: those depend on the core, not the other way round."""
    assert set(CORE) <= set(MODULES), set(CORE) - set(MODULES)
    wrong = {
        f"{name} imports {dep}" for name in CORE for dep in imports(name) if _within(dep, OUTER)
    }
    assert not wrong, sorted(wrong)


def test_pure_core_uses_only_the_standard_library() -> None:
    """Lifecycle, priority, tickets and the rest decide; they do no I/O, so they import
    neither aiohttp nor SQLite nor any other library outside the standard one."""
    allowed = (*PURE, "alertd.errors", "alertd.config", "alertd")
    wrong = set()
    for name in PURE:
        for dep in imports(name):
            top = dep.partition(".")[0]
            if top in PACKAGES:
                if not _within(dep, allowed):
                    wrong.add(f"{name} imports {dep}")
            elif top not in sys.stdlib_module_names and top != "__future__":
                wrong.add(f"{name} imports {dep}")
    assert not wrong, sorted(wrong)


def _with_packages(name: str) -> set[str]:
    """`name` and the packages Python imports before it (alertd, alertd.cli, ...)."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(MODULES)


def test_notify_imports_only_the_standard_library() -> None:
    """`alertd notify` runs once per Nagios notification, as the nagios user, under a timeout:
    everything it loads (its package's __init__ files included) is standard library."""
    seen: set[str] = set()
    todo = _with_packages("alertd.cli.notify")
    outside = set()
    while todo:
        name = todo.pop()
        seen.add(name)
        for dep in imports(name):
            top = dep.partition(".")[0]
            if top in PACKAGES:
                if dep in MODULES:
                    todo |= _with_packages(dep) - seen
            elif top not in sys.stdlib_module_names and top != "__future__":
                outside.add(f"{name} imports {dep}")
    assert not outside, sorted(outside)
    assert "alertd.cli.spool" in seen  # the walk did follow project imports


def test_the_cli_entry_point_loads_no_event_loop_or_database_up_front() -> None:
    """`alertd notify` goes through `alertd.cli.main`, which imports every subcommand's module:
    those load asyncio, sqlite3 and the stores only when their command runs (each costs
    milliseconds per Nagios notification, under load many more)."""
    code = "import sys, alertd.cli.main; print(sorted({'asyncio', 'sqlite3'} & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]"
