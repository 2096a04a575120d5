"""`alertd.jsontext.loads`: orjson reads what it can, the stdlib the rest; either way the values
(and the errors) are the stdlib's, so the fast path changes nothing a client could notice."""

from __future__ import annotations

import json
import math

import pytest

from alertd.jsontext import Unsupported, loads

SAME_AS_STDLIB = [
    b'{"host": "web-01", "service": "HTTP", "state": "CRITICAL", "output": "refused"}',
    b'[{"a": 1}, {"a": 2.5}, {"a": null}, {"a": true}, {"a": [1, "x"]}]',
    b'{"a": 1, "a": 2}',  # the last of a repeated key wins in both
    b'{"n": 9223372036854775807, "m": -9223372036854775808, "u": 18446744073709551615}',
    b'{"f": 0.1, "g": 1.7976931348623157e308, "h": 5e-324, "i": -0.0, "j": 1E2}',
    b'{"e": "\\u00e9\\ud83d\\ude00\\/", "raw": "\xc3\xa9"}',  # a surrogate pair is one character
    b" \r\n\t[]\n",
]


@pytest.mark.parametrize("body", SAME_AS_STDLIB)
def test_values_are_the_stdlib_values(body: bytes) -> None:
    got, want = loads(body), json.loads(body)
    assert got == want
    assert repr(got) == repr(want)  # same types too: 1 is not 1.0


@pytest.mark.parametrize(
    "body, want",
    [
        (b'{"id": 18446744073709551616}', {"id": 2**64}),
        (b"[-9223372036854775809]", [-(2**63) - 1]),
        (b'{"a": {"b": [123456789012345678901234567890]}}', {"a": {"b": [int("1234567890" * 3)]}}),
    ],
)
def test_integers_beyond_64_bits_stay_exact(body: bytes, want: object) -> None:
    """orjson would read these as floats, losing digits: they go to the stdlib."""
    assert repr(loads(body)) == repr(want)  # ints, not floats that compare equal


def test_what_orjson_refuses_the_stdlib_still_reads() -> None:
    assert math.isnan(loads(b'{"x": NaN}')["x"])
    assert loads(b"[1e400, -Infinity]") == [math.inf, -math.inf]
    assert loads(b"\xef\xbb\xbf{}") == {}  # a UTF-8 byte order mark
    assert loads('{"x": 1}'.encode("utf-16")) == {"x": 1}
    # Lone surrogates (escaped, or as the bytes surrogateescape makes) become U+FFFD.
    assert loads(b'{"caf\\udce9": "\\ud800x"}') == {"caf\ufffd": "\ufffdx"}


@pytest.mark.parametrize(
    "body, error, message",
    [
        (b'{"a": 1,}', json.JSONDecodeError, "Expecting property name enclosed in double quotes"),
        (b"", json.JSONDecodeError, "Expecting value"),
        (b'"\xff"', UnicodeDecodeError, "invalid start byte"),
        (b"[" + b"7" * 5000 + b"]", Unsupported, "more than 4300 digits"),
        (b"[" * 30000, Unsupported, "nested too deeply"),
    ],
)
def test_errors_are_the_stdlib_errors(body: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        loads(body)
