"""The relay's HTTP/1.1 client for vendor calls: kept-alive connections per destination, one error tree.

Every HTTP exchange with a vendor (relayed calls, probes, stored-response calls, OAuth token
endpoints) goes through `HttpClient.request`, and every way it can fail surfaces as an
`UpstreamError`: callers catch that one tree and nothing of the socket, TLS or proxy layers.

Why not a general-purpose client: a relayed call is one request and one answer whose bytes pass
through unchanged (no redirects, cookies or decompression), and the general clients spend more
CPU per call on those features than the rest of the relay's proxying together. Here a
connection is an asyncio protocol feeding httptools (the C parser uvicorn uses for the other
side), a request is one write, and a waiting reader costs one future and one timer.

Connections: direct, through an HTTP proxy (absolute-form requests for `http://` targets, a
`CONNECT` tunnel for `https://`), or through a SOCKS5 proxy (python-socks opens the tunnel,
the vendor's host name resolved by the proxy). TLS uses the system's trust store.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import functools
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

import httptools
from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError
from python_socks.async_.asyncio import Proxy
from yarl import URL

# A kept-alive connection unused this long is closed rather than reused: vendors and load
# balancers drop idle connections after a minute or so, and a request sent on one they just
# dropped fails.
IDLE_SECONDS: Final = 15.0
MAX_IDLE_PER_DESTINATION: Final = 256
# Reading pauses while this much of an answer waits for its reader (a slow client downstream).
PAUSE_READING_AT: Final = 1 << 20
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})


class UpstreamError(Exception):
    """No usable answer from the vendor. The message names the host and the reason, never a body."""


class ConnectFailed(UpstreamError):
    """The connection (name lookup, TCP, TLS or the proxy's tunnel) could not be made."""


class ReadTimedOut(UpstreamError):
    """The vendor sent nothing for longer than the read timeout."""


class AnswerBroken(UpstreamError):
    """The connection closed, or the answer broke HTTP, before the answer ended."""


class _Connection(asyncio.Protocol):
    """One connection to a vendor (or a proxy), carrying one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, where: str) -> None:
        self._loop = loop
        self.where = where  # "host:port", for messages
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self.status = 0
        self.header_list: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.closed = False
        self.keep_alive = True
        self._ends_with_close = False  # a body with neither length nor chunking ends with the connection
        self.error: UpstreamError | None = None
        self.in_use = False
        self.reused = False
        self.received = False  # any byte of the current exchange
        self.idle_since = 0.0

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.in_use:  # a kept-alive connection must stay silent between exchanges
            self.closed = True
            assert self.transport is not None
            self.transport.close()
            return
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(AnswerBroken(f"{self.where} sent a malformed HTTP answer ({exc})"))
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.in_use and not self.complete and self.error is None:
            if self.head_done and self._ends_with_close:
                self.complete = True
                self.keep_alive = False
            else:
                reason = f": {exc}" if exc else ""
                self.error = AnswerBroken(
                    f"{self.where} closed the connection before the answer ended{reason}"
                )
        self._wake()

    def pause_writing(self) -> None:  # the request body is buffered whole; nothing to hold back
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks -----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_list.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self.header_list = []
            return
        self.status = status
        self.head_done = True
        self.keep_alive = self._parser.should_keep_alive()
        if status not in (204, 304):
            framed = False
            for name, value in self.header_list:
                if name == b"content-length" or (
                    name == b"transfer-encoding" and b"chunked" in value.lower()
                ):
                    framed = True
                    break
            self._ends_with_close = not framed
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered >= PAUSE_READING_AT and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.head_done:  # not the end of an interim answer
            self.complete = True
            self._wake()

    # -- one exchange ------------------------------------------------------------------------

    def begin(self, request: bytes | list[bytes]) -> None:
        self.status = 0
        self.header_list = []
        self.head_done = self.complete = self._ends_with_close = False
        self.error = None
        self.received = False
        self._chunks.clear()
        self._buffered = 0
        self.in_use = True
        assert self.transport is not None
        if isinstance(request, list):
            self.transport.writelines(request)
        else:
            self.transport.write(request)

    async def head(self, read_timeout: float) -> None:
        while not self.head_done:
            await self._wait(read_timeout)

    def take(self) -> bytes:
        """What of the body has arrived and not been taken, as one piece."""
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def next_chunk(self, read_timeout: float) -> bytes:
        """The next piece of the body; b"" once it has ended."""
        while True:
            if self._chunks:
                return self.take()
            if self.complete:
                return b""
            await self._wait(read_timeout)

    async def _wait(self, read_timeout: float) -> None:
        if self.error is not None:
            raise self.error
        if self.closed:
            raise AnswerBroken(f"{self.where} closed the connection before the answer ended")
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(read_timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self.error is not None:
            raise self.error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and not self._chunks

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(_ReadTimeout())


class _ReadTimeout(Exception):
    """A wait outlived the read timeout (turned into `ReadTimedOut` with the host's name)."""


class UpstreamResponse:
    """A vendor's answer: status and headers at once, the body read whole or piece by piece.

    `release()` must end every response (a `finally`): a connection whose answer was read to
    its end goes back to the pool, any other is closed.
    """

    __slots__ = ("_client", "_conn", "_key", "_read_timeout", "header_list", "headers", "status")

    def __init__(self, conn: _Connection, client: HttpClient, key: tuple, read_timeout: float) -> None:
        self.status = conn.status
        self.header_list = conn.header_list  # as received, names lower-cased: what a client is given
        # For reading: a repeated header keeps its last value (the relay reads single ones).
        self.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in conn.header_list}
        self._conn: _Connection | None = conn
        self._client = client
        self._key = key
        self._read_timeout = read_timeout

    async def next_chunk(self) -> bytes:
        """The next piece of the body as it arrived; b"" once it has ended."""
        conn = self._conn
        if conn is None:
            return b""
        try:
            return await conn.next_chunk(self._read_timeout)
        except _ReadTimeout:
            raise ReadTimedOut(f"{conn.where} sent nothing for {self._read_timeout:g} s") from None

    async def read(self, limit: int | None = None) -> bytes:
        """The body (its first `limit` bytes when it is longer)."""
        parts: list[bytes] = []
        size = 0
        while limit is None or size < limit:
            chunk = await self.next_chunk()
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        return body if limit is None else body[:limit]

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._client._give_back(self._key, conn)


class HttpClient:
    """Kept-alive connections per (proxy, scheme, host, port); one `request` for every call."""

    def __init__(self) -> None:
        self._idle: dict[tuple, list[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._proxies: dict[str, _ProxyRoute] = {}

    async def request(
        self,
        method: str,
        url: str | URL,
        *,
        headers: dict[str, str],
        body: bytes = b"",
        proxy_url: str | None = None,
        read_timeout: float,
        connect_timeout: float = 10.0,
    ) -> UpstreamResponse:
        """Send the request; the answer once its status line and headers have arrived."""
        target = _target_of(url) if isinstance(url, URL) else _parsed(url)
        scheme, host, port = target.scheme, target.host, target.port
        if scheme not in ("http", "https") or not host or port is None:
            raise ConnectFailed(f"cannot call {scheme or 'a URL without a scheme'}://{host or ''}")
        route = self._route(proxy_url) if proxy_url else None
        absolute = route is not None and route.forwards(scheme)
        wire = _request_bytes(method, target, headers, body, absolute, route)
        key = (proxy_url, scheme, host, port)
        for attempt in (0, 1):
            conn = self._idle_connection(key)
            if conn is None:
                conn = await self._connect(scheme, host, port, route, connect_timeout)
            conn.begin(wire)
            try:
                await conn.head(read_timeout)
            except _ReadTimeout:
                conn.close()
                raise ReadTimedOut(f"{conn.where} sent no answer for {read_timeout:g} s") from None
            except AnswerBroken:
                conn.close()
                # The vendor closed a kept-alive connection as the request went out (nothing of an
                # answer came): the request never reached it, so it is sent once more on a new one.
                if attempt == 0 and conn.reused and not conn.received:
                    continue
                raise
            except BaseException:
                conn.close()  # cancelled (the client left): the answer will never be read
                raise
            return UpstreamResponse(conn, self, key, read_timeout)
        raise AssertionError("unreachable")  # the second attempt returns or raises

    def _idle_connection(self, key: tuple) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            closing = conn.transport is None or conn.transport.is_closing()
            if not conn.closed and not closing and now - conn.idle_since < IDLE_SECONDS:
                conn.reused = True
                return conn
            conn.close()
        return None

    def _give_back(self, key: tuple, conn: _Connection) -> None:
        conn.in_use = False
        if not conn.reusable():
            conn.close()
            return
        idle = self._idle.setdefault(key, [])
        now = time.monotonic()
        # Reuse takes the newest (the end), so the oldest wait at the front: those the vendor closed
        # or that idled too long are closed here, rather than holding a descriptor until reused.
        while idle and (idle[0].closed or now - idle[0].idle_since >= IDLE_SECONDS):
            idle.pop(0).close()
        if len(idle) >= MAX_IDLE_PER_DESTINATION:
            conn.close()
            return
        conn.idle_since = now
        idle.append(conn)

    def _route(self, proxy_url: str) -> _ProxyRoute:
        route = self._proxies.get(proxy_url)
        if route is None:
            route = self._proxies[proxy_url] = _ProxyRoute(proxy_url)
        return route

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def _connect(
        self, scheme: str, host: str, port: int, route: _ProxyRoute | None, limit: float
    ) -> _Connection:
        loop = asyncio.get_running_loop()
        where = f"{host}:{port}"
        tls = self._tls() if scheme == "https" else None
        server_hostname = host if tls is not None else None
        try:
            async with asyncio.timeout(limit):
                if route is None:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(loop, where), host, port, ssl=tls, server_hostname=server_hostname
                    )
                elif route.forwards(scheme):  # requests in absolute form on a connection to the proxy
                    _, conn = await loop.create_connection(
                        lambda: _Connection(loop, where), route.host, route.port
                    )
                else:
                    sock = await route.tunnel(host, port)
                    _, conn = await loop.create_connection(
                        lambda: _Connection(loop, where), sock=sock, ssl=tls, server_hostname=server_hostname
                    )
        except TimeoutError:
            raise ConnectFailed(f"connecting to {where} took longer than {limit:g} s") from None
        except (ProxyError, ProxyConnectionError, ProxyTimeoutError) as exc:
            raise ConnectFailed(f"the proxy could not reach {where}: {exc}") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"cannot connect to {where}: {exc}") from None
        return conn

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


class _ProxyRoute:
    """An outbound proxy: `http://` (forwarding and CONNECT) or `socks5://`."""

    def __init__(self, proxy_url: str) -> None:
        parsed = URL(proxy_url)
        self.url = proxy_url
        self.forwards_http = parsed.scheme == "http"
        self.host = parsed.raw_host or ""
        self.port = parsed.port or (1080 if parsed.scheme.startswith("socks") else 80)
        self.authorization: str | None = None
        if self.forwards_http and parsed.raw_user is not None:
            secret = f"{unquote(parsed.raw_user)}:{unquote(parsed.raw_password or '')}"
            self.authorization = "Basic " + base64.b64encode(secret.encode()).decode()
        self._proxy = Proxy.from_url(proxy_url, rdns=True)

    def forwards(self, scheme: str) -> bool:
        """An `http://` call through an HTTP proxy goes in absolute form, not through a tunnel."""
        return self.forwards_http and scheme == "http"

    async def tunnel(self, host: str, port: int) -> socket.socket:
        return await self._proxy.connect(dest_host=host, dest_port=port)


@dataclass(frozen=True, slots=True)
class _Target:
    """What a request needs of its URL."""

    scheme: str
    host: str
    port: int | None
    origin_form: str  # path and query, on a connection to the vendor
    absolute_form: str  # the whole URL, on a connection to a forwarding proxy
    host_header: str


def _target_of(url: URL) -> _Target:
    host = url.raw_host or ""
    shown = url.host_subcomponent or ""
    return _Target(
        scheme=url.scheme,
        host=host,
        port=url.port,
        origin_form=url.raw_path_qs or "/",
        absolute_form=str(url),
        host_header=shown if not host or url.is_default_port() else f"{shown}:{url.port}",
    )


@functools.lru_cache(maxsize=1024)
def _parsed(url: str) -> _Target:
    """A URL given as text, parsed once: vendor URLs repeat (a base per account, a few paths each),
    and yarl's parse showed as ~1% of the relay's CPU when done per request."""
    return _target_of(URL(url))


def _request_bytes(
    method: str,
    url: _Target,
    headers: dict[str, str],
    body: bytes,
    absolute: bool,
    route: _ProxyRoute | None,
) -> bytes | list[bytes]:
    target = url.absolute_form if absolute else url.origin_form
    lines = [f"{method} {target} HTTP/1.1"]
    has_host = False
    for name, value in headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise UpstreamError(f"header {name!r} holds a line break; the request was not sent")
        if not has_host and name.lower() == "host":
            has_host = True
        lines.append(f"{name}: {value}")
    if not has_host:
        lines.append(f"Host: {url.host_header}")
    if body or method in _BODY_METHODS:
        lines.append(f"Content-Length: {len(body)}")
    if absolute and route is not None and route.authorization:
        lines.append(f"Proxy-Authorization: {route.authorization}")
    lines.append("\r\n")
    head = "\r\n".join(lines).encode("utf-8")
    if not body:
        return head
    if len(body) < 64 * 1024:
        return head + body
    return [head, body]  # a large body is not copied
