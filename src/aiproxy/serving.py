"""How the relay accepts HTTP connections: bounded headers, read deadlines and a connection cap.

uvicorn's httptools protocol trusts its peers: it accepts header blocks of any size, waits for
them forever, and answers an over-full server in plain text. A relay on the open internet needs
the opposite, so this protocol adds, per connection:

- a header budget (`AIPROXY_MAX_HEADER_BYTES`, request line included): beyond it, 431 and close
  before any of it reaches the application (nothing stored, nothing forwarded);
- a header deadline (`AIPROXY_HEADER_TIMEOUT`): a connection that has not delivered a whole
  header block that long after it opened (or after its previous answer) is answered 408 and
  closed, however slowly it trickles bytes;
- a body idle limit (`AIPROXY_BODY_IDLE_TIMEOUT`): a request whose body stops arriving is closed;
- a cap on open connections and requests in flight (`AIPROXY_MAX_CONNECTIONS`): beyond it, each new
  request is answered 503 with `retry-after` in the error shape of its route.

Idle keep-alive connections are closed by uvicorn after `AIPROXY_KEEPALIVE_TIMEOUT`.

It also tells a request when its client goes away, without the task per request that watching
ASGI `receive()` for `http.disconnect` would cost: each request's scope carries a
`DisconnectSignal` under `scope["extensions"]["aiproxy.disconnect"]`, whose callback (set by the
gateway while it waits on the upstream) runs as soon as the connection is lost.
"""

from __future__ import annotations

import asyncio
import functools
import resource
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .config import load_settings
from .gateway.disconnect import DISCONNECT_EXTENSION, DisconnectSignal
from .gateway.errors import error_body
from .gateway.routes import family_of_path, is_gateway_path

BUSY_MESSAGE = "服务器繁忙，连接数已达上限，请稍后重试"
# File descriptors kept free for the database, Redis, upstream connections and log files.
_RESERVED_FDS = 512


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_header_bytes: int
    header_timeout: float
    body_idle_timeout: float


@functools.cache
def connection_limits() -> ConnectionLimits:
    """Read once per process (workers inherit the environment)."""
    settings = load_settings()
    return ConnectionLimits(
        max_header_bytes=settings.max_header_bytes,
        header_timeout=settings.header_timeout,
        body_idle_timeout=settings.body_idle_timeout,
    )


def connection_cap(configured: int) -> int:
    """The configured cap, lowered to what the process's file-descriptor limit can hold.

    The soft limit is raised to the hard one first: running out of descriptors fails every
    accept, which is worse than any answer the cap gives.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(64, min(configured, soft - _RESERVED_FDS))


class _HeadersTooLarge(Exception):
    pass


async def _busy(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer for a request over the connection cap, in the shape its client expects."""
    path = scope.get("path", "")
    if is_gateway_path(path):
        body = error_body(family_of_path(path), 503, BUSY_MESSAGE)
    else:
        body = orjson.dumps({"code": 503, "message": BUSY_MESSAGE})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _plain_answer(status: bytes, message: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(message)).encode() + b"\r\nconnection: close\r\n\r\n" + message
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits described in the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = connection_limits()
        self._max_header_bytes = limits.max_header_bytes
        self._header_timeout = limits.header_timeout
        self._body_idle_timeout = limits.body_idle_timeout
        # The cap is checked here (answering in the route's shape), not by uvicorn (plain text).
        self._cap = self.limit_concurrency
        self.limit_concurrency = None
        self._header_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._body_pending = False
        self._last_data = 0.0

    # -- deadlines -----------------------------------------------------------------------------

    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _header_deadline_passed(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.write(_plain_answer(b"408 Request Timeout", b"request header timeout"))
            self.transport.close()

    def _body_idle_check(self) -> None:
        """Lazy re-arming: one timer per idle period, not one per received chunk."""
        self._deadline = None
        if not self._body_pending or self.transport.is_closing():
            return
        idle = self.loop.time() - self._last_data
        if idle < self._body_idle_timeout:
            self._deadline = self.loop.call_later(self._body_idle_timeout - idle, self._body_idle_check)
            return
        # The request task sees a disconnect and ends (and logs) the request itself.
        self.transport.close()

    # -- protocol events -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._header_timeout, self._header_deadline_passed)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._body_pending = False
        super().connection_lost(exc)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.scope["extensions"][DISCONNECT_EXTENSION].fire()

    def data_received(self, data: bytes) -> None:
        if self._body_pending:
            self._last_data = self.loop.time()
        try:
            super().data_received(data)
        except _HeadersTooLarge:  # re-raised by send_400_response below
            self._disarm()
            self.transport.write(
                _plain_answer(b"431 Request Header Fields Too Large", b"request header fields too large")
            )
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        # httptools wraps an exception raised in a callback into a parse error, which uvicorn
        # answers 400; when its cause is the header budget, the answer is 431 instead.
        if self._header_bytes > self._max_header_bytes:
            raise _HeadersTooLarge
        super().send_400_response(msg)

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the WebSocket protocol takes the transport over with its own timeouts
        self._body_pending = False
        super().handle_websocket_upgrade()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._deadline is None:  # a pipelined or keep-alive request: a fresh header deadline
            self._arm(self._header_timeout, self._header_deadline_passed)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self._max_header_bytes:
            raise _HeadersTooLarge  # stops the parser before the application sees the request

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        self.scope["extensions"] = {DISCONNECT_EXTENSION: DisconnectSignal()}
        busy = self._cap is not None and (len(self.connections) > self._cap or len(self.tasks) >= self._cap)
        app = self.app
        if busy:
            self.app = _busy
        try:
            super().on_headers_complete()
        finally:
            self.app = app
        if busy and self.cycle is not None:
            self.cycle.keep_alive = False
        self._body_pending = True
        self._last_data = self.loop.time()
        self._arm(self._body_idle_timeout, self._body_idle_check)

    def on_message_complete(self) -> None:
        self._body_pending = False
        self._disarm()
        super().on_message_complete()
