"""`alertd incidents ...`: the daemon's incidents as tables and detail pages for a terminal,
and the actions people take on one (ack, unack, escalate).

Talks to a running daemon through its HTTP API (`alertd.cli.apiclient`); formatting only lives here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from alertd.cli.apiclient import TOKEN_ENV, ApiClient, ApiClientError, base_url, read_token
from alertd.cli.terminal import Safe, Writer, clean, operator

OUTPUT_WIDTH = 50


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    out = Safe(sys.stdout)
    try:
        client = ApiClient(base_url(args.url, env), read_token(args.token_file, env.get(TOKEN_ENV)))
        if args.action == "list":
            params: dict[str, str | int | None] = {
                "status": args.status,
                "priority": args.priority,
                "host": args.host,
                "limit": args.limit,
                "before": args.before,
            }
            return list_incidents(client, out, params=params, as_json=args.json)
        if args.action == "show":
            return show_incident(client, out, args.id, as_json=args.json)
        author = getattr(args, "author", None) or operator(env)
        path = f"/api/v1/incidents/{args.id}"
        if args.action == "ack":
            body = {"author": author, "comment": args.comment}
            answer = client.call("POST", f"{path}/ack", body)
        elif args.action == "unack":
            answer = client.call("DELETE", f"{path}/ack")
        else:
            body = {"author": author, "reason": args.reason}
            answer = client.call("POST", f"{path}/escalate", body)
        return print_after_action(out, answer, as_json=args.json)
    except ApiClientError as exc:
        print(f"alertd: {clean(exc.message)}", file=sys.stderr)
        return 1


def list_incidents(
    client: ApiClient, out: Writer, *, params: dict[str, str | int | None], as_json: bool
) -> int:
    body = client.get("/api/v1/incidents", params)
    if as_json:
        json.dump(body, out, indent=2)
        out.write("\n")
        return 0
    incidents: list[dict[str, Any]] = body["incidents"]
    if not incidents:
        out.write("no incidents match\n")
        return 0
    out.write(format_table(incidents))
    if body.get("next_before") is not None:
        out.write(f"more: add --before {body['next_before']}\n")
    return 0


def show_incident(client: ApiClient, out: Writer, incident_id: int, *, as_json: bool) -> int:
    body = client.get(f"/api/v1/incidents/{incident_id}")
    if as_json:
        json.dump(body, out, indent=2)
        out.write("\n")
        return 0
    out.write(format_detail(body))
    return 0


COLUMNS = (
    "ID", "PRIORITY", "STATUS", "STATE", "KEY", "LAST SEEN", "COUNT", "TICKET", "FLAGS", "OUTPUT",
)  # fmt: skip


def format_table(incidents: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        (
            str(i["id"]),
            i["priority"],
            i["status"],
            f"{i['check_state']}/{i['state_type']}",
            i["key"],
            short_time(i["last_seen"]),
            str(i["occurrences"]),
            f"#{i['ticket']['id']}" if i.get("ticket") else "-",
            ",".join(_flags(i)) or "-",
            one_line(i.get("last_output") or "", OUTPUT_WIDTH),
        )
        for i in incidents
    ]
    widths = [max(len(r[n]) for r in [COLUMNS, *rows]) for n in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [COLUMNS, *rows]]  # fmt: skip
    return "\n".join(lines) + "\n"


def format_detail(i: Mapping[str, Any]) -> str:
    rule = i.get("priority_rule") or "default impact"
    fields: list[tuple[str, Any]] = [
        ("status", f"{i['status']} ({i['check_state']}, {i['state_type']})"),
        ("priority", f"{i['priority']} = impact {i['impact']} ({rule}) x urgency {i['urgency']}"),
        ("occurrences", i["occurrences"]),
        ("first seen", i["first_seen"]),
        ("last seen", i["last_seen"]),
        ("opened at", i.get("opened_at")),
        ("recovery due", i.get("recovery_due")),
        ("resolved at", i.get("resolved_at")),
        ("reopen until", i.get("reopen_until")),
        ("ticket", _ticket(i)),
        ("reopened", _times(i.get("reopen_count") or 0)),
        ("flapping", _flapping(i)),
        ("suppressed", (i.get("suppressed_reason") or "yes") if i.get("suppressed") else None),
        ("stale", _stale(i)),
        ("acknowledged", _ack(i)),
        ("output", i.get("last_output") or None),
        ("long output", i.get("long_output") or None),
        ("perfdata", i.get("perfdata") or None),
        ("labels", ", ".join(f"{k}={v}" for k, v in (i.get("labels") or {}).items()) or None),
    ]
    lines = [f"incident {i['id']}: {i['key']}"]
    lines += [f"  {name:<13} {value}" for name, value in fields if value is not None]
    events = i.get("events") or []
    lines.append(f"events ({len(events)}):")
    for e in events:
        detail = ", ".join(f"{k}={v}" for k, v in e["detail"].items() if k != "output")
        lines.append(f"  {e['at']}  {e['kind']:<17} {detail}".rstrip())
    return "\n".join(lines) + "\n"


def _flags(i: Mapping[str, Any]) -> list[str]:
    names = ("acknowledged", "flapping", "suppressed", "stale")
    return [("ack" if n == "acknowledged" else n) for n in names if i.get(n)]


def _ticket(i: Mapping[str, Any]) -> str | None:
    ticket = i.get("ticket")
    return f"#{ticket['id']} {ticket['url']}" if ticket else None


def _times(count: int) -> str | None:
    return None if not count else "once" if count == 1 else f"{count} times"


def _stale(i: Mapping[str, Any]) -> str | None:
    if not i.get("stale"):
        return None
    return f"yes (no result since {i['last_seen']})"


def _flapping(i: Mapping[str, Any]) -> str | None:
    if not i.get("flapping"):
        return None
    return f"yes ({i['percent_state_change']:.1f}% state change)"


def _ack(i: Mapping[str, Any]) -> str | None:
    if not i.get("acknowledged"):
        return None
    by = f" by {i['ack_author']}" if i.get("ack_author") else ""
    comment = f": {i['ack_comment']}" if i.get("ack_comment") else ""
    return f"yes{by}{comment}"


def short_time(text: str) -> str:
    # "2026-01-05T09:00:00Z" -> "2026-01-05 09:00:00Z": readable, still exact and sortable.
    return text.replace("T", " ")


def one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def print_after_action(out: Writer, incident: Mapping[str, Any], *, as_json: bool) -> int:
    """After ack/unack/escalate: the incident as it now stands."""
    if as_json:
        json.dump(incident, out, indent=2)
        out.write("\n")
        return 0
    ack = "acknowledged" if incident.get("acknowledged") else "not acknowledged"
    nxt = incident.get("next_escalation_at") or "none"
    out.write(
        f"incident {incident['id']} {incident['key']}: {incident['status']}, {ack}, "
        f"escalation level {incident.get('escalation_level', 0)}, next escalation {nxt}\n"
    )
    return 0
