"""Reading TOML: the file itself, the tables in it (`_Table`: content, dotted name, where problems
go), the problems of one load (`_Problems`), and the typed getters every section uses. A getter
reports a wrong value as a problem naming its dotted key and returns the default, so that one load
reports every problem."""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from alertd.durations import parse_duration
from alertd.errors import ConfigError, ConfigProblem

_T = TypeVar("_T")
_E = TypeVar("_E", bound=StrEnum)


class _Problems:
    """Collects problems so that one load reports all of them, not just the first."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[ConfigProblem] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(ConfigProblem(self.file, key, message))


def _read_toml(path: Path) -> dict[str, object]:
    def error(message: str) -> ConfigError:
        return ConfigError([ConfigProblem(str(path), "", message)])

    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"not valid UTF-8 (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise error(f"not valid TOML: {exc}") from exc


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class _Table:
    """One TOML table being read: its content, its dotted name, and where problems go."""

    data: Mapping[str, object]
    name: str
    problems: _Problems

    def key(self, name: str) -> str:
        part = name if _BARE_KEY.fullmatch(name) else f'"{name}"'
        return f"{self.name}.{part}" if self.name else part

    def add(self, name: str, message: str) -> None:
        self.problems.add(self.key(name), message)

    def check_keys(self, allowed: Collection[str]) -> None:
        for name in self.data:
            if name not in allowed:
                close = difflib.get_close_matches(name, list(allowed), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
                self.add(name, f"unknown key; {hint}")

    def get(self, name: str, kind: type[_T], what: str) -> _T | None:
        """The value if present and of type `kind`; None if absent or wrong (a problem)."""
        if name not in self.data:
            return None
        value = self.data[name]
        # TOML booleans are Python ints; `port = true` must not read as 1.
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
            return value
        self.add(name, f"expected {what}, got {_describe(value)}")
        return None

    def table(self, name: str) -> _Table:
        """The sub-table `name`; empty if absent or not a table (a problem)."""
        value = self.get(name, dict, "a table")
        return _Table(value or {}, self.key(name), self.problems)


def _kind(value: object) -> str:
    for type_, name in _KINDS:
        if isinstance(value, type_):
            return name
    return type(value).__name__


_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    (list, "an array"),
    (dict, "a table"),
    (date, "date"),  # datetime is a date subclass
    (time, "time"),
)


def _describe(value: object) -> str:
    """The value as the reader wrote it, with its TOML type: `string '5 minutes'`."""
    kind = _kind(value)
    if isinstance(value, list | dict):
        return kind
    if isinstance(value, bool):
        return f"{kind} {str(value).lower()}"
    if isinstance(value, date | time):
        return f"{kind} {value.isoformat()}"
    return f"{kind} {value!r}"


def _int(t: _Table, name: str, default: int, minimum: int) -> int:
    value = t.get(name, int, "an integer")
    if value is None:
        return default
    if value < minimum:
        t.add(name, f"must be at least {minimum}, got {value}")
        return default
    return value


def _percent(t: _Table, name: str, default: float) -> float | None:
    """A number in 0..100; None if the key was given but is wrong."""
    if name not in t.data:
        return default
    value = t.data[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        t.add(name, f"expected a number, got {_describe(value)}")
        return None
    if not 0 <= value <= 100:
        t.add(name, f"must be between 0 and 100, got {value}")
        return None
    return float(value)


def _duration(t: _Table, name: str, default: timedelta) -> timedelta:
    text = t.get(name, str, 'a duration string like "5m"')
    if text is None:
        return default
    try:
        return parse_duration(text)
    except ValueError as exc:
        t.add(name, str(exc))
        return default


def _one_of(
    t: _Table, name: str, allowed: tuple[str, ...], default: str, *, upper: bool = False
) -> str:
    """One of `allowed`; with `upper`, any case is accepted and stored upper case."""
    value = t.get(name, str, f"a string, one of {', '.join(allowed)}")
    if value is None:
        return default
    folded = value.upper() if upper else value
    if folded not in allowed:
        t.add(name, f"expected one of {', '.join(allowed)}, got {value!r}")
        return default
    return folded


def _enum(t: _Table, name: str, kind: type[_E], default: _E) -> _E:
    return kind(_one_of(t, name, tuple(kind), default))


def _strings(t: _Table, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = t.get(name, list, "an array of strings")
    if raw is None:
        return default
    if not all(isinstance(item, str) and item for item in raw):
        t.add(name, "expected an array of non-empty strings")
        return default
    return tuple(raw)


# The helpdesk refuses a tag longer than this (docs/protocols.md 1.3): one a config names
# would fail every ticket operation carrying it, so it is refused at load instead.
MAX_TAG_LENGTH = 32


def _tags(t: _Table, name: str) -> tuple[str, ...]:
    """Ticket tags: non-empty strings the helpdesk accepts (at most 32 characters each)."""
    tags = _strings(t, name, ())
    long = [tag for tag in tags if len(tag) > MAX_TAG_LENGTH]
    if long:
        t.add(name, f"{long[0]!r} is longer than {MAX_TAG_LENGTH} characters, the API's limit")
        return ()
    return tags


def _bool(t: _Table, name: str, default: bool) -> bool:
    value = t.get(name, bool, "true or false")
    return default if value is None else value
