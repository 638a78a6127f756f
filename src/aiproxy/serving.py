"""How the relay accepts HTTP connections: bounded headers, read deadlines and a connection cap.

uvicorn's httptools protocol trusts its peers: it accepts header blocks of any size, waits for
them forever, and answers an over-full server in plain text. A relay on the open internet needs
the opposite, so this protocol adds, per connection:

- a header budget (`AIPROXY_MAX_HEADER_BYTES`, request line included): beyond it, 431 and close
  before any of it reaches the application (nothing stored, nothing forwarded);
- a header deadline (`AIPROXY_HEADER_TIMEOUT`): a connection that has not delivered a whole
  header block that long after it opened (or after the request's first byte) is answered 408
  and closed, however slowly it trickles bytes;
- a body idle limit (`AIPROXY_BODY_IDLE_TIMEOUT`): a request whose body stops arriving is closed;
- a cap on open connections and requests in flight (`AIPROXY_MAX_CONNECTIONS`): beyond it, each new
  request is answered 503 with `retry-after` in the error shape of its route.

Idle keep-alive connections are closed by uvicorn after `AIPROXY_KEEPALIVE_TIMEOUT`.

A whole answer (one whose length is known: every answer the relay does not stream) leaves in one
write, its head and body together; uvicorn writes them apart, which costs a second system call and,
with Nagle off, a second TCP segment per request. A stream's head leaves with its first event when
that is sent in the same turn of the event loop, else at the end of that turn.

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
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

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


_READING_NOTHING, _READING_HEADERS, _READING_BODY = 0, 1, 2


def _sweep(loop: asyncio.AbstractEventLoop, connections: set[Any], interval: float) -> None:
    """Close connections past their read deadline; runs every `interval` seconds.

    One sweep over the open connections instead of a timer per request: a request costs one
    clock reading, and the deadlines hold to within `interval`.
    """
    now = loop.time()
    for connection in list(connections):
        if isinstance(connection, GuardedHttpToolsProtocol):
            connection.check_deadline(now)
    loop.call_later(interval, _sweep, loop, connections, interval)


class _AnswerTransport:
    """The connection's transport as an answer cycle sees it: it can hold a head for its body.

    While `holding` is set, a write is kept instead of sent; the next write sends both in one call
    (uvloop hands the pieces to one system call).
    """

    __slots__ = ("held", "holding", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.holding = False
        self.held = b""

    def write(self, data: bytes) -> None:
        if self.holding:
            self.held = data
        elif self.held:
            self.transport.writelines((self.held, data))
            self.held = b""
        else:
            self.transport.write(data)

    def flush(self) -> None:
        if self.held:
            if not self.transport.is_closing():
                self.transport.write(self.held)
            self.held = b""

    def close(self) -> None:
        self.flush()  # an answer cut short still shows its head, as it would have without the hold
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


class _OneWriteCycle(RequestResponseCycle):
    """uvicorn's answer cycle, holding the head of an answer of known length for its body."""

    transport: _AnswerTransport  # type: ignore[assignment]

    async def send(self, message: Any) -> None:
        if self.response_started or message["type"] != "http.response.start":
            await super().send(message)
            return
        answer = self.transport
        answer.holding = True
        try:
            await super().send(message)  # uvicorn checks and writes the head: it is held
        finally:
            answer.holding = False
        if self.scope["method"] == "HEAD":  # uvicorn never writes its body
            answer.flush()
        elif self.chunked_encoding is not False:
            # A stream: its head leaves with its first event when that follows at once (the relay
            # sends a stream's head once the vendor's first event is in hand), and otherwise at the
            # end of this turn of the event loop, so a client never waits for the status of a stream
            # whose first event is slow.
            asyncio.get_running_loop().call_soon(answer.flush)


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
        self._reading = _READING_HEADERS
        self._since = 0.0  # when the current header block began, or the body last moved
        self._header_bytes = 0  # bytes received while reading the current header block
        self._too_large = False
        self._signal = DisconnectSignal()
        self._extensions = {DISCONNECT_EXTENSION: self._signal}

    def _start_sweeping(self) -> None:
        state = self.server_state
        if not getattr(state, "aiproxy_sweeping", False):
            state.aiproxy_sweeping = True  # type: ignore[attr-defined]
            interval = min(1.0, self._header_timeout / 4, self._body_idle_timeout / 4)
            self.loop.call_later(interval, _sweep, self.loop, self.connections, interval)

    def check_deadline(self, now: float) -> None:
        if self._reading == _READING_HEADERS and now - self._since > self._header_timeout:
            self._reading = _READING_NOTHING
            if not self.transport.is_closing():
                self.transport.write(_plain_answer(b"408 Request Timeout", b"request header timeout"))
                self.transport.close()
        elif self._reading == _READING_BODY and now - self._since > self._body_idle_timeout:
            self._reading = _READING_NOTHING
            # The request task sees a disconnect and ends (and logs) the request itself.
            self.transport.close()

    # -- protocol events -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._answer_transport = _AnswerTransport(transport)
        self._since = self.loop.time()
        self._start_sweeping()

    def connection_lost(self, exc: Exception | None) -> None:
        self._reading = _READING_NOTHING
        super().connection_lost(exc)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            self._signal.fire()

    def data_received(self, data: bytes) -> None:
        if self._reading == _READING_BODY:
            self._since = self.loop.time()
        else:  # a header block, or the start of the next request's
            self._header_bytes += len(data)
        try:
            super().data_received(data)
        except _HeadersTooLarge:  # re-raised by send_400_response below
            self._refuse_headers()
            return
        # Still inside the header block and over the budget: refuse without parsing further.
        if self._reading == _READING_HEADERS and self._header_bytes > self._max_header_bytes:
            self._refuse_headers()

    def _refuse_headers(self) -> None:
        self._reading = _READING_NOTHING
        if not self.transport.is_closing():
            self.transport.write(
                _plain_answer(b"431 Request Header Fields Too Large", b"request header fields too large")
            )
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        # httptools wraps an exception raised in a callback into a parse error, which uvicorn
        # answers 400; when its cause is the header budget, the answer is 431 instead.
        if self._too_large:
            raise _HeadersTooLarge
        super().send_400_response(msg)

    def handle_websocket_upgrade(self) -> None:
        self._reading = _READING_NOTHING  # the WebSocket protocol has its own timeouts
        super().handle_websocket_upgrade()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._reading != _READING_HEADERS:  # a keep-alive or pipelined request: a new deadline
            self._reading = _READING_HEADERS
            self._since = self.loop.time()

    def _header_block_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def on_headers_complete(self) -> None:
        # The bytes counted may include body bytes that came in the same packet: measure exactly
        # only then (rarely), so an ordinary request pays nothing for the check.
        if self._header_bytes > self._max_header_bytes and self._header_block_size() > self._max_header_bytes:
            self._too_large = True
            raise _HeadersTooLarge  # stops the parser before the application sees the request
        self._reading = _READING_BODY
        self._since = self.loop.time()
        self.scope["extensions"] = self._extensions
        busy = self._cap is not None and (len(self.connections) > self._cap or len(self.tasks) >= self._cap)
        previous = self.cycle
        app = self.app
        if busy:
            self.app = _busy
        try:
            super().on_headers_complete()
        finally:
            self.app = app
        cycle = self.cycle
        if cycle is not previous:  # a new request (an upgrade makes none)
            # Its task has not run yet: the class and the transport it writes to can still change.
            cycle.__class__ = _OneWriteCycle
            cycle.transport = self._answer_transport  # type: ignore[assignment]
            if busy:
                cycle.keep_alive = False

    def on_message_complete(self) -> None:
        self._reading = _READING_NOTHING
        self._header_bytes = 0
        super().on_message_complete()
