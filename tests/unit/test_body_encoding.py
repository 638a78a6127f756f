"""The body decoder's bound: a bomb is refused having produced at most one step past the limit."""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
import zlib
from typing import Any

import pytest
import zstandard

from aiproxy.gateway import body_encoding
from aiproxy.gateway.asgi import BodyTooLarge

LIMIT = 1024 * 1024


def receiver(data: bytes, step: int = 64 * 1024) -> Any:
    parts = [data[i : i + step] for i in range(0, len(data), step)]
    messages = iter(
        [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    )

    async def receive() -> dict[str, Any]:
        return next(messages)

    return receive


@pytest.mark.parametrize("encoding", ["zstd", "gzip"])
def test_a_bomb_never_allocates_much_past_the_bound(monkeypatch: pytest.MonkeyPatch, encoding: str) -> None:
    monkeypatch.setattr(body_encoding, "MAX_BODY", LIMIT)
    zeros = b"\0" * (64 * LIMIT)
    bomb = zstandard.ZstdCompressor().compress(zeros) if encoding == "zstd" else gzip.compress(zeros)
    del zeros
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLarge):
            asyncio.run(body_encoding.read_decoded_body(receiver(bomb), encoding.encode()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * LIMIT, peak  # the bound plus a decoder step, not the 64 MiB it expands to


@pytest.mark.parametrize("encoding", ["zstd", "gzip", "deflate"])
def test_a_body_split_anywhere_decodes_whole(encoding: str) -> None:
    plain = b'{"input": "' + b"relay " * 50_000 + b'"}'
    if encoding == "zstd":
        packed = zstandard.ZstdCompressor().compress(plain)
    elif encoding == "gzip":
        packed = gzip.compress(plain)
    else:
        packed = zlib.compress(plain)
    for step in (1, 7, 4096):
        decoded = asyncio.run(body_encoding.read_decoded_body(receiver(packed, step), encoding.encode()))
        assert decoded == plain
