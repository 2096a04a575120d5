"""[nagios]: the way back to Nagios. Where its external command file is, and whether alertd
acknowledges a problem there once the problem has a ticket (alertd.nagios_ack)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alertd.config.paths import _beside
from alertd.config.reader import _bool, _strings, _Table

# Input sources (`CheckResult.source`) whose incidents Nagios knows by the same host and
# service names. "nagios" is `alertd notify` and NRDP's external commands; NRDP check results
# ("nrdp") often come from hosts Nagios does not define, so they are left out by default.
ACK_SOURCES = ("nagios", "nrdp", "api", "alertmanager", "heartbeat")


@dataclass(frozen=True, slots=True)
class NagiosConfig:
    """The command file (None: not configured) and the acknowledgement it gets."""

    command_file: Path | None = None
    ack_on_ticket: bool = False
    ack_sources: tuple[str, ...] = ("nagios",)
    ack_author: str = "alertd"


def _nagios(t: _Table, base: Path | None) -> NagiosConfig:
    t.check_keys(("command_file", "ack_on_ticket", "ack_sources", "ack_author"))
    d = NagiosConfig()
    given = t.get("command_file", str, "a string (the path of nagios.cmd)")
    command_file = _beside(base, given) if given else None
    ack = _bool(t, "ack_on_ticket", d.ack_on_ticket)
    if ack and command_file is None:
        t.add("ack_on_ticket", "needs command_file (Nagios's command_file, e.g. "
                               "/usr/local/nagios/var/rw/nagios.cmd)")  # fmt: skip
    sources = _strings(t, "ack_sources", d.ack_sources)
    unknown = [s for s in sources if s not in ACK_SOURCES]
    if unknown:
        t.add("ack_sources", f"unknown source {unknown[0]!r}; allowed: {', '.join(ACK_SOURCES)}")
    author = t.get("ack_author", str, "a string") or d.ack_author
    # The author is a field of a ';'-separated command line: a ';' or newline would shift or
    # end the command.
    if any(c in author for c in ";\n\r"):
        t.add("ack_author", "must not contain ';' or a line break")
        author = d.ack_author
    return NagiosConfig(
        command_file=command_file,
        ack_on_ticket=ack,
        ack_sources=tuple(s for s in sources if s in ACK_SOURCES),
        ack_author=author,
    )
