"""The vendor's answer headers a client gets: passed on as they came, hop-by-hop and vendor-edge ones
dropped, repeated ones kept, names lower-cased; for a whole answer and for a stream.

The vendor here is a raw socket server on 127.0.0.1 that writes its answer byte for byte, so the
test controls what the fake upstream's framework would normalise (case, repeats, order).
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Iterator

import anthropic
import httpx
import pytest

from .conftest import Pool
from .helpers import assert_billed, model_prices

TOKENS = {
    "input_tokens": 11,
    "output_tokens": 7,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
}
VENDOR_HEADERS = (
    b"Server: vendor-edge\r\n"
    b"Date: Mon, 30 Nov 2026 12:00:00 GMT\r\n"
    b"Set-Cookie: __edge=abc; Path=/\r\n"
    b"Vary: Accept-Encoding\r\n"
    b"Vary: Origin\r\n"
    b"Request-Id: req_raw_1\r\n"
    b"Anthropic-Ratelimit-Unified-Status: allowed\r\n"
    b"X-Odd-Value: a:b, c;d\r\n"
)


def _message() -> dict[str, object]:
    return {
        "id": "msg_raw",
        "type": "message",
        "role": "assistant",
        "model": "claude-opus-4-8",
        "content": [{"type": "text", "text": "raw hello"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": TOKENS,
    }


def _events() -> bytes:
    start = {**_message(), "content": [], "stop_reason": None, "usage": {**TOKENS, "output_tokens": 1}}
    events = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "raw hello"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 7},
        },
        {"type": "message_stop"},
    ]
    return b"".join(f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode() for data in events)


class _Vendor(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn: socket.socket = self.request
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.lower().split(b"\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in lines if line.startswith(b"content-length:"))
        while len(body) < length:
            body += conn.recv(65536)
        if json.loads(body).get("stream"):
            events = _events()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                + VENDOR_HEADERS
                + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                + f"{len(events):x}\r\n".encode()
                + events
                + b"\r\n0\r\n\r\n"
            )
        else:
            answer = json.dumps(_message()).encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + VENDOR_HEADERS
                + f"Content-Length: {len(answer)}\r\nConnection: close\r\n\r\n".encode()
                + answer
            )


@pytest.fixture
def vendor() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Vendor)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _passed_on(headers: httpx.Headers) -> None:
    assert headers.get_list("vary") == ["Accept-Encoding", "Origin"]  # both, in order
    assert headers["request-id"] == "req_raw_1"
    assert headers["anthropic-ratelimit-unified-status"] == "allowed"
    assert headers["x-odd-value"] == "a:b, c;d"
    assert "set-cookie" not in headers
    assert "vendor-edge" not in headers.get_list("server")
    assert "Mon, 30 Nov 2026 12:00:00 GMT" not in headers.get_list("date")
    names = [name for name, _ in headers.raw]
    assert all(name == name.lower() for name in names), names


def test_a_whole_answer_keeps_the_vendors_headers(pool: Pool, vendor: str) -> None:
    pool.add_account(base_url=vendor)
    reply = httpx.post(
        f"{pool.relay.base_url}/claude/v1/messages",
        headers={"x-api-key": pool.key},
        json={"model": "claude-opus-4-8", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert reply.status_code == 200, reply.text
    _passed_on(reply.headers)
    assert reply.headers.get_list("content-type") == ["application/json"]
    assert reply.json() == _message()  # the body as the vendor wrote it
    assert int(reply.headers["content-length"]) == len(reply.content)
    (log,) = pool.logs(expect=1)
    assert log["status"] == "success"
    assert_billed(log, TOKENS, model_prices(pool.admin, "claude-opus-4-8"))


def test_a_stream_keeps_the_vendors_headers(pool: Pool, vendor: str) -> None:
    pool.add_account(base_url=vendor)
    client = anthropic.Anthropic(base_url=f"{pool.relay.base_url}/claude", api_key=pool.key, max_retries=0)
    with client.messages.with_streaming_response.create(
        model="claude-opus-4-8",
        max_tokens=16,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
    ) as response:
        headers = response.headers
        text = "".join(response.iter_text())
    _passed_on(headers)
    assert headers.get_list("content-type") == ["text/event-stream; charset=utf-8"]
    assert headers["cache-control"] == "no-cache" and headers["x-accel-buffering"] == "no"
    assert "raw hello" in text and "message_stop" in text
    (log,) = pool.logs(expect=1)
    assert log["status"] == "success" and log["stream"]
    assert_billed(log, TOKENS, model_prices(pool.admin, "claude-opus-4-8"))
