"""What the command line prints: text from outside (plugin output, names, helpdesk answers,
authors) made harmless for a terminal, the operator's name, and a quiet exit when the reader of
a pipe goes away. Standard library only.

Plugin output is written by whoever runs the check: an escape sequence in it could retitle the
terminal (OSC 0), write the clipboard (OSC 52), clear the screen or hide text. Every control
character except the line feed, and the bidirectional overrides that reorder what is shown, is
printed as a visible `\\xNN`/`\\uNNNN` escape instead.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
from collections.abc import Mapping
from typing import Protocol

# C0 (except \n), DEL, C1, and the bidi embedding/override/isolate characters.
_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class Writer(Protocol):
    def write(self, text: str, /) -> object: ...


def clean(text: str) -> str:
    """`text` with every character a terminal would act on shown as an escape."""
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class Safe:
    """A writer that cleans everything on its way to `out` (our own text has nothing to clean,
    so the whole output can pass through it)."""

    def __init__(self, out: Writer) -> None:
        self._out = out

    def write(self, text: str, /) -> int:
        self._out.write(clean(text))
        return len(text)


def operator(env: Mapping[str, str]) -> str:
    """Who is at the keyboard: $USER or $LOGNAME, else the OS's name for this user (cron and
    `sudo -i` shells may have neither variable)."""
    name = env.get("USER") or env.get("LOGNAME")
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return f"uid {os.getuid()}"


def quiet_broken_pipe() -> None:
    """The reader of our stdout left (`alertd outbox list | head`): stop without a traceback.
    Python's own advice: point stdout at /dev/null so the final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
