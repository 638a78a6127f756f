"""The fake's Responses API beyond `create`, through the official SDK: compaction, token counting, and the
calls on a stored response; and compressed request bodies, which it decodes like the vendors do."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import aiohttp
import openai
import orjson
import pytest
import pytest_asyncio
import zstandard

from aiproxy.mock_upstream import MockUpstream, count_input_tokens

GPT = "gpt-5-codex"
CONVERSATION = [
    {"role": "user", "content": "Explain the relay."},
    {"role": "assistant", "content": "It forwards requests."},
    {"role": "user", "content": "Shorter."},
]


@pytest_asyncio.fixture(loop_scope="session")
async def upstream() -> AsyncIterator[MockUpstream]:
    async with MockUpstream(words=6) as up:
        yield up


def oai(upstream: MockUpstream) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=upstream.base_url + "/v1", api_key="sk-test", max_retries=0)


async def test_compact_and_input_tokens(upstream: MockUpstream) -> None:
    client = oai(upstream)
    compacted = await client.responses.compact(model=GPT, input=CONVERSATION)
    assert compacted.object == "response.compaction"
    assert [item.type for item in compacted.output] == ["message", "message", "compaction"]
    record = upstream.requests[-1]
    assert record["endpoint"] == "responses.compact"
    assert compacted.usage.output_tokens == record["tokens"]["output_tokens"] == 6
    counted = await client.responses.input_tokens.count(model=GPT, input="x" * 40)
    assert counted.input_tokens == count_input_tokens({"input": "x" * 40}) == 10


async def test_stored_responses_retrieve_list_cancel_delete(upstream: MockUpstream) -> None:
    client = oai(upstream)
    made = await client.responses.create(model=GPT, input="Keep me.")
    assert (await client.responses.retrieve(made.id)).output_text == made.output_text
    items = await client.responses.input_items.list(made.id)
    assert [item.content[0].text for item in items.data] == ["Keep me."]  # type: ignore[union-attr]
    with pytest.raises(openai.BadRequestError):
        await client.responses.cancel(made.id)  # not a background response
    queued = await client.responses.create(model=GPT, input="Later.", background=True)
    assert queued.status == "queued"
    assert (await client.responses.cancel(queued.id)).status == "cancelled"
    await client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(made.id)
    unstored = await client.responses.create(model=GPT, input="Forget me.", store=False)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(unstored.id)


@pytest.mark.parametrize("encoding", ["zstd", "gzip"])
async def test_compressed_bodies_are_decoded(upstream: MockUpstream, encoding: str) -> None:
    body = orjson.dumps({"model": GPT, "input": "Compressed hello.", "stream": False})
    packed = zstandard.ZstdCompressor().compress(body) if encoding == "zstd" else gzip.compress(body)
    headers = {"authorization": "Bearer sk-test", "content-encoding": encoding}
    async with (
        aiohttp.ClientSession() as http,
        http.post(upstream.url("/v1/responses"), data=packed, headers=headers) as answer,
    ):
        assert answer.status == 200
        assert (await answer.json())["object"] == "response"
    record = upstream.requests[-1]
    assert record["json"]["input"] == "Compressed hello."
    assert record["headers"]["content-encoding"] == encoding
    async with (
        aiohttp.ClientSession() as http,
        http.post(upstream.url("/v1/responses"), data=b"\x00broken", headers=headers) as broken,
    ):
        assert broken.status == 400
