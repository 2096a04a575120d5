"""The one structlog configuration: JSON lines for journald and files, readable text on a TTY.

Libraries log through the stdlib (`aiohttp.server`, `asyncio`); with no handler configured
Python prints those as plain text with a traceback, breaking the one-JSON-object-per-line
promise and quoting whatever the exception quoted. `_StdlibBridge` turns each such record into
one structlog line, `library_log`, with the logger, level, message (cut short) and exception
type: never the exception's text, which for a parser error is the raw request.
"""

from __future__ import annotations

import logging
import sys

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}  # fmt: skip


def configure(level: str = "info", *, json: bool | None = None) -> None:
    """Call once at process start. `json=None` picks JSON unless stderr is a terminal."""
    as_json = not sys.stderr.isatty() if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StdlibBridge)]:
        root.removeHandler(handler)  # configure() may run again (tests, the demo)
    root.addHandler(_StdlibBridge())
    root.setLevel(max(LEVELS[level], logging.WARNING))  # library chatter below is not ours


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
