"""One thread that runs blocking calls in order for the event loop (a database connection's).

What `loop.run_in_executor` on a one-thread `ThreadPoolExecutor` does, with less in between:
the executor wraps every call in a `concurrent.futures.Future` (a `threading.Condition`, locks
and callbacks in Python, on both threads) chained to an asyncio future through one more
callback. Here a call is a tuple on a queue and its answer one `call_soon_threadsafe` that
sets the loop's future: ~15 us of the event loop per call instead of ~40, and less Python on
the thread, for the inbox's appends at thousands of requests a second (bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")

_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class Worker:
    """A thread of its own, running `call`s one at a time in the order they were made."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        # A daemon thread: a process that exits without `shutdown` must not hang on it (a call
        # cut short there is a transaction SQLite rolls back, and nothing of it was answered).
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._closed = False

    def call(self, fn: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
        """`fn(*args)` on the thread; the future gets its result or exception."""
        if self._closed:
            raise RuntimeError("worker is shut down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._calls.put((loop, future, fn, args))
        return future

    def shutdown(self, wait: bool = True) -> None:
        """No more calls; the thread ends after those already made (joined if `wait`)."""
        if not self._closed:
            self._closed = True
            self._calls.put(None)
        if wait and self._thread is not threading.current_thread():
            self._thread.join()

    def _main(self) -> None:
        while (item := self._calls.get()) is not None:
            loop, future, fn, args = item
            setter: Callable[[asyncio.Future[Any], Any], None] = _set_result
            try:
                value = fn(*args)
            except BaseException as exc:  # handed to the caller, as the executor does
                setter, value = _set_exception, exc
            _answer(loop, setter, future, value)
            del item, future, fn, args, value  # not kept alive while the thread waits


def _answer(
    loop: asyncio.AbstractEventLoop,
    setter: Callable[[asyncio.Future[Any], Any], None],
    future: asyncio.Future[Any],
    value: Any,
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(setter, future, value)


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # cancelled meanwhile: its caller is gone
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
