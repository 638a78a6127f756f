"""The ``/gemini/v1/chat`` translation (OpenAI-like body → Gemini ``generateContent``) and Gemini usage."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from google.genai import types

from aiproxy.gateway.convert import SSEParser, chat_request_to_gemini, gemini_usage
from aiproxy.mock_upstream import MockUpstream

GEMINI = "gemini-2.5-flash"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "client-requests.jsonl"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def upstream() -> AsyncIterator[MockUpstream]:
    async with MockUpstream(words=6) as up:
        yield up


def assert_valid_gemini(body: dict[str, Any]) -> None:
    """The google-genai models forbid unknown fields, so a misspelt key fails here."""
    for content in body["contents"]:
        types.Content.model_validate(content)
    if "systemInstruction" in body:
        types.Content.model_validate(body["systemInstruction"])
    types.GenerationConfig.model_validate(body.get("generationConfig", {}))


def test_openai_sdk_fixture_body() -> None:
    line = FIXTURES.read_text().splitlines()[10]
    body = json.loads(line)["body"]  # the OpenAI SDK's request, as sent to /gemini/v1/chat
    out = chat_request_to_gemini(body)
    assert out == {
        "contents": [{"role": "user", "parts": [{"text": "hello from the sdk check please answer"}]}],
        "systemInstruction": {"parts": [{"text": "You are a terse test assistant."}]},
    }
    assert_valid_gemini(out)


def test_conversation_roles_parts_and_config() -> None:
    png = "data:image/png;base64,iVBORw0KGgo="
    body = {
        "model": GEMINI,
        "stream": True,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image_url", "image_url": {"url": png}},
                ],
            },
            {"role": "user", "content": "What is it?"},
            {"role": "assistant", "content": "A pixel."},
            {"role": "assistant", "content": ""},  # empty: dropped
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
            },  # dropped
            {"role": "user", "content": "Sure?"},
            {"role": "tool", "content": "ignored"},
        ],
        "max_tokens": 256,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": "END",
        "n": 2,
    }
    before = copy.deepcopy(body)
    out = chat_request_to_gemini(body)
    assert body == before
    assert out["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Answer in English."}]}
    assert out["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Look:"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"text": "What is it?"},
            ],
        },
        {"role": "model", "parts": [{"text": "A pixel."}]},
        {"role": "user", "parts": [{"text": "Sure?"}]},
    ]
    assert out["generationConfig"] == {
        "maxOutputTokens": 256,
        "temperature": 0.3,
        "topP": 0.9,
        "stopSequences": ["END"],
    }
    assert set(out) == {"contents", "systemInstruction", "generationConfig"}  # model and stream go in the URL
    assert_valid_gemini(out)


@pytest.mark.parametrize(
    ("extra", "config"),
    [
        ({"max_completion_tokens": 9, "max_tokens": 5}, {"maxOutputTokens": 9}),
        (
            {"stop": ["a", "", "b"], "seed": 4, "top_k": 20},
            {"stopSequences": ["a", "b"], "seed": 4, "topK": 20},
        ),
        (
            {"presence_penalty": 0.5, "frequency_penalty": -0.5},
            {"presencePenalty": 0.5, "frequencyPenalty": -0.5},
        ),
        ({"response_format": {"type": "json_object"}}, {"responseMimeType": "application/json"}),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "r", "schema": {"type": "object"}},
                }
            },
            {"responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}},
        ),
        ({"temperature": None, "max_tokens": 0, "stream_options": {"include_usage": True}}, None),
    ],
)
def test_generation_config_fields(extra: dict[str, Any], config: dict[str, Any] | None) -> None:
    out = chat_request_to_gemini({"messages": [{"role": "user", "content": "x"}], **extra})
    assert out.get("generationConfig") == config
    assert_valid_gemini(out)


def test_gemini_usage_mapping() -> None:
    meta = {
        "promptTokenCount": 1000,
        "cachedContentTokenCount": 600,
        "candidatesTokenCount": 50,
        "thoughtsTokenCount": 200,
        "totalTokenCount": 1250,
    }
    expected = {
        "input_tokens": 400,
        "output_tokens": 250,
        "cache_read_input_tokens": 600,
        "cache_creation_input_tokens": 0,
    }
    assert gemini_usage({"candidates": [], "usageMetadata": meta}) == expected
    assert gemini_usage(meta) == expected  # the usageMetadata itself is accepted too
    zero = dict.fromkeys(expected, 0)
    assert gemini_usage({"candidates": []}) == zero
    assert (
        gemini_usage({"usageMetadata": {"promptTokenCount": 7, "toolUsePromptTokenCount": 3}})["input_tokens"]
        == 10
    )


async def gemini_call(upstream: MockUpstream, method: str, body: dict[str, Any], query: str = "") -> bytes:
    url = upstream.url(f"/v1beta/models/{GEMINI}:{method}{query}")
    headers = {"x-goog-api-key": "AIza-test", "x-mock-cache-read": "12"}
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as r:
        assert r.status == 200
        return await r.read()


async def test_usage_of_mock_answers_matches_what_the_upstream_billed(upstream: MockUpstream) -> None:
    body = chat_request_to_gemini({"messages": [{"role": "user", "content": "hello " * 40}], "max_tokens": 4})
    raw = await gemini_call(upstream, "generateContent", body)
    answer = types.GenerateContentResponse.model_validate(orjson.loads(raw))
    assert answer.candidates and answer.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert gemini_usage(orjson.loads(raw)) == upstream.requests[-1]["tokens"]

    raw = await gemini_call(upstream, "streamGenerateContent", body, "?alt=sse")
    chunks = [orjson.loads(data) for _, data in SSEParser().feed(raw)]
    assert len(chunks) == 4
    # Every chunk carries cumulative usage; the last one is what gets billed.
    assert gemini_usage(chunks[-1]) == upstream.requests[-1]["tokens"]
    for i in range(len(raw) + 1):
        parser = SSEParser()
        assert [orjson.loads(d) for _, d in parser.feed(raw[:i]) + parser.feed(raw[i:])] == chunks
