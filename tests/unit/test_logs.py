"""The JSON log lines: same content as the stdlib encoder gave, written in batches, none lost
on a clean stop."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum

import pytest
import structlog

from alertd import logs
from tests.support import configure_logs


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logs(stream=out)
    yield out
    configure_logs()  # back to what conftest set for the rest of the session


class Colour(StrEnum):
    RED = "red"


def test_orjson_lines_carry_what_the_stdlib_encoder_wrote() -> None:
    """Parsed, a line is the same object as structlog's stdlib JSONRenderer made of it."""
    event = {
        "event": "incident_opened", "incident_id": 7, "key": "wéb-01/HTTP", "ratio": 0.5,
        "detail": {"from": "ok", "n": [1, 2]}, "colour": Colour.RED, "none": None,
        "when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "codes": {1: "a"},
    }  # fmt: skip
    stdlib = structlog.processors.JSONRenderer()(None, "info", dict(event))
    ours = logs._render_json(None, "info", dict(event))
    parsed_ours, parsed_stdlib = json.loads(ours), json.loads(stdlib)
    # The one difference: a datetime (never logged by alertd, which logs text) becomes ISO
    # text rather than its repr.
    assert parsed_ours.pop("when") == "2026-01-02T03:04:05+00:00"
    parsed_stdlib.pop("when")
    assert parsed_ours == parsed_stdlib


def test_what_orjson_refuses_goes_through_the_stdlib_encoder() -> None:
    line = logs._render_json(None, "info", {"event": "odd", "big": 2**70})
    assert json.loads(line) == {"event": "odd", "big": 2**70}


def test_lines_wait_in_the_buffer_until_flushed(stream: io.StringIO) -> None:
    log = structlog.get_logger("test")
    log.info("incident_opened", incident_id=1)
    log.debug("not_logged")
    assert stream.getvalue() == ""  # not written per line
    logs.flush()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [("incident_opened", "info")]
    assert lines[0]["incident_id"] == 1 and "timestamp" in lines[0]


def test_the_flusher_writes_the_tail_within_the_interval(stream: io.StringIO) -> None:
    structlog.get_logger("test").warning("late_line")
    assert logs._writer is not None
    logs._writer._closed.wait(logs.FLUSH_INTERVAL * 4)  # the flusher has run in between
    assert '"event":"late_line"' in stream.getvalue()


def test_a_full_buffer_is_written_at_once(stream: io.StringIO) -> None:
    log = structlog.get_logger("test")
    for n in range(logs.MAX_BUFFERED // 50):
        log.info("filler", n=n)
    assert stream.getvalue().count("\n") > 0


def test_stdlib_records_still_become_json_lines(stream: io.StringIO) -> None:
    logging.getLogger("aiohttp.server").error("boom %s", "x")
    logs.flush()
    (line,) = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert (line["event"], line["logger"], line["message"]) == ("library_log", "aiohttp.server",
                                                                "boom x")  # fmt: skip


def test_change_lines_follow_their_configured_level() -> None:
    logs.set_changes_level("debug")
    try:
        assert logs.changes_level() == logging.DEBUG
    finally:
        logs.set_changes_level("info")
    assert logs.changes_level() == logging.INFO


def test_a_commits_change_lines_at_once_are_the_lines_structlog_writes(
    stream: io.StringIO,
) -> None:
    """`log_many` (a commit's change lines in one pass) writes what one structlog call per
    line writes, key for key and in order (bound context too), and honours the level."""
    fields = {"incident_id": 7, "key": "web-01/HTTP", "detail": {"from": "OK", "n": 2}}
    structlog.contextvars.bind_contextvars(request_id="r-1")
    try:
        structlog.get_logger("t").info("incident_opened", **fields)
        logs.log_many(logging.INFO, [("incident_opened", fields), ("incident_resolved", {})])
        logs.log_many(logging.DEBUG, [("incident_hidden", fields)])  # below the level
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    logs.flush()
    one, many, other = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert list(one) == list(many) and {**one, "timestamp": 0} == {**many, "timestamp": 0}
    assert other["event"] == "incident_resolved" and other["request_id"] == "r-1"
