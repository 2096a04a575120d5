"""Nagios / Opsview macro sets (`NAGIOS_*`, docs/protocols.md 4) -> check results and notices. Pure.

A macro set is what a notification command, an `ocsp_command` / `ochp_command`, or an Opsview
notification method sees in its environment. `alertd notify` posts it as JSON to
`/api/v1/nagios`; a form body with the same names works too.

- `NAGIOS_NOTIFICATIONTYPE` PROBLEM / RECOVERY: a HARD check result (Nagios notifies only on
  HARD states and hard recoveries), reported as a change: notifications come only when the
  state changes (and as reminders), never for every check.
- ACKNOWLEDGEMENT, FLAPPING*, DOWNTIME*, CUSTOM: a notice (flags and an event, with author and
  comment). Nagios does not export whether an ack is sticky; it is taken as non-sticky, so a
  change of state ends it in alertd (a re-alert is safer than a silently kept ack).
- No notification type (OCSP/OCHP): a plain check result with its state type and attempts,
  part of a stream: the obsessive-compulsive processor runs after every check.

Opsview exports a fixed subset (no `*STATEID`, `MAX*ATTEMPTS`, perfdata, problem ids), so the
state comes from the state *name* and everything but host name and state is optional.
Host groups and service groups become the labels `hostgroups` / `servicegroups` (comma lists,
as Nagios gives them); custom variables become labels named like their macros, without
`NAGIOS_`: `NAGIOS__HOSTRACK` -> `_HOSTRACK`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from alertd.errors import InputError, ItemProblem
from alertd.model import (
    HOST_STATES,
    SERVICE_STATES,
    CheckResult,
    CheckState,
    Notice,
    NoticeKind,
    Reporting,
    StateType,
)
from connectors.plugin_output import MAX_TEXT, BadValue, name, state_from_code, unescape

SOURCE = "nagios"
PREFIX = "NAGIOS_"

NOTICES: Mapping[str, NoticeKind] = {
    "ACKNOWLEDGEMENT": NoticeKind.ACKNOWLEDGED,
    "FLAPPINGSTART": NoticeKind.FLAPPING_STARTED,
    "FLAPPINGSTOP": NoticeKind.FLAPPING_STOPPED,
    "FLAPPINGDISABLED": NoticeKind.FLAPPING_DISABLED,
    "DOWNTIMESTART": NoticeKind.DOWNTIME_STARTED,
    "DOWNTIMEEND": NoticeKind.DOWNTIME_ENDED,
    "DOWNTIMECANCELLED": NoticeKind.DOWNTIME_CANCELLED,
    "CUSTOM": NoticeKind.CUSTOM,
}
RESULTS = ("PROBLEM", "RECOVERY")
_SERVICE_NAMES = {s.value: s for s in SERVICE_STATES}
_HOST_NAMES = {s.value: s for s in HOST_STATES}
_T = TypeVar("_T")


def parse_payload(payload: Any, now: datetime, max_items: int) -> list[CheckResult | Notice]:
    """One macro set (an object) or an array of them; all-or-nothing."""
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        raise InputError("empty batch: send one macro object or a non-empty array")
    if len(items) > max_items:
        raise InputError(f"too many macro sets in one request: {len(items)} > {max_items}")
    parsed: list[CheckResult | Notice] = []
    problems: list[ItemProblem] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(ItemProblem(index, None, "expected an object of NAGIOS_* macros"))
            continue
        reader = _Reader(item, index)
        value = reader.parse(now)
        problems.extend(reader.problems)
        if value is not None:
            parsed.append(value)
    if problems:
        invalid = len({p.index for p in problems})
        noun = "macro set" if invalid == 1 else "macro sets"
        raise InputError(f"{invalid} invalid {noun}; nothing was stored", problems)
    return parsed


class _Reader:
    """Reads one macro set, collecting every problem rather than stopping at the first."""

    def __init__(self, macros: Mapping[str, Any], index: int) -> None:
        self.macros = macros
        self.index = index
        self.problems: list[ItemProblem] = []

    def get(self, macro: str) -> str:
        value = self.macros.get(PREFIX + macro, "")
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            self.problem(BadValue(PREFIX + macro, "expected a string"))
            return ""
        return value

    def problem(self, bad: BadValue) -> None:
        self.problems.append(ItemProblem(self.index, bad.field, bad.message))

    def read(self, parse: Callable[[], _T], default: _T) -> _T:
        try:
            return parse()
        except BadValue as bad:
            self.problem(bad)
            return default

    def parse(self, now: datetime) -> CheckResult | Notice | None:
        host = self.read(lambda: name(self.get("HOSTNAME"), PREFIX + "HOSTNAME"), "")
        service = self.get("SERVICEDESC").strip() or None  # empty in host notifications
        obj = "HOST" if service is None else "SERVICE"
        kind = self.get("NOTIFICATIONTYPE").strip().upper()
        at = self.read(lambda: _epoch(self.get("TIMET"), now, "TIMET"), now)
        if kind in NOTICES:
            author = self.get("NOTIFICATIONAUTHOR") or self.get(f"{obj}ACKAUTHOR")
            comment = self.get("NOTIFICATIONCOMMENT") or self.get(f"{obj}ACKCOMMENT")
            if self.problems:
                return None
            return Notice(NOTICES[kind], host, service, at, author.strip(), comment.strip(),
                          source=SOURCE)  # fmt: skip
        if kind and kind not in RESULTS:
            known = ", ".join((*RESULTS, *NOTICES))
            self.problem(BadValue(PREFIX + "NOTIFICATIONTYPE", f"{kind!r} is not one of {known}"))
        # The check's own time when Nagios gives it: the OCSP command and a notification of
        # the same check then carry the same time, and alertd counts that check once.
        checked = self.get(f"LAST{obj}CHECK").strip()
        # ASCII digits, not all zeros (0: never checked); isdigit() alone takes "²" too.
        if checked.isascii() and checked.isdigit() and checked.strip("0"):
            at = self.read(lambda: _epoch(checked, now, f"LAST{obj}CHECK"), at)
        state = self.read(lambda: self.state(obj), CheckState.UNKNOWN)
        state_type = StateType.HARD if kind else self.read(lambda: self.state_type(obj), None)
        attempt = self.read(lambda: _count(self.get(f"{obj}ATTEMPT"), f"{obj}ATTEMPT"), None)
        maximum = self.read(
            lambda: _count(self.get(f"MAX{obj}ATTEMPTS"), f"MAX{obj}ATTEMPTS"), None
        )
        if attempt is not None and maximum is not None:
            attempt = min(attempt, maximum)
        if self.problems:
            return None
        return CheckResult(
            host=host,
            service=service,
            state=state,
            timestamp=at,
            output=self.get(f"{obj}OUTPUT").strip()[:MAX_TEXT],
            long_output=unescape(self.get(f"LONG{obj}OUTPUT")).strip()[:MAX_TEXT],
            perfdata=self.get(f"{obj}PERFDATA").strip()[:MAX_TEXT],
            state_type=state_type,
            attempt=attempt,
            max_attempts=maximum,
            labels=self.labels(obj),
            source=SOURCE,
            reporting=Reporting.CHANGE if kind else Reporting.STREAM,
        )

    def state(self, obj: str) -> CheckState:
        """From the state name (Opsview has no *STATEID), else from the numeric id."""
        text = self.get(f"{obj}STATE").strip().upper()
        names = _HOST_NAMES if obj == "HOST" else _SERVICE_NAMES
        if text:
            state = names.get(text)
            if state is None:
                allowed = ", ".join(names)
                raise BadValue(f"{PREFIX}{obj}STATE", f"{text!r} is not one of {allowed}")
            return state
        code = self.get(f"{obj}STATEID").strip()
        if not code:
            raise BadValue(f"{PREFIX}{obj}STATE", f"required (or {PREFIX}{obj}STATEID)")
        return state_from_code(code, host=obj == "HOST", field=f"{PREFIX}{obj}STATEID")

    def state_type(self, obj: str) -> StateType | None:
        text = self.get(f"{obj}STATETYPE").strip().upper()
        if not text:
            return None
        if text not in ("SOFT", "HARD"):
            raise BadValue(f"{PREFIX}{obj}STATETYPE", f"{text!r} is not SOFT or HARD")
        return StateType(text)

    def labels(self, obj: str) -> dict[str, str]:
        labels: dict[str, str] = {}
        groups = self.get("HOSTGROUPNAMES") or self.get("HOSTGROUPNAME")  # Opsview: primary only
        if groups.strip():
            labels["hostgroups"] = groups.strip()
        if obj == "SERVICE":
            groups = self.get("SERVICEGROUPNAMES") or self.get("SERVICEGROUPNAME")
            if groups.strip():
                labels["servicegroups"] = groups.strip()
        custom = (f"{PREFIX}_HOST", f"{PREFIX}_SERVICE") if obj == "SERVICE" else (
            f"{PREFIX}_HOST",)  # fmt: skip
        for macro, value in self.macros.items():
            if macro.startswith(custom) and isinstance(value, str) and value.strip():
                labels[macro[len(PREFIX) :]] = value.strip()[:MAX_TEXT]
        return labels


def _epoch(text: str, now: datetime, macro: str) -> datetime:
    """An epoch macro (TIMET, LAST*CHECK) as the result's time (a spooled notification keeps
    the time it happened); never later than `now`, so a Nagios clock running ahead cannot push
    times into the future."""
    if not text.strip():
        return now
    try:
        at = datetime.fromtimestamp(int(text), UTC)
    except (ValueError, OverflowError, OSError):
        raise BadValue(PREFIX + macro, f"{text[:40]!r} is not epoch seconds") from None
    return min(at, now)


def _count(text: str, macro: str) -> int | None:
    if not text.strip():
        return None
    try:
        value = int(text)
    except ValueError:
        raise BadValue(PREFIX + macro, f"{text!r} is not an integer") from None
    if not 1 <= value <= 1000:
        raise BadValue(PREFIX + macro, f"{value} is out of range 1-1000")
    return value
