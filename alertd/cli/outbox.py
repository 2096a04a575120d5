"""`alertd outbox`: list ticket operations (waiting, sent, dead-lettered) and re-drive dead
letters, through the daemon's HTTP API."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from typing import Any

from alertd.cli.apiclient import TOKEN_ENV, ApiClient, ApiClientError, base_url, read_token
from alertd.cli.incidents import one_line, short_time
from alertd.cli.terminal import Safe, Writer, clean

ERROR_WIDTH = 100
# "description" / "message" values of a helpdesk answer whose JSON was cut short.
_SAID = re.compile(r'"(?:description|message)":\s*"((?:[^"\\]|\\.)*)"')


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    out = Safe(sys.stdout)
    try:
        client = ApiClient(base_url(args.url, env), read_token(args.token_file, env.get(TOKEN_ENV)))
        if args.action == "list":
            params: dict[str, str | int | None] = {"state": args.state, "limit": args.limit}
            answer = client.get("/api/v1/outbox", params)
            return print_outbox(out, answer, as_json=args.json)
        path = "/api/v1/outbox/retry" if args.all else f"/api/v1/outbox/{args.id}/retry"
        answer = client.call("POST", path)
        requeued = answer["requeued"]
        out.write(f"requeued {len(requeued)} operation(s): "
                  f"{', '.join(map(str, requeued)) or '-'}\n")  # fmt: skip
        for skipped in answer.get("skipped", []):
            out.write(f"not requeued {skipped['id']}: {skipped['reason']}\n")
        return 0
    except ApiClientError as exc:
        print(f"alertd: {clean(exc.message)}", file=sys.stderr)
        return 1


def helpdesk_message(error: str) -> str:
    """The helpdesk's own words in a stored error: `create_ticket: helpdesk refused (400)
    {"description": "Validation failed", "errors": [{"field": "type", "message": ...}]}` reads
    `create_ticket: helpdesk refused (400): Validation failed; type: ...`."""
    head, brace, tail = error.partition("{")
    if not brace:
        return error
    try:
        body = json.loads(brace + tail)
    except ValueError:  # cut short when stored: pick out what it says
        words = _SAID.findall(brace + tail)
        return f"{head.rstrip()}: {'; '.join(words)}" if words else error
    if not isinstance(body, dict):
        return error
    said = [str(body[k]) for k in ("description", "message", "error") if body.get(k)]
    for item in body.get("errors") or []:
        if isinstance(item, dict):
            where = item.get("field") or item.get("code") or ""
            said.append(f"{where}: {item.get('message', '')}".strip(": "))
    return f"{head.rstrip()}: {'; '.join(said)}" if said else error


def print_outbox(out: Writer, body: Mapping[str, Any], *, as_json: bool) -> int:
    if as_json:
        json.dump(body, out, indent=2)
        out.write("\n")
        return 0
    counts = body["counts"]
    out.write(f"pending {counts['pending']}, done {counts['done']}, dead {counts['dead']}\n")
    for op in body["operations"]:
        error = one_line(helpdesk_message(op.get("last_error") or ""), ERROR_WIDTH)
        out.write(
            f"{op['id']:>6}  {op['state']:<7} {op['op']:<6} incident {op['incident_id']:<6} "
            f"attempts {op['attempts']:<3} next {short_time(op['next_attempt_at'])}  {error}\n"
        )
    return 0
