"""The relay's HTTP client against scripted servers on 127.0.0.1: framing, reuse, timeouts, failures.

Each server is a plain asyncio server whose handler plays one scripted conversation, so what the
client sees on the wire (and how many connections it opened) is exact.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from yarl import URL

from aiproxy.gateway import http_client
from aiproxy.gateway.http_client import (
    PAUSE_READING_AT,
    AnswerBroken,
    ConnectFailed,
    HttpClient,
    ReadTimedOut,
    UpstreamError,
    _parsed,
    _target_of,
)

from .fake_proxies import TunnelProxy

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"


@dataclass
class Server:
    handler: Handler
    connections: int = 0
    closed: int = 0  # connections the client ended
    requests: list[bytes] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:  # conversations still held open
            task.cancel()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/messages?beta=true"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await self.handler(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.closed += 1
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


@pytest_asyncio.fixture
async def client() -> AsyncIterator[HttpClient]:
    http = HttpClient()
    yield http
    await http.close()


async def serving(handler: Handler) -> Server:
    return await Server(handler).start()


async def keep_alive_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
    while True:
        await server.read_request(reader)
        writer.write(OK)
        await writer.drain()


async def call(client: HttpClient, url: str, **kwargs: object) -> tuple[int, dict[str, str], bytes]:
    response = await client.request(
        "POST",
        url,
        headers={"content-type": "application/json", "x-api-key": "k"},
        body=b'{"model":"m"}',
        read_timeout=kwargs.pop("read_timeout", 5.0),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )
    try:
        return response.status, response.headers, await response.read()
    finally:
        response.release()


async def test_a_request_is_sent_as_given_and_the_connection_is_kept(client: HttpClient) -> None:
    server = await serving(keep_alive_ok)
    try:
        for _ in range(3):
            status, headers, body = await call(client, server.url)
            assert (status, body, headers["content-type"]) == (200, b"{}", "application/json")
        assert server.connections == 1  # one kept-alive connection carried all three
        first = server.requests[0]
        assert first.startswith(b"POST /v1/messages?beta=true HTTP/1.1\r\n")
        assert f"\r\nHost: 127.0.0.1:{server.port}\r\n".encode() in first
        assert b"\r\nx-api-key: k\r\n" in first and b"\r\nContent-Length: 13\r\n" in first
        assert first.endswith(b'\r\n\r\n{"model":"m"}')
        assert b"user-agent" not in first.lower()  # nothing the caller did not ask for
    finally:
        await server.stop()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
        b"HTTP/1.0 200 OK\r\n\r\nhello world",  # no length: the body ends with the connection
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
    ],
    ids=["chunked", "content-length", "until-close", "interim-100"],
)
async def test_every_framing_gives_the_whole_body(client: HttpClient, answer: bytes) -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await server.read_request(reader)
        writer.write(answer)
        await writer.drain()
        if answer.startswith(b"HTTP/1.0"):
            writer.close()
        else:
            await reader.read()  # hold the connection: the body's framing, not its end, ends the answer

    server = await serving(once)
    try:
        status, _, body = await call(client, server.url)
        assert (status, body) == (200, b"hello world")
    finally:
        await server.stop()


async def test_stream_pieces_arrive_as_they_are_sent(client: HttpClient) -> None:
    release = asyncio.Event()

    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nevent1\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"6\r\nevent2\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()

    server = await serving(stream)
    try:
        response = await client.request("POST", server.url, headers={}, body=b"{}", read_timeout=5)
        try:
            assert await response.next_chunk() == b"event1"  # before the rest exists
            release.set()
            assert await response.next_chunk() == b"event2"
            assert await response.next_chunk() == b""
        finally:
            response.release()
    finally:
        await server.stop()


async def test_a_silent_vendor_times_out_and_its_connection_is_not_reused(client: HttpClient) -> None:
    async def silent_then_ok(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
    ) -> None:
        await server.read_request(reader)
        if server.connections == 1:
            await asyncio.sleep(10)
        writer.write(OK)
        await writer.drain()
        await reader.read()

    server = await serving(silent_then_ok)
    try:
        with pytest.raises(ReadTimedOut, match=rf"127.0.0.1:{server.port} sent no answer for 0\.2 s"):
            await call(client, server.url, read_timeout=0.2)
        status, _, _ = await call(client, server.url)
        assert status == 200 and server.connections == 2
    finally:
        await server.stop()


async def test_a_body_that_stops_midway_times_out(client: HttpClient) -> None:
    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(10)

    server = await serving(stalls)
    try:
        with pytest.raises(ReadTimedOut, match=r"sent nothing for 0\.2 s"):
            await call(client, server.url, read_timeout=0.2)
    finally:
        await server.stop()


async def test_a_cut_answer_is_broken(client: HttpClient) -> None:
    async def cuts(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()

    server = await serving(cuts)
    try:
        with pytest.raises(AnswerBroken, match="closed the connection before the answer ended"):
            await call(client, server.url)
    finally:
        await server.stop()


async def test_garbage_is_a_broken_answer(client: HttpClient) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await server.read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        await reader.read()

    server = await serving(garbage)
    try:
        with pytest.raises(AnswerBroken, match="malformed HTTP answer"):
            await call(client, server.url)
    finally:
        await server.stop()


async def test_a_kept_alive_connection_the_vendor_dropped_is_replaced(client: HttpClient) -> None:
    async def one_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
    ) -> None:
        await server.read_request(reader)
        writer.write(OK)  # says nothing of closing, then closes once the next request arrives
        await writer.drain()
        await reader.read(1)

    server = await serving(one_per_connection)
    try:
        for _ in range(3):
            status, _, _ = await call(client, server.url)
            assert status == 200
        assert server.connections == 3 and len(server.requests) == 3
    finally:
        await server.stop()


async def test_idle_connections_past_their_time_are_closed_not_reused(
    client: HttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_client, "IDLE_SECONDS", 0.2)
    server = await serving(keep_alive_ok)
    try:
        await asyncio.gather(call(client, server.url), call(client, server.url))  # two at once
        assert server.connections == 2
        await asyncio.sleep(0.3)
        await call(client, server.url)  # both idled too long: a new connection, the old two closed
        await asyncio.sleep(0.1)
        assert (server.connections, server.closed) == (3, 2)
    finally:
        await server.stop()


async def test_an_unused_idle_connection_is_closed_once_past_its_time(
    client: HttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_client, "IDLE_SECONDS", 1.0)
    server = await serving(keep_alive_ok)
    try:
        await asyncio.gather(call(client, server.url), call(client, server.url))  # idle: [a, b]
        await asyncio.sleep(0.6)
        await call(client, server.url)  # reuses b, the newest
        await asyncio.sleep(0.6)
        await call(client, server.url)  # b again; a has idled 1.2 s and is closed when b comes back
        await asyncio.sleep(0.1)
        assert (server.connections, server.closed) == (2, 1)
    finally:
        await server.stop()


async def test_nothing_listening_is_a_connect_failure(client: HttpClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectFailed, match=f"cannot connect to 127.0.0.1:{port}"):
        await call(client, f"http://127.0.0.1:{port}/v1/messages")


async def test_a_header_with_a_line_break_is_never_sent(client: HttpClient) -> None:
    server = await serving(keep_alive_ok)
    try:
        with pytest.raises(UpstreamError, match="holds a line break"):
            await client.request(
                "POST", server.url, headers={"x-api-key": "k\r\nx-evil: 1"}, body=b"", read_timeout=5
            )
        assert server.requests == []
    finally:
        await server.stop()


async def test_a_large_answer_read_slowly_arrives_whole(client: HttpClient) -> None:
    size = PAUSE_READING_AT * 3

    async def large(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // 65536):
            writer.write(b"x" * 65536)
            await writer.drain()
        await reader.read()

    server = await serving(large)
    try:
        response = await client.request("POST", server.url, headers={}, body=b"{}", read_timeout=5)
        try:
            received = 0
            while piece := await response.next_chunk():
                received += len(piece)
                await asyncio.sleep(0.001)  # a slow reader: the client pauses the socket meanwhile
            assert received == size
        finally:
            response.release()
    finally:
        await server.stop()


@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_requests_go_through_an_outbound_proxy(client: HttpClient, kind: str) -> None:
    server = await serving(keep_alive_ok)
    try:
        with TunnelProxy(kind) as proxy:
            proxy_url = f"{kind}://relay:tunnel-secret@127.0.0.1:{proxy.port}"
            for _ in range(2):
                status, _, body = await call(client, server.url, proxy_url=proxy_url)
                assert (status, body) == (200, b"{}")
            assert proxy.seen.connections == 1  # the tunnel is kept alive like a direct connection
            assert proxy.seen.credentials == ["relay:tunnel-secret"]
            assert proxy.seen.targets == [f"127.0.0.1:{server.port}"]
        if kind == "http":  # an http:// target is asked for in absolute form
            assert server.requests[0].startswith(f"POST {server.url} HTTP/1.1\r\n".encode())
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("url", "host_header", "origin_form"),
    [
        ("https://api.example.com/v1/messages?beta=true", "api.example.com", "/v1/messages?beta=true"),
        ("http://api.example.com:80/v1", "api.example.com", "/v1"),
        ("https://api.example.com:8443", "api.example.com:8443", "/"),
        ("http://[::1]:8080/v1/chat", "[::1]:8080", "/v1/chat"),
    ],
)
def test_a_url_gives_its_request_line_and_host_once_parsed(
    url: str, host_header: str, origin_form: str
) -> None:
    target = _parsed(url)
    assert (target.host_header, target.origin_form, target.absolute_form) == (
        host_header,
        origin_form,
        str(URL(url)),
    )
    assert _parsed(url) is target  # parsed once: vendor URLs repeat
    assert _target_of(URL(url)) == target  # a URL object (a signed path) gives the same, uncached
