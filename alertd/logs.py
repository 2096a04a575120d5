"""The one structlog configuration: JSON lines for journald and files, readable text on a TTY.

JSON lines are rendered with orjson and written through `_LineWriter`, which buffers whole
lines and writes them out at most `FLUSH_INTERVAL` after they were logged (or sooner when
`MAX_BUFFERED` bytes pile up), and at exit, instead of one write and flush per line: in a storm
every opened incident logs a line, and a synchronous write per line on the event loop was a
tenth of the work per result. A clean stop loses nothing (`flush` runs at exit); a SIGKILL can
lose the last half second of lines, never a result (those are in the store before any line).

Libraries log through the stdlib (`aiohttp.server`, `asyncio`); with no handler configured
Python prints those as plain text with a traceback, breaking the one-JSON-object-per-line
promise and quoting whatever the exception quoted. `_StdlibBridge` turns each such record into
one structlog line, `library_log`, with the logger, level, message (cut short) and exception
type: never the exception's text, which for a parser error is the raw request.
"""

from __future__ import annotations

import atexit
import json as stdlib_json
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}  # fmt: skip

# Lines wait at most this long (seconds) before they are written: still "live" for someone
# tailing the journal, and a storm's thousands of lines a second become a few writes.
FLUSH_INTERVAL = 0.5
# Written out at once beyond this many buffered bytes: bounds memory in a storm.
MAX_BUFFERED = 64 * 1024

# Level of the per-incident change lines (`alertd.change_log`): `[log] changes`.
_changes_level = logging.INFO
# The configured level (`configure`), and whether lines are JSON through `_LineWriter`.
_level = logging.INFO
_json = False


