"""Connection limits: bounded headers, header and body deadlines, a cap on connections.

Each test starts its own relay with small limits, talks raw TCP where a real client library
would refuse to misbehave, and checks that nothing oversized reaches the request log.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..support import RelayServer

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayServer]:
    data_dir: Path = tmp_path_factory.mktemp("guarded")
    server = RelayServer(
        data_dir=data_dir,
        env_overrides={
            "AIPROXY_MAX_HEADER_BYTES": "8192",
            "AIPROXY_HEADER_TIMEOUT": "1.5",
            "AIPROXY_BODY_IDLE_TIMEOUT": "1.5",
            "AIPROXY_KEEPALIVE_TIMEOUT": "1",
            "AIPROXY_MAX_CONNECTIONS": "100",
        },
    )
    server.set_configs({"captcha_enabled": "false"})  # migrates first
    server.start()
    yield server
    server.stop()


def _connect(server: RelayServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _admin_token(server: RelayServer) -> str:
    response = httpx.post(
        f"{server.base_url}/api/auth/login", json={"username": "admin", "password": "admin-test-pass"}
    )
    return response.json()["data"]["token"]


def test_oversized_headers_get_431_and_are_never_logged(guarded: RelayServer) -> None:
    token = _admin_token(guarded)
    before = httpx.get(
        f"{guarded.base_url}/api/admin/logs", headers={"Authorization": f"Bearer {token}"}
    ).json()["data"]["total"]
    sock = _connect(guarded)
    filler = b"x" * 1000
    request = b"POST /claude/v1/messages HTTP/1.1\r\nhost: relay\r\nx-api-key: sk-nope\r\n"
    request += b"".join(b"x-fill-%d: %s\r\n" % (i, filler) for i in range(20))
    request += b"content-length: 2\r\n\r\n{}"
    sock.sendall(request)
    answer = _read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    time.sleep(0.5)
    after = httpx.get(
        f"{guarded.base_url}/api/admin/logs", headers={"Authorization": f"Bearer {token}"}
    ).json()["data"]["total"]
    assert after == before
    # A header block just under the budget still works.
    response = httpx.get(f"{guarded.base_url}/health", headers={"x-fill": "y" * 6000})
    assert response.status_code == 200


def test_a_huge_single_header_is_refused_too(guarded: RelayServer) -> None:
    sock = _connect(guarded)
    sock.sendall(b"GET /health HTTP/1.1\r\nhost: relay\r\nx-big: " + b"a" * 100_000 + b"\r\n\r\n")
    answer = _read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


def test_header_deadline_closes_a_slow_loris(guarded: RelayServer) -> None:
    """Trickling one header byte at a time does not extend the deadline."""
    sock = _connect(guarded)
    started = time.monotonic()
    sock.sendall(b"GET /health HTTP/1.1\r\nhost: relay\r\n")
    closed_after = None
    for _ in range(40):
        time.sleep(0.1)
        try:
            sock.sendall(b"x")
        except OSError:
            closed_after = time.monotonic() - started
            break
        sock.settimeout(0.01)
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        closed_after = time.monotonic() - started
        assert data.startswith(b"HTTP/1.1 408") or data == b"", data[:100]
        break
    sock.close()
    assert closed_after is not None and closed_after < 3.0, closed_after


def test_silent_connection_is_closed(guarded: RelayServer) -> None:
    sock = _connect(guarded)
    started = time.monotonic()
    answer = _read_all(sock)
    sock.close()
    assert time.monotonic() - started < 3.0
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408")


def test_stalled_body_is_closed(guarded: RelayServer) -> None:
    sock = _connect(guarded)
    started = time.monotonic()
    sock.sendall(b"POST /api/auth/login HTTP/1.1\r\nhost: relay\r\ncontent-length: 100\r\n\r\n{")
    _read_all(sock)
    sock.close()
    assert time.monotonic() - started < 4.0


def test_idle_keep_alive_is_closed_but_a_busy_one_is_not(guarded: RelayServer) -> None:
    with httpx.Client(base_url=guarded.base_url) as client:
        for _ in range(3):  # answers within the keep-alive window reuse the connection
            assert client.get("/health").status_code == 200
    sock = _connect(guarded)
    started = time.monotonic()
    sock.sendall(b"GET /health HTTP/1.1\r\nhost: relay\r\n\r\n")
    answer = _read_all(sock)  # the answer, then the server closes the idle connection
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"status":"ok"}')
    assert time.monotonic() - started < 3.0


def test_connection_cap_answers_503_in_the_route_shape(tmp_path: Path) -> None:
    server = RelayServer(
        data_dir=tmp_path / "capped",
        env_overrides={"AIPROXY_MAX_CONNECTIONS": "64", "AIPROXY_HEADER_TIMEOUT": "30"},
    )
    server.start()
    held = []
    try:
        for _ in range(64):  # idle connections that have not sent a request yet
            held.append(_connect(server))
        sock = _connect(server)
        sock.sendall(
            b"POST /openai/v1/chat/completions HTTP/1.1\r\nhost: relay\r\ncontent-length: 2\r\n\r\n{}"
        )
        answer = _read_all(sock)
        sock.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), head
        assert b"retry-after: 1" in head.lower()
        assert b'"error"' in body and b"message" in body  # OpenAI error shape on an OpenAI route
        for sock in held:
            sock.close()
        held.clear()
        time.sleep(0.3)
        assert httpx.get(f"{server.base_url}/health").status_code == 200
    finally:
        for sock in held:
            sock.close()
        server.stop()


def test_many_half_sent_requests_neither_block_others_nor_stay_open(guarded: RelayServer) -> None:
    """Connections stuck mid-header (under the cap of 100): the relay serves others, closes them on time."""
    stuck = []
    for _ in range(90):
        sock = _connect(guarded)
        sock.sendall(b"POST /claude/v1/messages HTTP/1.1\r\nhost: relay\r\nx-api-key: sk-")
        stuck.append(sock)
    started = time.monotonic()
    assert httpx.get(f"{guarded.base_url}/health", timeout=5).status_code == 200
    assert time.monotonic() - started < 1.0
    time.sleep(2.5)  # past the 1.5 s header deadline
    closed = 0
    for sock in stuck:
        sock.settimeout(1)
        try:
            data = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            data = b"?"
        closed += data == b"" or data.startswith(b"HTTP/1.1 408")
        sock.close()
    assert closed == len(stuck)
    # Their slots under the cap are free again.
    assert httpx.get(f"{guarded.base_url}/health", timeout=5).status_code == 200


def test_header_budget_holds_for_the_next_request_on_a_kept_alive_connection(guarded: RelayServer) -> None:
    sock = _connect(guarded)
    sock.sendall(b"GET /health HTTP/1.1\r\nhost: relay\r\n\r\n")
    first = sock.recv(4096)
    assert first.startswith(b"HTTP/1.1 200")
    sock.sendall(b"GET /health HTTP/1.1\r\nhost: relay\r\nx-big: " + b"b" * 20_000 + b"\r\n\r\n")
    answer = _read_all(sock)
    sock.close()
    assert b"HTTP/1.1 431" in answer, answer[:300]
