"""The `alertd` command: run the daemon, check a config file, run the demo, notify, silences.

`alertd notify` is exec'd by Nagios once per notification, so this module imports the heavy
parts (asyncio, structlog, the config loader) only inside the commands that need them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from alertd.errors import ConfigError, StoreError


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("alertd")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alertd",
        description="Turn monitoring check results into deduplicated, prioritised incidents.",
    )
    parser.add_argument("--version", action="version", version=f"alertd {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon (defaults: 127.0.0.1:8780, local SQLite)")
    run.add_argument("--config", type=Path, help="TOML config file (default: built-in defaults)")

    check = sub.add_parser("check-config", help="validate a config file and exit 0 or 1")
    check.add_argument("--config", type=Path, required=True, help="TOML config file to check")

    demo = sub.add_parser("demo", help="start a throw-away daemon and walk through what it does")
    demo.add_argument("--store", type=Path, help="SQLite file to use (default: a temporary one)")
    sub.add_parser(
        "notify", add_help=False, help="send a Nagios/Opsview notification (see: notify --help)"
    )

    from alertd import silence_cli

    silence_cli.add_parser(sub)

    sandbox = sub.add_parser(
        "sandbox",
        help="run a local Freshdesk-compatible helpdesk, to try alertd without an account",
        description="A local helpdesk speaking Freshdesk API v2 and validating like it (auth, "
        "content types, fields, enums, rate limit). Point [helpdesk] url at it; the API key is "
        "the value of $ALERTD_SANDBOX_API_KEY (default sandbox-key).",
    )
    sandbox.add_argument(
        "--listen", default="127.0.0.1:8781", help="host:port (default %(default)s)"
    )
    sandbox.add_argument(
        "--rate-limit", type=int, default=200, help="requests per minute (default %(default)s)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["notify"]:  # its own parser, and nothing heavy imported
        from alertd import notify

        return notify.main(argv[1:], os.environ)
    args = build_parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.config)
    if args.command == "run":
        return _run(args.config)
    if args.command == "demo":
        import asyncio

        from alertd.demo import run_demo

        return asyncio.run(run_demo(args.store))
    if args.command == "sandbox":
        return _sandbox(args.listen, args.rate_limit)
    if args.command == "silences":
        from alertd import silence_cli

        return silence_cli.main(args)
    raise AssertionError(args.command)  # argparse rejects anything else


def _sandbox(listen: str, rate_limit: int) -> int:
    import asyncio
    import contextlib

    from connectors.sandbox import SandboxOptions, serve

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        print(f"alertd sandbox: --listen must be host:port, got {listen!r}", file=sys.stderr)
        return 2
    key = os.environ.get("ALERTD_SANDBOX_API_KEY", "sandbox-key")
    options = SandboxOptions(api_key=key, rate_limit_per_minute=rate_limit)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host.strip("[]"), int(port), options))
    return 0


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    import asyncio

    # uvloop serves ~25% more single-result requests per second (README, "Performance").
    try:
        import uvloop
    except ImportError:  # not built for this platform: the standard loop works the same
        return asyncio.run
    return uvloop.run


def _check_config(path: Path) -> int:
    from alertd.config import load_config, summary

    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    print(summary(config))
    return 0


def _run(path: Path | None) -> int:
    from alertd import logs
    from alertd.config import load_config
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
