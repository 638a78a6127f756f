"""Compressed request bodies on every proxy route: decoded before anything reads them, sent upstream plain,
billed and logged as a plain body; a bomb, a corrupt stream and an unknown encoding are refused in the
client's own error shape, without calling anyone, each as one request-log row."""

from __future__ import annotations

import functools
import gzip
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import zstandard

from .conftest import Pool
from .helpers import assert_billed, model_prices

MAX_BODY = 64 * 1024 * 1024  # the relay's bound on a body, plain or decompressed


def _deflate(data: bytes) -> bytes:
    return zlib.compress(data)


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "gzip": gzip.compress,
    "deflate": _deflate,
}


@dataclass(frozen=True)
class Route:
    account_type: str
    path: str
    model: str
    body: dict[str, Any]
    auth: str  # the header the client's SDK puts the key in

    def headers(self, key: str, encoding: str) -> dict[str, str]:
        value = f"Bearer {key}" if self.auth == "authorization" else key
        return {self.auth: value, "content-type": "application/json", "content-encoding": encoding}


PROMPT = "Please summarise the relay's design in a few words. " * 20
ROUTES = {
    "claude": Route(
        "claude-official",
        "/claude/v1/messages",
        "claude-opus-4-8",
        {"model": "claude-opus-4-8", "max_tokens": 100, "messages": [{"role": "user", "content": PROMPT}]},
        "x-api-key",
    ),
    "chat": Route(
        "openai",
        "/openai/v1/chat/completions",
        "gpt-4o-mini",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]},
        "authorization",
    ),
    "responses": Route(
        "openai-responses",
        "/v1/responses",
        "gpt-5-codex",
        {"model": "gpt-5-codex", "input": PROMPT, "stream": False},
        "authorization",
    ),
    "gemini": Route(
        "gemini",
        "/gemini/v1beta/models/gemini-2.5-flash:generateContent",
        "gemini-2.5-flash",
        {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]},
        "x-goog-api-key",
    ),
}


