"""Nagios plugin output and state codes, as Nagios itself reads them (docs/protocols.md 3).

Shared by every Nagios-family input (NRDP, external commands, notification macros). Pure.
"""

from __future__ import annotations

from alertd.model import HOST_STATES, SERVICE_STATES, CheckState

# Longest output field kept. Nagios truncates long plugin output rather than refusing the
# result; so do we, at a limit far above what Nagios itself keeps (MAX_PLUGIN_OUTPUT_LENGTH 8K).
MAX_TEXT = 65_536
MAX_NAME = 255


class BadValue(ValueError):
    """One field of one item is unusable; the caller names the item and the field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def split_output(text: str) -> tuple[str, str, str]:
    """(short output, long output, perfdata), as Nagios's `parse_check_output` splits them.

    Line 1 is `SHORT | perfdata`; later lines are long output until the first one containing
    `|`, whose tail and every line after it are perfdata, joined with single spaces.
    """
    if "\n" not in text and "|" not in text:  # the common case, kept cheap for NRDP batches
        return text.strip()[:MAX_TEXT], "", ""
    first, _, rest = text.partition("\n")
    short, _, perf = first.partition("|")
    perfs = [perf.strip()] if perf.strip() else []
    long_lines: list[str] = []
    lines = rest.split("\n") if rest else []
    for n, line in enumerate(lines):
        if "|" in line:
            before, _, after = line.partition("|")
            long_lines.append(before)
            perfs.extend(p.strip() for p in [after, *lines[n + 1 :]] if p.strip())
            break
        long_lines.append(line)
    long_output = "\n".join(long_lines).strip("\n")
    return short.strip()[:MAX_TEXT], long_output[:MAX_TEXT], " ".join(perfs)[:MAX_TEXT]


def unescape(text: str) -> str:
    r"""Nagios's `unescape_check_result_output`: `\n` -> newline, `\\` -> backslash."""
    if "\\" not in text:
        return text
    out: list[str] = []
    chars = iter(text)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        following = next(chars, "")
        if following == "n":
            out.append("\n")
        elif following == "\\":
            out.append("\\")
        else:  # any other escape is left as written
            out.append(char + following)
    return "".join(out)


def name(value: str | None, field: str) -> str:
    """A host or service name: trimmed, non-empty, at most MAX_NAME characters."""
    stripped = (value or "").strip()
    if not stripped:
        raise BadValue(field, "missing or empty")
    if len(stripped) > MAX_NAME:
        raise BadValue(field, f"longer than {MAX_NAME} characters")
    return stripped


def state_from_code(code: object, *, host: bool, field: str = "state") -> CheckState:
    """A numeric return code as Nagios treats passive results: a service code outside 0-3 is
    UNKNOWN; a host code outside 0-2 is refused (PROCESS_HOST_CHECK_RESULT rejects it).

    Nagios reads the code with atoi(), so "abc" would silently be 0 (OK); a result that says
    nothing readable about its state is refused instead, because OK would hide a problem.
    """
    if isinstance(code, bool) or not isinstance(code, int | str):
        raise BadValue(field, f"expected a return code, got {type(code).__name__}")
    try:
        number = int(code)
    except ValueError:
        raise BadValue(field, f"{code!r} is not an integer return code") from None
    if host:
        if not 0 <= number <= 2:
            allowed = "0-2 (UP, DOWN, UNREACHABLE)"
            raise BadValue(field, f"host return code must be {allowed}, got {number}")
        return HOST_STATES[number]
    return SERVICE_STATES[number] if 0 <= number <= 3 else CheckState.UNKNOWN
