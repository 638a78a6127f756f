"""A loop of the process that runs beside the requests (health checks, refreshes, retention).

Each such loop is started once when the application starts and cancelled, then awaited, when it
stops, so a shutdown never leaves one half way through a write it could finish or a task that
outlives its event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any


class BackgroundTask:
    """`run` as one named task: `start` is idempotent, `close` cancels and waits for it."""

    def __init__(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.name = name
        self._run = run
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
