"""The `alertd` command: run the daemon, check a config file, run the demo."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from alertd import logs, version
from alertd.config import load_config, summary
from alertd.errors import ConfigError, StoreError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alertd",
        description="Turn monitoring check results into deduplicated, prioritised incidents.",
    )
    parser.add_argument("--version", action="version", version=f"alertd {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon (defaults: 127.0.0.1:8780, local SQLite)")
    run.add_argument("--config", type=Path, help="TOML config file (default: built-in defaults)")

    check = sub.add_parser("check-config", help="validate a config file and exit 0 or 1")
    check.add_argument("--config", type=Path, required=True, help="TOML config file to check")

    demo = sub.add_parser("demo", help="start a throw-away daemon and walk through what it does")
    demo.add_argument("--store", type=Path, help="SQLite file to use (default: a temporary one)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.config)
    if args.command == "run":
        return _run(args.config)
    if args.command == "demo":
        from alertd.demo import run_demo

        return asyncio.run(run_demo(args.store))
    raise AssertionError(args.command)  # argparse rejects anything else


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    # uvloop serves ~25% more single-result requests per second (README, "Performance").
    try:
        import uvloop
    except ImportError:  # not built for this platform: the standard loop works the same
        return asyncio.run
    return uvloop.run


def _check_config(path: Path) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    print(summary(config))
    return 0


def _run(path: Path | None) -> int:
    from alertd.daemon import run

    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    logs.configure(config.log.level)
    try:
        _event_loop_runner()(run(config))
    except StoreError as exc:
        print(f"alertd: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the port is taken
        print(f"alertd: cannot listen on {config.server.host}:{config.server.port}: {exc}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
