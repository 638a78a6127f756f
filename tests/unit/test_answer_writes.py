"""How an answer reaches the connection: a whole answer in one write, a stream's head with its first
event or at the end of the turn.

The server protocol is driven in process with a transport that records each write, since over a real
socket two writes in quick succession may arrive in one read and the difference would not show.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from aiproxy.serving import GuardedHttpToolsProtocol


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def writelines(self, pieces: Any) -> None:  # one system call for all pieces, as uvloop does
        self.writes.append(b"".join(pieces))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _connected(app: Any) -> tuple[GuardedHttpToolsProtocol, RecordingTransport]:
    config = Config(app=app, lifespan="off", access_log=False)
    config.load()
    protocol = GuardedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def _serve(app: Any, request: bytes) -> RecordingTransport:
    protocol, transport = _connected(app)
    protocol.data_received(request)
    for _ in range(20):  # let the request task run to its end
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport


def _answer(body: bytes, *, length: bool = True, status: int = 200) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"application/json")]
        if length:
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


GET = b"GET /v1/models HTTP/1.1\r\nhost: relay\r\n\r\n"


async def test_an_answer_of_known_length_leaves_in_one_write() -> None:
    transport = await _serve(_answer(b'{"ok":true}'), GET)
    assert len(transport.writes) == 1
    head, body = transport.writes[0].split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 11" in head
    assert body == b'{"ok":true}'


async def test_two_answers_on_one_connection_each_leave_in_one_write() -> None:
    transport = await _serve(_answer(b"{}"), GET + GET)
    assert len(transport.writes) == 2
    assert all(write.endswith(b"\r\n\r\n{}") for write in transport.writes)


async def test_a_stream_shows_its_head_while_its_first_event_is_slow() -> None:
    gate = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await gate.wait()
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    protocol, transport = _connected(app)
    protocol.data_received(b"POST /v1/messages HTTP/1.1\r\nhost: relay\r\ncontent-length: 2\r\n\r\n{}")
    for _ in range(5):
        await asyncio.sleep(0)
    # The first event has not come: the head has left on its own, within a turn of the event loop.
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b"transfer-encoding: chunked\r\n\r\n")
    gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert transport.writes[1:] == [b"9\r\ndata: 1\n\n\r\n", b"0\r\n\r\n"]
    protocol.connection_lost(None)


async def test_a_stream_whose_first_event_is_ready_sends_them_in_one_write() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:  # as the relay streams: event in hand
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})

    protocol, transport = _connected(app)
    protocol.data_received(b"POST /v1/messages HTTP/1.1\r\nhost: relay\r\ncontent-length: 2\r\n\r\n{}")
    for _ in range(5):
        await asyncio.sleep(0)
    head, end = transport.writes
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert head.endswith(b"transfer-encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n") and end == b"0\r\n\r\n"
    protocol.connection_lost(None)


async def test_an_answer_to_head_is_not_held_for_a_body_never_written() -> None:
    transport = await _serve(_answer(b'{"ok":true}'), b"HEAD /v1/models HTTP/1.1\r\nhost: relay\r\n\r\n")
    assert len(transport.writes) == 1
    assert transport.writes[0].endswith(b"content-length: 11\r\n\r\n")


async def test_an_answer_cut_short_still_shows_its_head() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"100")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise RuntimeError("the application failed before its body")

    transport = await _serve(app, GET)
    assert transport.closed
    assert len(transport.writes) == 1 and transport.writes[0].startswith(b"HTTP/1.1 200 OK")


async def test_a_failed_application_gets_its_500_in_one_write() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("the application failed before answering")

    transport = await _serve(app, GET)
    (answer,) = transport.writes
    assert answer.startswith(b"HTTP/1.1 500") and answer.endswith(b"Internal Server Error")
