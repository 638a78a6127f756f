"""Noticing a client that goes away while the relay waits on the upstream.

Once the request body is read, the next ASGI `receive()` only returns when the client
disconnects. The watch waits for that in the background and cancels the request's task,
so a client that gives up stops the upstream call at once and frees its user and account
slots, instead of holding them until the upstream answers or times out.

The watch is stopped as soon as the relay has the whole answer (or the stream has ended):
from then on a disconnect cannot lose usage that was already read. It is stopped
synchronously, right after the last awaited upstream read, so a cancellation it requested
always surfaces inside the watched region.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .asgi import Receive


class DisconnectWatch:
    __slots__ = ("_future", "_task", "gone", "stopped")

    def __init__(self, task: asyncio.Task[Any], receive: Receive) -> None:
        self._task = task
        self.gone = False
        self.stopped = False
        self._future = asyncio.ensure_future(receive())
        self._future.add_done_callback(self._on_message)

    def _on_message(self, future: asyncio.Future[Any]) -> None:
        if self.stopped or future.cancelled() or future.exception() is not None:
            return
        if future.result().get("type") == "http.disconnect":
            self.gone = True
            self._task.cancel()

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self._future.cancel()
