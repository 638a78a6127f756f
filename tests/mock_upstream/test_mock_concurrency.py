"""The fake counts the requests it is answering per credential, and the most at once since its reset."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio

from aiproxy.mock_upstream import MockUpstream

BODY = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 10,
    "stream": True,
    "messages": [{"role": "user", "content": "x"}],
}


@pytest_asyncio.fixture(loop_scope="session")
async def upstream() -> AsyncIterator[MockUpstream]:
    async with MockUpstream(words=3) as up:
        yield up


async def _concurrency(http: aiohttp.ClientSession, upstream: MockUpstream) -> dict[str, Any]:
    async with http.get(upstream.url("/__mock/concurrency")) as resp:
        return await resp.json()  # type: ignore[no-any-return]


async def _stream(http: aiohttp.ClientSession, upstream: MockUpstream, key: str) -> None:
    async with http.post(upstream.url("/v1/messages"), json=BODY, headers={"x-api-key": key}) as resp:
        await resp.read()


async def test_in_flight_and_peak_per_credential(upstream: MockUpstream) -> None:
    upstream.set_behaviour("slow", key="busy", delay_ms=60)
    async with aiohttp.ClientSession() as http:
        running = [asyncio.ensure_future(_stream(http, upstream, "busy")) for _ in range(3)]
        await asyncio.sleep(0.15)
        during = await _concurrency(http, upstream)
        assert during["in_flight"] == {"busy": 3}
        upstream.reset()  # requests still being answered stay counted
        assert (await _concurrency(http, upstream))["peak"] == {"busy": 3}
        await asyncio.gather(*running)
        await _stream(http, upstream, "quick")
        after = await _concurrency(http, upstream)
        assert after == {"in_flight": {}, "peak": {"busy": 3, "quick": 1}}

        # A client that leaves mid-stream is no longer counted.
        upstream.set_behaviour("slow", key="left", delay_ms=200)
        async with http.post(upstream.url("/v1/messages"), json=BODY, headers={"x-api-key": "left"}) as resp:
            await resp.content.readany()
            resp.close()
        for _ in range(50):
            if "left" not in (await _concurrency(http, upstream))["in_flight"]:
                break
            await asyncio.sleep(0.05)
        assert (await _concurrency(http, upstream))["in_flight"] == {}
