"""The background-loop helper: one task however often it is started, nothing left after close."""

from __future__ import annotations

import asyncio

from aiproxy.background import BackgroundTask


async def test_started_once_and_cancelled_on_close() -> None:
    runs = 0
    cancelled = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = BackgroundTask("test-loop", loop)
    task.start()
    task.start()  # a second start is a no-op
    await asyncio.sleep(0)
    assert runs == 1
    assert [t for t in asyncio.all_tasks() if t.get_name() == "test-loop"]
    await task.close()
    assert cancelled.is_set()
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "test-loop"]
    await task.close()  # closing twice is harmless
    task.start()  # and it can be started again
    await asyncio.sleep(0)
    assert runs == 2
    await task.close()


async def test_close_before_start_does_nothing() -> None:
    async def loop() -> None:
        raise AssertionError("never started")

    await BackgroundTask("idle", loop).close()
