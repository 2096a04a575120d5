"""The `alertd` command: run the daemon, check a config file, query incidents, run the demo,
notify, silences, run the sandbox helpdesk.

Every subcommand has a --help written for the person who runs Nagios: what it does, what it
needs, an example. Commands that query a running daemon use its HTTP API (`alertd.cli.apiclient`).
`alertd notify` is exec'd by Nagios once per notification, so this module imports the heavy
parts (asyncio, structlog, the config loader) only inside the commands that need them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from alertd import version
from alertd.cli import incidents, migrate, outbox, silences
from alertd.cli.apiclient import DEFAULT_URL, TOKEN_ENV, URL_ENV
from alertd.cli.terminal import quiet_broken_pipe
from alertd.errors import ConfigError, StoreError

_FORMATTER = argparse.RawDescriptionHelpFormatter

RUN_HELP = """\
Run the alertd daemon in the foreground until SIGTERM or Ctrl-C.

It listens for check results over HTTP (by default on 127.0.0.1:8780), folds repeats of the
same host/service problem into one incident, and keeps incidents in a local SQLite file.
Logs go to stderr: JSON lines when not on a terminal (journald), readable text on one.

Signals: SIGTERM/SIGINT stop cleanly (nothing accepted is lost); SIGHUP re-reads the config
file (priority rules, lifecycle timers, tokens) and keeps the old one if the new has errors.
Under systemd it reports readiness and watchdog pings (Type=notify; see the README).

examples:
  alertd run --config /etc/alertd/alertd.toml
  alertd run --listen 0.0.0.0:8790          # no config file needed to change the port
"""

CHECK_HELP = """\
Check a config file without starting anything, like `nagios -v nagios.cfg`.

Prints a one-line summary and exits 0, or prints every problem (file, dotted key, reason)
and exits 1. Run it before `systemctl reload alertd`.

With --online it also asks the configured helpdesk, with the configured key: the key works
(and which agent it is), the ticket type, source, groups and agents named in [helpdesk], its
rules and [escalation] exist, custom fields exist (exact names) with allowed values, no field
the account requires on create or closure is left out, and the account's rate limit. Only
reads (GETs, a handful of calls).

examples:
  alertd check-config --config /etc/alertd/alertd.toml
  alertd check-config --config /etc/alertd/alertd.toml --online
"""

INCIDENTS_HELP = """\
Look at the incidents of a running alertd.

An incident is one problem on one host or host/service, from its first non-OK result to its
confirmed recovery; repeats are counted on it, not raised again. These commands ask the daemon
over HTTP (--url); when it requires a token, give it with --token-file or $ALERTD_TOKEN.
"""

LIST_HELP = """\
List incidents, newest first, one per line: id, priority, status, check state (SOFT/HARD),
host/service, when last seen, how many problem results, ticket, flags (ack, flapping,
suppressed, stale), plugin output.

examples:
  alertd incidents list                         # the 100 newest
  alertd incidents list --status open --priority urgent
  alertd incidents list --host db-01 --json     # raw JSON for scripts
"""

SHOW_HELP = """\
Show one incident in full: status, priority and why (impact rule x urgency), timers,
its ticket (id and link), flags (acknowledged, flapping, suppressed, stale), plugin output,
and its audit trail of events.

example:
  alertd incidents show 42
