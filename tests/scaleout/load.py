"""Client side of the scale-out tests: concurrent requests split across the instances.

Every request opens a connection of its own (no keep-alive), so the kernel hands it to whichever
worker of its instance accepts first, and carries a tag of its own in its User-Agent, which the
request log keeps: each request the client sent can be matched with its one row.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from .conftest import MODEL, Row

PATH = "/claude/v1/messages"
ANSWER_TOKENS = 8  # what the fake upstream writes by default, and what every request asks for


def body(*, stream: bool = False, prompt: str = "hi", max_tokens: int = ANSWER_TOKENS) -> bytes:
    """A Messages request; its length decides the relay's estimate of its input (bytes / 4 + 1)."""
    fields: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
    }
    if stream:
        fields["stream"] = True
    return orjson.dumps(fields)


@dataclass
class Reply:
    tag: str
    status: int
    json: Any  # the decoded body (None for a stream)
    headers: httpx.Headers
    tokens: int = 0  # the tokens the answer reported (input, output and cache), for a 200
    done: float = 0.0  # time.monotonic() when the answer was complete

    @property
    def message(self) -> str:
        return (
            str(self.json["error"]["message"]) if isinstance(self.json, dict) and "error" in self.json else ""
        )


def usage_tokens(usage: dict[str, Any]) -> int:
    return sum(
        int(usage.get(name) or 0)
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        )
    )


def stream_tokens(raw: bytes) -> int:
    """The tokens a whole Anthropic stream reported: `message_delta` repeats the cumulative counts."""
    total = 0
    for line in raw.split(b"\n"):
        if line.startswith(b"data: ") and b'"message_delta"' in line:
            total = usage_tokens(orjson.loads(line[6:])["usage"])
    return total


def fresh_connections() -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    return httpx.AsyncClient(timeout=60, limits=limits)


async def send(
    client: httpx.AsyncClient,
    base: str,
    key: str,
    tag: str,
    content: bytes,
    headers: dict[str, str] | None = None,
) -> Reply:
    request_headers = {
        "x-api-key": key,
        "content-type": "application/json",
        "user-agent": tag,
        **(headers or {}),
    }
    answer = await client.post(base + PATH, content=content, headers=request_headers)
    done = time.monotonic()
    if answer.headers.get("content-type", "").startswith("text/event-stream"):
        return Reply(tag, answer.status_code, None, answer.headers, stream_tokens(answer.content), done)
    data = answer.json()
    tokens = usage_tokens(data["usage"]) if answer.status_code == 200 else 0
    return Reply(tag, answer.status_code, data, answer.headers, tokens, done)


async def _burst(
    bases: Sequence[str], key: str, n: int, tag: str, content: bytes, headers: list[dict[str, str]] | None
) -> list[Reply]:
    async with fresh_connections() as client:
        return list(
            await asyncio.gather(
                *(
                    send(
                        client,
                        bases[i % len(bases)],
                        key,
                        f"{tag}/{i}",
                        content,
                        headers[i] if headers else None,
                    )
                    for i in range(n)
                )
            )
        )


def burst(
    bases: Sequence[str],
    key: str,
    n: int,
    *,
    tag: str,
    content: bytes | None = None,
    headers: list[dict[str, str]] | None = None,
) -> list[Reply]:
    """`n` requests at once, alternating between the instances; `headers[i]` adds to request i's."""
    return asyncio.run(_burst(bases, key, n, tag, content or body(), headers))


def statuses(replies: Sequence[Reply]) -> Counter[int]:
    return Counter(reply.status for reply in replies)


def assert_one_row_each(rows: Sequence[Row], replies: Sequence[Reply]) -> dict[str, Row]:
    """Every request sent has exactly one request-log row, with the status the client saw and, when
    served, the tokens the client was given; there is no other row."""
    by_tag: dict[str, list[Row]] = {}
    for row in rows:
        by_tag.setdefault(row.user_agent, []).append(row)
    assert len(rows) == len(replies), (len(rows), len(replies))
    assert len({row.request_id for row in rows}) == len(rows)
    for reply in replies:
        found = by_tag.get(reply.tag, [])
        assert len(found) == 1, (reply.tag, found)
        assert found[0].status_code == reply.status, (reply, found[0])
        if reply.status == 200:
            assert found[0].status == "success" and found[0].total_tokens == reply.tokens, (reply, found[0])
    return {tag: found[0] for tag, found in by_tag.items()}


async def _open_and_leave(host: str, port: int, request: bytes) -> int:
    """Send a streaming request, wait for the stream's first event, then close the connection."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status == 200:
            await reader.readuntil(b"event: message_start")  # mid-stream: the answer has begun
        return status
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _leave_streams(
    bases: Sequence[str], key: str, total: int, at_once: int, tag: str
) -> list[tuple[str, int]]:
    content = body(stream=True)
    targets = [httpx.URL(base) for base in bases]
    gate = asyncio.Semaphore(at_once)

    async def one(i: int) -> tuple[str, int]:
        target = targets[i % len(targets)]
        request = (
            f"POST {PATH} HTTP/1.1\r\nhost: {target.host}:{target.port}\r\nx-api-key: {key}\r\n"
            f"user-agent: {tag}/{i}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(content)}\r\n\r\n"
        ).encode() + content
        async with gate:
            return f"{tag}/{i}", await _open_and_leave(target.host, target.port or 80, request)

    return list(await asyncio.gather(*(one(i) for i in range(total))))


def leave_streams(
    bases: Sequence[str], key: str, total: int, *, at_once: int, tag: str
) -> list[tuple[str, int]]:
    """`total` streams, `at_once` of them open at any time, alternating between the instances; each
    connection is closed once its stream has begun. Returns (tag, HTTP status) per request."""
    return asyncio.run(_leave_streams(bases, key, total, at_once, tag))
