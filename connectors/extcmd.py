"""Nagios external command lines (docs/protocols.md 3) -> check results and notices. Pure.

Used by NRDP's `submitcmd`. Supported: the passive result commands, and the acknowledgement
commands, which a Nagios admin would also send this way:

    [1767261600] PROCESS_SERVICE_CHECK_RESULT;<host>;<service>;<code>;<output>
    PROCESS_HOST_CHECK_RESULT;<host>;<code>;<output>
    ACKNOWLEDGE_SVC_PROBLEM;<host>;<service>;<sticky>;<notify>;<persistent>;<author>;<comment>
    ACKNOWLEDGE_HOST_PROBLEM;<host>;<sticky>;<notify>;<persistent>;<author>;<comment>
    REMOVE_SVC_ACKNOWLEDGEMENT;<host>;<service>
    REMOVE_HOST_ACKNOWLEDGEMENT;<host>

The `[epoch] ` prefix is optional (NRDP adds it itself when it writes the command file).
"""

from __future__ import annotations

import re
from datetime import datetime

from alertd.model import CheckResult, Notice, NoticeKind, Reporting, StateType
from connectors.plugin_output import BadValue, name, split_output, state_from_code, unescape

SOURCE = "nagios"
_PREFIX = re.compile(r"\[(\d+)\] ")

# command id -> number of `;`-separated arguments (the last one may itself contain `;`)
_ARITY = {
    "PROCESS_SERVICE_CHECK_RESULT": 4,
    "PROCESS_HOST_CHECK_RESULT": 3,
    "ACKNOWLEDGE_SVC_PROBLEM": 7,
    "ACKNOWLEDGE_HOST_PROBLEM": 6,
    "REMOVE_SVC_ACKNOWLEDGEMENT": 2,
    "REMOVE_HOST_ACKNOWLEDGEMENT": 1,
}
SUPPORTED = tuple(_ARITY)


def parse_command(line: str, now: datetime) -> CheckResult | Notice:
    """One command line; raises BadValue(field="command", ...) if it is malformed or unsupported.

    The result's time is `now`, as NRDP stamps results with the time it received them.
    """
    line = line.rstrip("\r\n")
    match = _PREFIX.match(line)
    if match:
        line = line[match.end() :]
    command, sep, rest = line.partition(";")
    command = command.strip().upper()
    if command not in _ARITY:
        shown = command or line[:40]
        raise BadValue("command", f"{shown!r} is not supported; use one of {', '.join(SUPPORTED)}")
    args = rest.split(";", _ARITY[command] - 1) if sep else []
    if len(args) != _ARITY[command]:
        raise BadValue("command", f"{command} needs {_ARITY[command]} arguments, got {len(args)}")
    host = name(args.pop(0), "host")
    # Service commands name the service next; host commands have no service argument.
    service = name(args.pop(0), "service") if "_SERVICE_" in command or "_SVC_" in command else None
    if command.startswith("PROCESS_"):
        code, output = args
        return _result(host, service, code, output, now)
    if command.startswith("ACKNOWLEDGE_"):
        sticky, _notify, _persistent, author, comment = args
        return Notice(
            NoticeKind.ACKNOWLEDGED, host, service, now, author.strip(), comment.strip(),
            sticky=sticky.strip() == "2", source=SOURCE,
        )  # fmt: skip
    return Notice(NoticeKind.UNACKNOWLEDGED, host, service, now, source=SOURCE)


def _result(host: str, service: str | None, code: str, output: str, now: datetime) -> CheckResult:
    state = state_from_code(code.strip(), host=service is None)
    short, long_output, perfdata = split_output(unescape(output))
    # Nagios takes passive host results as HARD (passive_host_checks_are_soft=0); passive
    # service results go through soft/hard logic, which alertd emulates (open_after).
    state_type = StateType.HARD if service is None else None
    # Passive results are a stream: a check that submits, submits every time it runs.
    return CheckResult(
        host, service, state, now, short, long_output, perfdata, state_type, source=SOURCE,
        reporting=Reporting.STREAM,
    )  # fmt: skip
