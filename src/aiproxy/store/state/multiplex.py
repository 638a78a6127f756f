"""One Redis connection per process that carries every shared-state command, pipelined by itself.

A pooled client (redis-py) costs 40–80 µs of Python per command: a pooled connection taken and
given back, a timeout context, the command packed and written, the reply read, each per request.
Here every command issued during one turn of the event loop is packed by hiredis, written in one
`write()` at the end of that turn and answered in order on the same socket; replies are parsed by
hiredis and handed to the waiting futures. Concurrent requests thus share their round trips, and a
command that needs no answer (`send`) costs its caller no wait at all.

Order is the connection's: commands reach Redis in the order they were issued, so a slot given
back with `send` is gone before any later command of this process is run.

Bounded waits: connecting is bounded by `timeout`, and a watchdog aborts the connection when the
oldest unanswered command is older than `timeout` (a stalled or partitioned Redis), failing every
waiting command with `TimeoutError`. A connection Redis closed (restart, idle kill) is noticed when
it happens and replaced by the next command; commands that were in flight fail with
`ConnectionError` (they may or may not have run, so nothing is re-sent).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import hiredis
from redis.exceptions import BusyLoadingError, NoScriptError, ReadOnlyError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

_PENDING = object()  # hiredis: "no complete reply buffered yet"
# What a caller that does not wait for the answer gets told when the answer is an error.
ErrorHandler = Callable[[BaseException], None]


class _Failure(Exception):
    """An error reply as hiredis hands it over (turned into redis-py's exception types below)."""


def _error(reply: _Failure) -> Exception:
    message = str(reply)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    if message.startswith("READONLY"):
        return ReadOnlyError(message)
    if message.startswith("LOADING"):
        return BusyLoadingError(message)
    return ResponseError(message)


@dataclass(frozen=True, slots=True)
class Address:
    """Where Redis is and how to log in, from a redis-py connection pool's settings."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a unix socket instead of host:port
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None

    @classmethod
    def of_pool(cls, kwargs: dict[str, Any], *, tls: bool) -> Address:
        context = None
        if tls:
            context = ssl.create_default_context(cafile=kwargs.get("ssl_ca_certs"))
            if str(kwargs.get("ssl_cert_reqs", "required")).lower() in ("none", "optional"):
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        return cls(
            host=kwargs.get("host") or "127.0.0.1",
            port=int(kwargs.get("port") or 6379),
            path=kwargs.get("path"),
            db=int(kwargs.get("db") or 0),
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            tls=context,
        )


class Script:
    """A Lua script run by its hash; loaded on the first NOSCRIPT (a new or flushed Redis)."""

    __slots__ = ("body", "sha")

    def __init__(self, body: str) -> None:
        self.body = body
        self.sha = hashlib.sha1(body.encode()).hexdigest()


class _Protocol(asyncio.Protocol):
    """One socket: packed commands out at the end of each loop turn, replies in, in order."""

    def __init__(self, timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._reader = hiredis.Reader(encoding="utf-8", replyError=_Failure, notEnoughData=_PENDING)
        self._transport: asyncio.Transport | None = None
        self._outgoing: list[bytes] = []
        # (future or error handler, monotonic time it was issued), oldest first: replies come in order.
        self._waiting: deque[tuple[asyncio.Future[Any] | ErrorHandler, float]] = deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio subclass

    def issue(self, packed: bytes, waiter: asyncio.Future[Any] | ErrorHandler) -> None:
        if not self._outgoing:
            self.loop.call_soon(self._write)
        self._outgoing.append(packed)
        self._waiting.append((waiter, time.monotonic()))
        if self._watchdog is None:
            self._watchdog = self.loop.call_later(self._timeout / 4, self._watch)

    def _write(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def _watch(self) -> None:
        """Abort when the oldest unanswered command has waited `timeout`; checked a few times per
        timeout while commands are waiting, so a stall is noticed within 1.25 timeouts."""
        self._watchdog = None
        if not self._waiting or self.closed:
            return
        if time.monotonic() - self._waiting[0][1] >= self._timeout:
            self._abort(RedisTimeoutError(f"no reply from Redis within {self._timeout:g}s"))
            return
        self._watchdog = self.loop.call_later(self._timeout / 4, self._watch)

    def data_received(self, data: bytes) -> None:
        reader, waiting = self._reader, self._waiting
        reader.feed(data)
        while (reply := reader.gets()) is not _PENDING:
            if not waiting:  # a reply nobody asked for: the stream is out of step
                self._abort(RedisConnectionError("unexpected reply from Redis"))
                return
            waiter, _issued = waiting.popleft()
            failure = _error(reply) if isinstance(reply, _Failure) else None
            if isinstance(waiter, asyncio.Future):
                if waiter.done():  # its caller gave up (cancelled): the command ran anyway
                    continue
                if failure is None:
                    waiter.set_result(reply)
                else:
                    waiter.set_exception(failure)
            elif failure is not None:
                waiter(failure)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"Redis connection lost ({exc or 'closed by the server'})"))

    def _abort(self, exc: Exception) -> None:
        self._fail(exc)
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        waiting, self._waiting = self._waiting, deque()
        self._outgoing.clear()
        for waiter, _issued in waiting:
            if isinstance(waiter, asyncio.Future):
                if not waiter.done():
                    waiter.set_exception(exc)
            else:
                waiter(exc)

    def close(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.close()
        self.closed = True


class Multiplexer:
    """Every command of this process on one lazily (re)opened connection; see the module doc."""

    def __init__(self, address: Address, *, timeout: float, scripts: Sequence[Script] = ()) -> None:
        self._address = address
        self._timeout = timeout
        self._scripts = tuple(scripts)
        self._protocol: _Protocol | None = None
        self._opening: asyncio.Future[_Protocol] | None = None

    async def call(self, *args: Any) -> Any:
        """Run one command and return its reply (errors raise redis-py's exception types)."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._open()
        waiter = protocol.loop.create_future()
        protocol.issue(hiredis.pack_command(args), waiter)
        return await waiter

    async def call_many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Several commands in one round trip, their replies in order."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._open()
        waiters = []
        for args in commands:
            waiter = protocol.loop.create_future()
            protocol.issue(hiredis.pack_command(tuple(args)), waiter)
            waiters.append(waiter)
        return list(await asyncio.gather(*waiters))  # gather: every failure is retrieved, not only the first

    async def evalsha(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:  # a new or flushed Redis: EVAL loads it for the next EVALSHA
            return await self.call("EVAL", script.body, len(keys), *keys, *args)

    async def send(self, on_error: ErrorHandler, *args: Any) -> None:
        """Issue a command without waiting for its answer; an error answer goes to `on_error`.

        Awaits only when the connection must be (re)opened first."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._open()
        protocol.issue(hiredis.pack_command(args), on_error)

    async def send_script(
        self, on_error: ErrorHandler, script: Script, keys: Sequence[Any], args: Any
    ) -> None:
        """`send` for a script. Scripts given to the multiplexer are loaded on every new connection;
        after a SCRIPT FLUSH the script is sent again as EVAL, then running after commands issued
        later (callers only send scripts whose order hardly matters, like giving back holds)."""

        def retry_unloaded(exc: BaseException) -> None:
            if isinstance(exc, NoScriptError) and self._protocol is not None and not self._protocol.closed:
                self._protocol.issue(
                    hiredis.pack_command(("EVAL", script.body, len(keys), *keys, *args)), on_error
                )
            else:
                on_error(exc)

        await self.send(retry_unloaded, "EVALSHA", script.sha, len(keys), *keys, *args)

    async def _open(self) -> _Protocol:
        """Connect, log in and select the db: one attempt, in a task of its own, shared by every
        caller waiting for it (a caller that gives up does not abort it for the others)."""
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._connect())
            self._opening.add_done_callback(self._opened)
        return await asyncio.shield(self._opening)

    def _opened(self, opening: asyncio.Future[_Protocol]) -> None:
        self._opening = None
        if not opening.cancelled() and opening.exception() is None:
            self._protocol = opening.result()

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        address = self._address
        async with asyncio.timeout(self._timeout):
            if address.path:
                _, protocol = await loop.create_unix_connection(
                    lambda: _Protocol(self._timeout), address.path
                )
            else:
                _, protocol = await loop.create_connection(
                    lambda: _Protocol(self._timeout),
                    address.host,
                    address.port,
                    ssl=address.tls,
                    server_hostname=address.host if address.tls else None,
                )
        hello: list[tuple[Any, ...]] = []
        if address.password is not None:
            login = (address.username, address.password) if address.username else (address.password,)
            hello.append(("AUTH", *login))
        if address.db:
            hello.append(("SELECT", address.db))
        # Loaded up front, so an EVALSHA issued without waiting never meets NOSCRIPT (a retry as
        # EVAL would run after commands issued later); only a SCRIPT FLUSH meanwhile can cause one.
        hello += [("SCRIPT", "LOAD", script.body) for script in self._scripts]
        waiters = []
        for args in hello:
            waiter = loop.create_future()
            protocol.issue(hiredis.pack_command(args), waiter)
            waiters.append(waiter)
        try:
            for waiter in waiters:  # bounded by the watchdog
                await waiter
        except BaseException:
            protocol.close()
            raise
        return protocol

    def close(self) -> None:
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None
