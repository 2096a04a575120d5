"""The search query language (`field:value`, `:>`/`:<`, AND over OR, parentheses): its grammar,
which fields it can search, and the predicate over ticket snapshots a query compiles to. What the
index holds, and its lag, is the state's (`Sandbox._indexed`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any, Final

from alertd.sandbox.account import SandboxOptions
from alertd.sandbox.validation import _is_int

_Predicate = Callable[[Mapping[str, Any]], bool]
_SEARCH_TOKEN: Final = re.compile(
    r"\s*(?:(?P<open>\()|(?P<close>\))|(?P<join>AND|OR)(?=[\s()]|$)"
    r"|(?P<field>[A-Za-z_]\w*):(?P<op>[<>]?)(?P<value>'[^']*'|-?\d+|null|true|false)(?=[\s()]|$))"
)
_SEARCH_NUMBERS: Final = frozenset({"status", "priority", "group_id", "agent_id"})
_SEARCH_DATES: Final = frozenset({"created_at", "updated_at", "due_by", "fr_due_by"})


class _QueryError(Exception):
    """The search query does not parse or names something that cannot be searched."""


def _compile_query(query: str, options: SandboxOptions) -> _Predicate:
    """A predicate over ticket snapshots for one query: `field:value`, AND over OR, parentheses."""
    tokens: list[re.Match[str]] = []
    position = 0
    while query[position:].strip():
        match = _SEARCH_TOKEN.match(query, position)
        if match is None:
            raise _QueryError(f"cannot parse the query at character {position + 1}")
        tokens.append(match)
        position = match.end()
    if not tokens:
        raise _QueryError("the query is empty")
    parser = _QueryParser(tokens, options)
    predicate = parser.either()
    if parser.position != len(tokens):
        raise _QueryError(f"unexpected {tokens[parser.position].group().strip()!r}")
    return predicate


class _QueryParser:
    """Recursive descent over the tokens; AND binds tighter than OR, as usual."""

    def __init__(self, tokens: list[re.Match[str]], options: SandboxOptions) -> None:
        self.tokens = tokens
        self.position = 0
        self.options = options

    def either(self) -> _Predicate:
        left = self.both()
        while self._peek("join") == "OR":
            self.position += 1
            left = _any_of(left, self.both())
        return left

    def both(self) -> _Predicate:
        left = self.atom()
        while self._peek("join") == "AND":
            self.position += 1
            left = _all_of(left, self.atom())
        return left

    def atom(self) -> _Predicate:
        if self.position >= len(self.tokens):
            raise _QueryError("the query ends where a condition was expected")
        token = self.tokens[self.position]
        self.position += 1
        if token["open"]:
            inner = self.either()
            if self._peek("close") is None:
                raise _QueryError("a parenthesis is not closed")
            self.position += 1
            return inner
        if token["field"]:
            return _condition(token["field"], token["op"], token["value"], self.options)
        raise _QueryError(f"unexpected {token.group().strip()!r}")

    def _peek(self, group: str) -> str | None:
        if self.position >= len(self.tokens):
            return None
        found: str | None = self.tokens[self.position][group]
        return found


def _any_of(left: _Predicate, right: _Predicate) -> _Predicate:
    return lambda ticket: left(ticket) or right(ticket)


def _all_of(left: _Predicate, right: _Predicate) -> _Predicate:
    return lambda ticket: left(ticket) and right(ticket)


def _condition(field: str, op: str, raw: str, options: SandboxOptions) -> _Predicate:
    value = _search_value(raw)
    numbers = _SEARCH_NUMBERS | (
        {"impact", "urgency"} if options.flavour == "freshservice" else set()
    )
    if value is None and op:
        raise _QueryError(f"{field}:{op}null compares with nothing")
    if field in numbers:
        if not (value is None or _is_int(value)):
            raise _QueryError(f"{field} takes a number or null, not {raw}")
        key = "responder_id" if field == "agent_id" else field
        return _comparison(lambda t: t.get(key), op, value)
    if field in ("type", "tag"):
        if op or not (value is None or isinstance(value, str)):
            raise _QueryError(f"{field} takes a 'quoted string' or null")
        if field == "type":
            return _comparison(lambda t: t.get("type"), "", value)
        if value is None:
            return lambda t: not t["tags"]
        return lambda t: any(_same(tag, value) for tag in t["tags"])
    if field in _SEARCH_DATES:
        if value is not None and not (isinstance(value, str) and _is_day(value)):
            raise _QueryError(f"{field} takes a 'YYYY-MM-DD' date or null")
        return _comparison(lambda t: t[field] and t[field][:10], op, value)
    if field in options.custom_fields:
        if op and not _is_int(value):
            raise _QueryError(f"{field}:{op} needs a number")
        return _comparison(lambda t: t["custom_fields"].get(field), op, value)
    raise _QueryError(f"'{field}' is not a searchable field")


def _search_value(raw: str) -> Any:
    # The token pattern admits only 'quoted', an integer, null, true and false here.
    if raw.startswith("'"):
        return raw[1:-1]
    constants = {"null": None, "true": True, "false": False}
    return constants[raw] if raw in constants else int(raw)


def _comparison(get: Callable[[Mapping[str, Any]], Any], op: str, value: Any) -> _Predicate:
    """`:` is equality, `:>` is at least and `:<` is at most; null matches an empty field."""

    def matches(ticket: Mapping[str, Any]) -> bool:
        actual = get(ticket)
        if value is None or actual is None:
            return value is None and actual in (None, "")
        if not op:
            return _same(actual, value)
        if type(actual) is not type(value):
            return False
        return bool(actual >= value if op == ">" else actual <= value)

    return matches


def _same(actual: Any, value: Any) -> bool:
    # String values match without regard to case, as the search index does.
    if isinstance(actual, str) and isinstance(value, str):
        return actual.casefold() == value.casefold()
    return bool(type(actual) is type(value) and actual == value)


def _is_day(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10
