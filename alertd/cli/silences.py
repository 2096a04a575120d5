"""`alertd silences add|list|expire`: maintenance windows from the command line, over HTTP."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alertd.cli.apiclient import TOKEN_ENV, URL_ENV, ApiClient, ApiClientError, base_url, read_token
from alertd.cli.terminal import Safe, clean, operator


def add_parser(sub: Any) -> None:
    silences = sub.add_parser("silences", help="add, list or expire maintenance windows")
    silences.add_argument("--url", help=f"alertd's address (default ${URL_ENV}, else "
                          "http://127.0.0.1:8780)")  # fmt: skip
    silences.add_argument("--token-file", type=Path, help="API token file (else $ALERTD_TOKEN)")
    actions = silences.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="add a silence (a maintenance window)")
    add.add_argument("--host", help='host pattern: a glob like "web-*"')
    add.add_argument("--service", help="service pattern (a glob)")
    add.add_argument("--label", action="append", default=[], metavar="NAME=PATTERN",
                     help="label pattern, a glob (repeatable)")  # fmt: skip
    add.add_argument("--starts-at", help="RFC 3339 time (default now)")
    end = add.add_mutually_exclusive_group()
    end.add_argument("--ends-at", help="RFC 3339 time")
    end.add_argument("--duration", help='e.g. "2h", "1h30m"')
    add.add_argument("--author", help="who sets the window (default: $USER, else your login)")
    add.add_argument("--comment", required=True, help="why (shown on the incidents it holds)")
    add.add_argument("--weekly", metavar="DAYS@HH:MM/DURATION",
                     help="recurring, e.g. sat,sun@02:00/2h (local: --timezone)")  # fmt: skip
    add.add_argument("--timezone", default="UTC", help="of --weekly (default %(default)s)")

    listing = actions.add_parser("list", help="active and future silences")
    listing.add_argument("--all", action="store_true", help="expired ones too")

    expire = actions.add_parser("expire", help="end a silence now")
    expire.add_argument("id", type=int)
    # Also after the action, as `alertd incidents` takes them (SUPPRESS: not given there,
    # they keep what was given before the action, or the default).
    for action in (add, listing, expire):
        action.add_argument("--url", default=argparse.SUPPRESS, help="alertd's address")
        action.add_argument("--token-file", type=Path, default=argparse.SUPPRESS,
                            help="API token file (else $ALERTD_TOKEN)")  # fmt: skip


def main(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    out = Safe(sys.stdout)
    try:
        token = read_token(args.token_file, env.get(TOKEN_ENV))
        client = ApiClient(base_url(args.url, env), token)
        if args.action == "add":
            silence = client.call("POST", "/api/v1/silences", _body(args, env))
            out.write(f"silence {silence['id']} added ({silence['state']})\n")
        elif args.action == "list":
            query = "?all=1" if args.all else ""
            for silence in client.call("GET", f"/api/v1/silences{query}")["silences"]:
                out.write(_line(silence) + "\n")
        else:
            silence = client.call("DELETE", f"/api/v1/silences/{args.id}")
            out.write(f"silence {silence['id']} expired (ended {silence['ends_at']})\n")
    except (ApiClientError, OSError, ValueError) as exc:
        print(f"alertd silences: {clean(str(exc))}", file=sys.stderr)
        for detail in getattr(exc, "details", []):
            print(f"  {clean(str(detail.get('field')))}: {clean(str(detail.get('message')))}",
                  file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _body(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    author = args.author or operator(env)
    body: dict[str, Any] = {"author": author, "comment": args.comment}
    for name in ("host", "service", "starts_at", "ends_at", "duration"):
        if getattr(args, name):
            body[name] = getattr(args, name)
    if args.label:
        pairs = [label.partition("=") for label in args.label]
        if any(not sep for _, sep, _ in pairs):
            raise ValueError("--label must be NAME=PATTERN")
        body["labels"] = {name: pattern for name, _, pattern in pairs}
    if args.weekly:
        days, _, rest = args.weekly.partition("@")
        start, _, duration = rest.partition("/")
        body["recurring"] = {"days": days.split(","), "start": start, "duration": duration,
                             "timezone": args.timezone}  # fmt: skip
    return body


def _line(silence: dict[str, Any]) -> str:
    matchers = [f"{k}={silence[k]}" for k in ("host", "service") if silence.get(k)]
    matchers += [f"{k}={v}" for k, v in (silence.get("labels") or {}).items()]
    recurring = silence.get("recurring")
    if recurring:
        when = (f"weekly {','.join(recurring['days'])} {recurring['start']} "
                f"for {recurring['duration']} {recurring['timezone']}")  # fmt: skip
    else:
        when = f"{silence['starts_at']} .. {silence['ends_at'] or '(until ended)'}"
    return (
        f"{silence['id']:>5}  {silence['state']:<8} {' '.join(matchers):<30} {when}  "
        f"by {silence['author']}: {silence['comment']}"
    )
