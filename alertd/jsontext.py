"""Untrusted JSON text -> Python values that every later step can handle (store, log, answer).

Two things the stdlib parser accepts would fail later, far from the request:

- A lone surrogate written as an escape (`"caf\\udce9"`): what a client sends when it
  JSON-encodes bytes its OS decoded with surrogateescape (Latin-1 plugin output in Nagios's
  environment). No UTF-8 encoder takes it, so the store's commit would fail and the client
  retry forever. It is replaced by U+FFFD, as undecodable bytes in form bodies are: one bad
  character must not cost the whole result.
- An integer over the interpreter's digit limit, or nesting deeper than the recursion limit:
  raised as a ValueError (or RecursionError) instead of a JSONDecodeError.

Bytes are first given to orjson (a fifth of the stdlib's time for a one-result body, which
matters at thousands of requests a second). It takes strict JSON only and refuses all the rest,
lone surrogates included, so whatever it takes the stdlib would read to the same values; what it
refuses goes to the stdlib, which decides as before and names the error. One exception: an
integer beyond 64 bits comes back from orjson as a float, so a body with a run of 19 digits or
more (`_LONG_DIGITS`) goes to the stdlib directly. (orjson also takes nesting up to 1024 deep,
where the stdlib may stop short of 1000: such a document is refused by every parser after.)
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import orjson

# The escape of a surrogate code point (D800-DFFF). Checked before scrubbing, so a body
# without one (nearly all) pays a substring search and nothing else.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")
# After decoding, a pair has become one character: any surrogate left is a lone one.
_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"
# Every digit as "0", so one `find` spots a run of 19 (a regex is three times slower).
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19  # 2**63 has 19 digits: shorter integers fit orjson's 64 bits


class Unsupported(ValueError):
    """Valid JSON that alertd does not take; the message says why, for the client."""


def loads(text: str | bytes) -> Any:
    """`json.loads`, with lone surrogates replaced by U+FFFD in every key and string.

    Raises json.JSONDecodeError (malformed), UnicodeDecodeError (bytes not UTF-8) or
    Unsupported (a number too long, nesting too deep).
    """
    if isinstance(text, bytes) and text.translate(_DIGITS_AS_ZERO).find(_LONG_DIGITS) < 0:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # not JSON orjson takes: the stdlib decides below, and says why
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except ValueError as exc:  # the only other one: int() refusing a too long number
        limit = sys.get_int_max_str_digits()
        raise Unsupported(f"a number has more than {limit} digits") from exc
    except RecursionError as exc:
        raise Unsupported("nested too deeply") from exc
    if _has_surrogate_escape(text):
        value = _scrub(value)
    return value


def _has_surrogate_escape(text: str | bytes) -> bool:
    if isinstance(text, bytes):
        return b"\\u" in text and _SURROGATE_ESCAPE_BYTES.search(text) is not None
    return "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None


def _scrub(value: Any) -> Any:
    """`value` with lone surrogates replaced, changing the fresh lists and dicts in place.

    A loop, not recursion: the document may be nested nearly as deep as the parser allows.
    """
    if isinstance(value, str):
        return _SURROGATE.sub(REPLACEMENT, value)
    pending = [value]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, str):
                    node[index] = _SURROGATE.sub(REPLACEMENT, item)
                elif isinstance(item, list | dict):
                    pending.append(item)
        elif isinstance(node, dict):
            items = list(node.items())
            node.clear()
            for key, item in items:
                if isinstance(item, str):
                    item = _SURROGATE.sub(REPLACEMENT, item)
                elif isinstance(item, list | dict):
                    pending.append(item)
                node[_SURROGATE.sub(REPLACEMENT, key)] = item
    return value
