"""`alertd outbox`: list ticket operations (waiting, sent, dead-lettered) and re-drive dead
letters, through the daemon's HTTP API."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from alertd.cli.apiclient import TOKEN_ENV, ApiClient, ApiClientError, read_token
from alertd.cli.incidents import OUTPUT_WIDTH, one_line, short_time


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        client = ApiClient(args.url, read_token(args.token_file, env.get(TOKEN_ENV)))
        if args.action == "list":
            params: dict[str, str | int | None] = {"state": args.state, "limit": args.limit}
            answer = client.get("/api/v1/outbox", params)
            return print_outbox(sys.stdout, answer, as_json=args.json)
        path = "/api/v1/outbox/retry" if args.all else f"/api/v1/outbox/{args.id}/retry"
        answer = client.call("POST", path)
        requeued = answer["requeued"]
        print(f"requeued {len(requeued)} operation(s): {', '.join(map(str, requeued)) or '-'}")
        for skipped in answer.get("skipped", []):
            print(f"not requeued {skipped['id']}: {skipped['reason']}")
        return 0
    except ApiClientError as exc:
        print(f"alertd: {exc.message}", file=sys.stderr)
        return 1


def print_outbox(out: TextIO, body: Mapping[str, Any], *, as_json: bool) -> int:
    if as_json:
        json.dump(body, out, indent=2)
        out.write("\n")
        return 0
    counts = body["counts"]
    out.write(f"pending {counts['pending']}, done {counts['done']}, dead {counts['dead']}\n")
    for op in body["operations"]:
        error = one_line(op.get("last_error") or "", OUTPUT_WIDTH)
        out.write(
            f"{op['id']:>6}  {op['state']:<7} {op['op']:<6} incident {op['incident_id']:<6} "
            f"attempts {op['attempts']:<3} next {short_time(op['next_attempt_at'])}  {error}\n"
        )
    return 0
