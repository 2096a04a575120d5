"""`alertd incidents ...` and `alertd outbox ...`: the daemon's incidents and ticket operations
as tables and detail pages for a terminal.

Talks to a running daemon through its HTTP API (`alertd.apiclient`); formatting only lives here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from alertd.apiclient import ApiClient

OUTPUT_WIDTH = 50


def list_incidents(
    client: ApiClient, out: TextIO, *, params: dict[str, str | int | None], as_json: bool
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


def show_incident(client: ApiClient, out: TextIO, incident_id: int, *, as_json: bool) -> int:
    body = client.get(f"/api/v1/incidents/{incident_id}")
    if as_json:
        json.dump(body, out, indent=2)
        out.write("\n")
        return 0
    out.write(format_detail(body))
    return 0


COLUMNS = ("ID", "PRIORITY", "STATUS", "STATE", "KEY", "LAST SEEN", "COUNT", "FLAGS", "OUTPUT")


def format_table(incidents: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        (
            str(i["id"]),
            i["priority"],
            i["status"],
            f"{i['check_state']}/{i['state_type']}",
            i["key"],
            _short_time(i["last_seen"]),
            str(i["occurrences"]),
            ",".join(_flags(i)) or "-",
            _one_line(i.get("last_output") or "", OUTPUT_WIDTH),
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
        ("reopened", f"{i['reopen_count']} times" if i.get("reopen_count") else None),
        ("flapping", _flapping(i)),
        ("suppressed", (i.get("suppressed_reason") or "yes") if i.get("suppressed") else None),
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
    names = ("acknowledged", "flapping", "suppressed")
    return [("ack" if n == "acknowledged" else n) for n in names if i.get(n)]


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


def _short_time(text: str) -> str:
    # "2026-01-05T09:00:00Z" -> "2026-01-05 09:00:00Z": readable, still exact and sortable.
    return text.replace("T", " ")


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def print_after_action(out: TextIO, incident: Mapping[str, Any], *, as_json: bool) -> int:
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


def print_outbox(out: TextIO, body: Mapping[str, Any], *, as_json: bool) -> int:
    if as_json:
        json.dump(body, out, indent=2)
        out.write("\n")
        return 0
    counts = body["counts"]
    out.write(f"pending {counts['pending']}, done {counts['done']}, dead {counts['dead']}\n")
    for op in body["operations"]:
        error = _one_line(op.get("last_error") or "", OUTPUT_WIDTH)
        out.write(
            f"{op['id']:>6}  {op['state']:<7} {op['op']:<6} incident {op['incident_id']:<6} "
            f"attempts {op['attempts']:<3} next {_short_time(op['next_attempt_at'])}  {error}\n"
        )
    return 0