"""

DEMO_HELP = """\
Start a throw-away daemon on loopback and feed it a scripted morning of check results, printing
what alertd makes of them. Touches nothing outside a temporary directory.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alertd",
        description="Turn monitoring check results into deduplicated, prioritised incidents.",
    )
    parser.add_argument("--version", action="version", version=f"alertd {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon (defaults: 127.0.0.1:8780, local SQLite)",
                         description=RUN_HELP, formatter_class=_FORMATTER)  # fmt: skip
    run.add_argument("--config", type=Path, help="TOML config file (default: built-in defaults)")
    run.add_argument(
        "--listen", metavar="HOST:PORT",
        help="where to listen, over server.listen (e.g. 0.0.0.0:8780, [::1]:8780)",
    )  # fmt: skip

    check = sub.add_parser("check-config", help="validate a config file and exit 0 or 1",
                           description=CHECK_HELP, formatter_class=_FORMATTER)  # fmt: skip
    check.add_argument("--config", type=Path, required=True, help="TOML config file to check")
    check.add_argument(
        "--online", action="store_true",
        help="also check it against the helpdesk account, with its key (read-only)",
    )  # fmt: skip

    incidents = sub.add_parser("incidents", help="list, show, ack or escalate incidents",
                               description=INCIDENTS_HELP, formatter_class=_FORMATTER)  # fmt: skip
    inc_sub = incidents.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = inc_sub.add_parser("list", help="incidents, newest first, one per line",
                                 description=LIST_HELP, formatter_class=_FORMATTER)  # fmt: skip
    listing.add_argument("--status", choices=("pending", "open", "recovering", "resolved"))
    listing.add_argument("--priority", choices=("urgent", "high", "medium", "low"))
    listing.add_argument("--host", help="only incidents of this host (exact name)")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (1-1000)")
    listing.add_argument("--before", type=int, metavar="ID", help="the page after incident ID")
    show = inc_sub.add_parser("show", help="one incident with its audit trail",
                              description=SHOW_HELP, formatter_class=_FORMATTER)  # fmt: skip
    show.add_argument("id", type=int, help="incident id (first column of `incidents list`)")
    ack = inc_sub.add_parser(
        "ack", help="acknowledge: someone is on it (stops the escalation clock)",
        description="Acknowledge an incident, as Nagios's 'Acknowledge this problem' does: "
        "its ticket gets a note and escalation stops until the ack is withdrawn (unack) or the "
        "incident resolves.\n\nexample:\n  alertd incidents ack 42 --comment 'disk ordered'",
        formatter_class=_FORMATTER,
    )  # fmt: skip
    ack.add_argument("id", type=int, help="incident id")
    ack.add_argument("--author", help="who (default: $USER)")
    ack.add_argument("--comment", default="", help="what is being done")
    unack = inc_sub.add_parser("unack", help="withdraw an acknowledgement")
    unack.add_argument("id", type=int, help="incident id")
    escalate = inc_sub.add_parser(
        "escalate", help="escalate by hand now (relationship or customer escalation)",
        description="Carry out the incident's next escalation level now (group, agent, "
        "priority, note), with the reason on the ticket.\n\nexample:\n"
        "  alertd incidents escalate 42 --reason 'customer called the director'",
        formatter_class=_FORMATTER,
    )  # fmt: skip
    escalate.add_argument("id", type=int, help="incident id")
    escalate.add_argument("--reason", required=True, help="why, for the ticket and the audit")
    escalate.add_argument("--author", help="who (default: $USER)")
    for command in (listing, show, ack, unack, escalate):
        _client_options(command)

    outbox = sub.add_parser(
        "outbox", help="ticket operations waiting, sent or dead-lettered; re-drive dead ones",
        description="The durable queue of helpdesk operations. A 'dead' operation was refused "
        "by the helpdesk (e.g. 400: a field the account does not accept); fix the cause, then "
        "retry it.\n\nexamples:\n  alertd outbox list --state dead\n"
        "  alertd outbox retry 17\n  alertd outbox retry --all",
        formatter_class=_FORMATTER,
    )  # fmt: skip
    out_sub = outbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    olist = out_sub.add_parser("list", help="operations, newest first")
    olist.add_argument("--state", choices=("pending", "done", "dead"))
    olist.add_argument("--limit", type=int, default=50, help="at most this many (1-1000)")
    retry = out_sub.add_parser(
        "retry", help="send a dead-lettered operation again, or a waiting one now (--all: every "
        "dead letter)",
    )  # fmt: skip
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", type=int, nargs="?", help="one operation id (dead or pending)")
    which.add_argument("--all", action="store_true", help="every dead letter")
    for command in (olist, retry):
        _client_options(command)

    demo = sub.add_parser("demo", help="start a throw-away daemon and walk through what it does",
                          description=DEMO_HELP, formatter_class=_FORMATTER)  # fmt: skip
    demo.add_argument("--store", type=Path, help="SQLite file to use (default: a temporary one)")

    sub.add_parser(
        "notify", add_help=False, help="send a Nagios/Opsview notification (see: notify --help)"
    )

    silences.add_parser(sub)
    migrate.add_parser(sub)

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
    sandbox.add_argument(
        "--flavour",
        choices=("freshdesk", "freshservice"),
        default="freshdesk",
        help="which product's API to play (default %(default)s)",
    )
    sandbox.add_argument(
        "--act-late",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="play a slow helpdesk: every create, update and note takes effect SECONDS after it "
        "arrived, then is answered, even if the client has gone (default %(default)s)",
    )
    return parser


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"where alertd listens (default: ${URL_ENV}, else "
                        f"{DEFAULT_URL})")  # fmt: skip
    parser.add_argument(
        "--token-file",
        type=Path,
        help=f"file holding the API token (first line); default: ${TOKEN_ENV} if set",
    )
    parser.add_argument("--json", action="store_true", help="print the API's JSON instead")


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point; `env` is the process environment (tests pass their own)."""
    env = os.environ if env is None else env
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["notify"]:  # its own parser, and nothing heavy imported
        from alertd.cli import notify

        return notify.main(argv[1:], env)
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args, env)
    except BrokenPipeError:  # `alertd outbox list | head`: the reader has all it wanted
        quiet_broken_pipe()
        return 1


def _dispatch(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.command == "check-config":
        return _check_config(args.config, args.online, env)
    if args.command == "run":
        return _run(args.config, args.listen, env)
    if args.command == "incidents":
        return incidents.run(args, env)
    if args.command == "outbox":
        return outbox.run(args, env)
    if args.command == "demo":
        import asyncio

        from alertd.cli.demo import run_demo

        return asyncio.run(run_demo(args.store))
    if args.command == "sandbox":
        return _sandbox(args.listen, args.rate_limit, env, args.flavour, args.act_late)
    if args.command == "silences":
        return silences.main(args, env)
    if args.command == "migrate":
        return migrate.main(args, env)
    raise AssertionError(args.command)  # argparse rejects anything else


def _sandbox(
    listen: str,
    rate_limit: int,
    env: Mapping[str, str],
    flavour: str = "freshdesk",
    act_late: float = 0.0,
) -> int:
    import asyncio
    import contextlib
    import time

    from alertd.sandbox import SandboxOptions, serve

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        print(f"alertd sandbox: --listen must be host:port, got {listen!r}", file=sys.stderr)
        return 2
    key = env.get("ALERTD_SANDBOX_API_KEY", "sandbox-key")
    if not 1 <= rate_limit <= 60_000:
        print("alertd sandbox: --rate-limit must be 1-60000 per minute", file=sys.stderr)
        return 2
    if not 0 <= act_late <= 3600:
        print("alertd sandbox: --act-late must be 0-3600 seconds", file=sys.stderr)
        return 2
    # Ticket ids from the clock: a daemon's incident -> ticket links stay right across restarts.
    first = SandboxOptions.ids_from_clock(time.time())
    options = SandboxOptions(
        api_key=key,
        rate_limit_per_minute=rate_limit,
        flavour=flavour,
        first_ticket_id=first,
        act_late=act_late,
    )
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


# Allocations of container objects between two young collections of the cyclic GC (CPython's
# default is 700). A request allocates a few hundred (aiohttp's request, its task, futures,
# the result), nearly all freed by reference counting as it ends: at 700 the daemon ran a
# young collection every few requests, ~6% of the event loop's time with one result per
# request (bench/README.md, "One result per request: the inbox and the writer"). Garbage
# cycles wait a little longer to be collected; memory does not grow by more than that.
GC_YOUNG_THRESHOLD = 20_000


def _tune_gc() -> None:
    import gc

    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def _check_config(path: Path, online: bool, env: Mapping[str, str]) -> int:
    from alertd.config import load_config, summary

    try:
        config = load_config(path, env)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    print(summary(config))
    if not online:
        return 0
    if config.helpdesk is None:
        print("online: no [helpdesk] table, nothing to check")
        return 0
    import asyncio

    from alertd.cli.online_check import check_online

    report = asyncio.run(check_online(config))
    for fact in report.facts:
        print(f"online: {fact}")
    for problem in report.problems:
        print(problem, file=sys.stderr)
    return 1 if report.problems else 0


def _run(path: Path | None, listen: str | None, env: Mapping[str, str]) -> int:
    import dataclasses

    from prometheus_client import disable_created_metrics

    from alertd import logs
    from alertd.config import load_config
    from alertd.config.server import _parse_listen
    from alertd.daemon import run

    try:
        config = load_config(path, env)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    if listen is not None:
        try:
            host, port = _parse_listen(listen)
        except ValueError as exc:
            print(f"alertd run: --listen: {exc}", file=sys.stderr)
            return 2
        server = dataclasses.replace(config.server, host=host, port=port)
        config = dataclasses.replace(config, server=server)
    logs.configure(config.log.level)
    # The *_created series double the series count and no dashboard of ours reads them.
    disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client
    _tune_gc()
    try:
        _event_loop_runner()(run(config, env))
    except StoreError as exc:
        print(f"alertd: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the port is taken
        print(f"alertd: cannot listen on {config.server.host}:{config.server.port}: {exc}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0