def error_shape(family: str, body: dict[str, Any], status: int) -> str:
    """The error's message, after checking the body is the shape the family's SDK parses."""
    if family == "claude":
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
        return str(body["error"]["message"])
    error = body["error"]
    if family == "gemini":
        assert error["code"] == status and error["status"] == "INVALID_ARGUMENT", body
        return str(error["message"])
    assert error["type"] == "invalid_request_error", body
    if family == "responses":
        codes = {400: "invalid_request", 413: "request_too_large", 415: "unsupported_media_type"}
        assert error["code"] == codes[status] and error["param"] is None, body
    return str(error["message"])


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
@pytest.mark.parametrize("family", sorted(ROUTES))
def test_a_compressed_body_is_served_as_if_plain(pool: Pool, family: str, encoding: str) -> None:
    route = ROUTES[family]
    credential = pool.add_account(route.account_type)
    plain = orjson.dumps(route.body)
    compressed = ENCODERS[encoding](plain)
    assert len(compressed) < len(plain) // 4  # really compressed: the relay could not read it as is
    answer = httpx.post(
        pool.relay.base_url + route.path,
        content=compressed,
        headers=route.headers(pool.key, encoding),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert "Hello from mock" in answer.text

    (record,) = pool.upstream.requests_for(credential)
    assert "content-encoding" not in record["headers"]  # the upstream gets the plain body
    sent = record["json"]
    for field, value in route.body.items():
        if field != "model":  # (a Gemini native body names its model in the path)
            assert sent[field] == value, field
    (log,) = pool.logs(expect=1)
    assert log["status"] == "success" and log["path"] == route.path
    assert_billed(log, record["tokens"], model_prices(pool.admin, route.model))
    key = pool.user.ok("GET", f"/api/api-keys/{pool.key_id}")
    assert key["request_count"] == 1 and key["used_tokens"] == log["total_tokens"]


def test_the_logged_body_is_the_decompressed_text(pool: Pool) -> None:
    route = ROUTES["responses"]
    pool.add_account(route.account_type)
    configs = (("capture_request_body", True), ("capture_body_max_bytes", 100))
    for name, value in configs:
        pool.admin.ok("PUT", "/api/admin/configs", json={"key": name, "value": value})
    try:
        answer = httpx.post(
            pool.relay.base_url + route.path,
            content=ENCODERS["zstd"](orjson.dumps(route.body)),
            headers=route.headers(pool.key, "zstd"),
        )
    finally:
        pool.admin.ok("PUT", "/api/admin/configs", json={"key": "capture_request_body", "value": False})
        pool.admin.ok("PUT", "/api/admin/configs", json={"key": "capture_body_max_bytes", "value": 16384})
    assert answer.status_code == 200, answer.text
    (log,) = pool.logs(expect=1)
    full = pool.admin.ok("GET", f"/api/admin/logs/{log['id']}")
    assert full["request_body"] == orjson.dumps(route.body).decode()[:100]
    assert '"content-encoding":"zstd"' in full["request_headers"]


@functools.cache
def bomb(encoding: str) -> bytes:
    """A small body that decompresses to more than the relay's bound (zeros compress very well)."""
    zeros = b"\0" * (MAX_BODY + 1024 * 1024)
    return ENCODERS[encoding](zeros)


REFUSALS: dict[str, tuple[Callable[[], bytes], str, int, str]] = {
    # name: (body, content-encoding, status, words in the message)
    "zstd bomb": (lambda: bomb("zstd"), "zstd", 413, "too large"),
    "gzip bomb": (lambda: bomb("gzip"), "gzip", 413, "too large"),
    "deflate bomb": (lambda: bomb("deflate"), "deflate", 413, "too large"),
    "corrupt zstd": (lambda: b"\x28\xb5\x2f\xfd" + b"not really zstd at all", "zstd", 400, "decompress"),
    "corrupt gzip": (lambda: gzip.compress(b'{"model": "x"}')[:-6] + b"\xff" * 6, "gzip", 400, "decompress"),
    "cut gzip": (lambda: gzip.compress(orjson.dumps(ROUTES["chat"].body))[:40], "gzip", 400, "decompress"),
    "brotli": (lambda: b"\x8b\x02\x80hello\x03", "br", 415, "br"),
    "unknown": (lambda: b"{}", "snappy", 415, "snappy"),
    "stacked": (lambda: gzip.compress(gzip.compress(b"{}")), "gzip, gzip", 415, "one content-encoding"),
}


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
def test_bad_compressed_bodies_are_refused_on_the_responses_route(pool: Pool, refusal: str) -> None:
    make_body, encoding, status, words = REFUSALS[refusal]
    route = ROUTES["responses"]
    credential = pool.add_account(route.account_type)
    answer = httpx.post(
        pool.relay.base_url + route.path,
        content=make_body(),
        headers=route.headers(pool.key, encoding),
        timeout=30,
    )
    assert answer.status_code == status, answer.text
    assert words in error_shape("responses", answer.json(), status).lower()
    assert pool.upstream.requests_for(credential) == []
    (log,) = pool.logs(expect=1)
    assert (log["status"], log["status_code"], log["total_tokens"], log["cost"]) == ("rejected", status, 0, 0)


@pytest.mark.parametrize("family", sorted(ROUTES))
def test_each_route_refuses_in_its_own_error_shape(pool: Pool, family: str) -> None:
    """A bomb (413), a corrupt body (400) and an unknown encoding (415), in the family's error shape."""
    route = ROUTES[family]
    credential = pool.add_account(route.account_type)
    cases = (
        (bomb("zstd"), "zstd", 413),
        (b"\x1f\x8b\x08\x00 broken", "gzip", 400),
        (b"\x8b\x02\x80{}\x03", "br", 415),
    )
    for body, encoding, status in cases:
        answer = httpx.post(
            pool.relay.base_url + route.path, content=body, headers=route.headers(pool.key, encoding)
        )
        assert answer.status_code == status, (encoding, answer.text)
        assert error_shape(family, answer.json(), status)
    assert pool.upstream.requests_for(credential) == []
    logs = pool.logs(expect=3)
    assert sorted(log["status_code"] for log in logs) == [400, 413, 415]
    assert all(log["status"] == "rejected" and log["path"] == route.path for log in logs)


def test_a_plain_body_with_identity_encoding_is_plain(pool: Pool) -> None:
    route = ROUTES["chat"]
    credential = pool.add_account(route.account_type)
    answer = httpx.post(
        pool.relay.base_url + route.path,
        content=orjson.dumps(route.body),
        headers=route.headers(pool.key, "identity"),
    )
    assert answer.status_code == 200, answer.text
    assert len(pool.upstream.requests_for(credential)) == 1
    assert pool.logs(expect=1)[0]["status"] == "success"
