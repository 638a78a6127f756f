"""Noticing a client that goes away while the relay waits on the upstream.

The watch cancels the request's task when the client disconnects, so a client that gives up
stops the upstream call at once and frees its user and account slots, instead of holding them
until the upstream answers or times out. The relay's own HTTP protocol (`aiproxy.serving`)
reports a lost connection through a `DisconnectSignal` in the scope's extensions, which costs
nothing per request; under any other ASGI server the watch falls back to waiting on `receive()`
(which, once the body is read, only returns at a disconnect) in a task of its own.

The watch is stopped as soon as the relay has the whole answer (or the stream has ended):
from then on a disconnect cannot lose usage that was already read. It is stopped
synchronously, right after the last awaited upstream read, so a cancellation it requested
always surfaces inside the watched region.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .asgi import Receive, Scope

DISCONNECT_EXTENSION = "aiproxy.disconnect"


class DisconnectSignal:
    """Put in each request's scope by the server: `callback` runs once if the connection is lost
    before the answer is complete."""

    __slots__ = ("callback",)

    def __init__(self) -> None:
        self.callback: Callable[[], None] | None = None

    def fire(self) -> None:
        callback, self.callback = self.callback, None
        if callback is not None:
            callback()


class DisconnectWatch:
    __slots__ = ("_future", "_signal", "_task", "gone", "stopped")

    def __init__(self, task: asyncio.Task[Any], scope: Scope, receive: Receive) -> None:
        self._task = task
        self.gone = False
        self.stopped = False
        self._future: asyncio.Future[Any] | None = None
        extensions = scope.get("extensions")
        self._signal: DisconnectSignal | None = extensions.get(DISCONNECT_EXTENSION) if extensions else None
        if self._signal is not None:
            self._signal.callback = self._disconnected
        else:
            self._future = asyncio.ensure_future(receive())
            self._future.add_done_callback(self._on_message)

    def _on_message(self, future: asyncio.Future[Any]) -> None:
        if self.stopped or future.cancelled() or future.exception() is not None:
            return
        if future.result().get("type") == "http.disconnect":
            self._disconnected()

    def _disconnected(self) -> None:
        if not self.stopped:
            self.gone = True
            self._task.cancel()

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            if self._signal is not None:
                self._signal.callback = None
            if self._future is not None:
                self._future.cancel()