def configure(
    level: str = "info", *, json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Call once at process start. `json=None` picks JSON unless the stream is a terminal.
    `stream` defaults to stderr (as it is when this runs: tests capture it by replacing it)."""
    global _writer, _level, _json
    out = sys.stderr if stream is None else stream
    as_json = not out.isatty() if json is None else json
    _level, _json = LEVELS[level], as_json
    renderer: structlog.typing.Processor
    if as_json:
        renderer = _render_json
        old, _writer = _writer, _LineWriter(out)
        if old is not None:
            old.close()  # configure() may run again (tests, the demo): nothing left behind
        factory: Any = _writer.logger_factory
    else:
        renderer = structlog.dev.ConsoleRenderer()
        factory = structlog.PrintLoggerFactory(out)  # a person watching: line by line
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StdlibBridge)]:
        root.removeHandler(handler)
    root.addHandler(_StdlibBridge())
    root.setLevel(max(LEVELS[level], logging.WARNING))  # library chatter below is not ours


def set_changes_level(level: str) -> None:
    """The level of the per-incident change lines: "info" (default) or "debug", which keeps
    them out of an info-level log (they stay counted in the metrics)."""
    global _changes_level
    _changes_level = LEVELS[level]


def changes_level() -> int:
    return _changes_level


def log_many(level: int, lines: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """Many lines at one level at once, each (event, fields): a commit's change lines.

    The same JSON objects structlog's chain writes (fields, `event`, bound context, `level`,
    `timestamp`), rendered here in one pass with one timestamp and one hand to the writer: the
    chain cost ~12 us a line, and a storm logs one line per opened incident. On a terminal
    (or before `configure`) each line goes through structlog as usual."""
    if level < _level or not lines:
        return
    writer = _writer
    # Only while structlog runs the chain `configure` set up (tests may swap it for theirs).
    if writer is None or not _json or structlog.get_config()["processors"][-1] is not _render_json:
        logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("alertd.logs")
        for event, fields in lines:
            logger.log(level, event, **fields)
        return
    context = structlog.contextvars.get_contextvars()
    name = logging.getLevelName(level).lower()
    stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    rendered = []
    for event, fields in lines:
        entry = {**fields, "event": event}
        for key, value in context.items():
            entry.setdefault(key, value)
        entry["level"] = name
        entry["timestamp"] = stamp
        rendered.append(_render_json(None, "", entry))
    writer.write_many(rendered)


def flush() -> None:
    """Write out buffered lines now (also runs at exit and every FLUSH_INTERVAL)."""
    if _writer is not None:
        _writer.flush()


def _render_json(_logger: object, _name: str, event_dict: structlog.typing.EventDict) -> bytes:
    """The same JSON object the stdlib encoder gave (structlog's JSONRenderer), 5-10x faster.
    Whatever orjson refuses (an int beyond 64 bits, a non-str key it cannot turn into one)
    goes through the stdlib encoder as before: a log line is never dropped for its content."""
    try:
        return orjson.dumps(event_dict, default=repr, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return stdlib_json.dumps(event_dict, default=repr).encode()


class _LineWriter:
    """Rendered lines -> the stream, in batches (see the module docstring). Thread-safe: the
    stdlib bridge may log from any thread, and the flusher thread writes the tail."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lines: list[bytes] = []
        self._size = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.logger_factory = _LoggerFactory(self)
        # A daemon thread: a stuck stream must never keep the process from exiting.
        self._flusher = threading.Thread(target=self._flush_loop, name="log-flush", daemon=True)
        self._flusher.start()
        atexit.register(self.flush)

    def write(self, line: bytes | str) -> None:
        data = (line if isinstance(line, bytes) else line.encode()) + b"\n"
        with self._lock:
            self._lines.append(data)
            self._size += len(data)
            if self._size >= MAX_BUFFERED:
                self._write_out()

    def write_many(self, lines: Sequence[bytes]) -> None:
        data = b"\n".join(lines) + b"\n"
        with self._lock:
            self._lines.append(data)
            self._size += len(data)
            if self._size >= MAX_BUFFERED:
                self._write_out()

    def flush(self) -> None:
        with self._lock:
            self._write_out()

    def close(self) -> None:
        self._closed.set()
        self.flush()
        atexit.unregister(self.flush)

    def _write_out(self) -> None:
        if not self._lines:
            return
        data = b"".join(self._lines)
        self._lines.clear()
        self._size = 0
        try:
            binary = getattr(self._stream, "buffer", None)
            if binary is not None:
                self._stream.flush()  # anything printed as text first keeps its place
                binary.write(data)
            else:  # a text-only stream (e.g. io.StringIO in a test)
                self._stream.write(data.decode())
            self._stream.flush()
        except (OSError, ValueError):
            pass  # stderr closed or gone (a pipe's reader died): logging must not crash us

    def _flush_loop(self) -> None:
        while not self._closed.wait(FLUSH_INTERVAL):
            self.flush()


class _BufferedLogger:
    """What structlog calls with the rendered line, at every level."""

    __slots__ = ("_write",)

    def __init__(self, writer: _LineWriter) -> None:
        self._write = writer.write

    def msg(self, message: bytes | str) -> None:
        self._write(message)

    log = debug = info = warn = warning = error = critical = exception = fatal = failure = msg


class _LoggerFactory:
    def __init__(self, writer: _LineWriter) -> None:
        self._logger = _BufferedLogger(writer)

    def __call__(self, *_args: object) -> _BufferedLogger:
        return self._logger


_writer: _LineWriter | None = None


# Library messages are cut here: the message is the library's, so its size is not ours to trust.
MAX_LIBRARY_MESSAGE = 300


class _StdlibBridge(logging.Handler):
    """Stdlib log records -> structlog JSON lines (see the module docstring)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()[:MAX_LIBRARY_MESSAGE]
        except Exception:  # a library's bad format string must not take a log line down
            message = str(record.msg)[:MAX_LIBRARY_MESSAGE]
        error = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else None
        log: structlog.typing.FilteringBoundLogger = structlog.get_logger("stdlib")
        log.log(record.levelno, "library_log", logger=record.name, message=message, error=error)
