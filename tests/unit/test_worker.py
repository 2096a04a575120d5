"""The worker thread of the inbox's connection (alertd.worker): calls run in order on one
thread of their own, each caller gets its own result or exception, and a caller that went
away (its future cancelled) costs the others nothing."""

from __future__ import annotations

import asyncio
import threading

import pytest

from alertd.worker import Worker


async def test_calls_run_in_order_on_one_thread_of_their_own() -> None:
    worker = Worker("test-worker")
    seen: list[tuple[int, str]] = []

    def record(n: int) -> int:
        seen.append((n, threading.current_thread().name))
        return n * 10

    try:
        results = await asyncio.gather(*(worker.call(record, n) for n in range(50)))
    finally:
        worker.shutdown()
    assert results == [n * 10 for n in range(50)]
    assert [n for n, _ in seen] == list(range(50))
    assert {name for _, name in seen} == {"test-worker"}
    assert threading.current_thread().name not in {name for _, name in seen}


async def test_an_exception_goes_to_its_caller_only() -> None:
    worker = Worker("test-worker")

    def fail() -> None:
        raise ValueError("disk on fire")

    try:
        failing = worker.call(fail)
        fine = worker.call(lambda: "ok")
        with pytest.raises(ValueError, match="disk on fire"):
            await failing
        assert await fine == "ok"
    finally:
        worker.shutdown()


async def test_a_cancelled_caller_does_not_stop_the_calls_after_it() -> None:
    worker = Worker("test-worker")
    gate = threading.Event()
    try:
        blocked = worker.call(gate.wait, 5)
        gone = worker.call(lambda: "nobody reads this")
        gone.cancel()
        gate.set()
        assert await blocked is True
        assert await worker.call(lambda: "next") == "next"
    finally:
        worker.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        worker.call(lambda: None)
