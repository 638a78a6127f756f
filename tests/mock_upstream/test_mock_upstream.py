"""The mock upstream must be indistinguishable from the real vendors for the official SDKs.

Each test points an official SDK at the mock by base URL and checks that the SDK parses the answer and
that the usage the SDK saw is exactly the usage the mock recorded.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import httpx2
import openai
import pytest
import pytest_asyncio
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from aiproxy.mock_upstream import MockUpstream, count_input_tokens, reply_chunks

CLAUDE = "claude-sonnet-4-6"
GPT = "gpt-4.1"
GEMINI = "gemini-2.5-flash"
PROMPT = "Please say hello to the relay tests, politely and briefly."
WORDS = 8
X: list[Any] = [{"role": "user", "content": "x"}]  # a minimal conversation


def expected_text(model: str, words: int = WORDS) -> str:
    return "".join(reply_chunks(model, words))


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def upstream() -> AsyncIterator[MockUpstream]:
    async with MockUpstream(words=WORDS) as up:
        yield up


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream: MockUpstream) -> None:
    upstream.reset()


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def claude(upstream: MockUpstream, key: str = "sk-ant-test") -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=upstream.base_url, api_key=key, max_retries=0)


def oai(upstream: MockUpstream, key: str = "sk-test", base: str = "/v1") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=upstream.base_url + base, api_key=key, max_retries=0)


def gem(upstream: MockUpstream, api_version: str | None = None, key: str = "AIza-test") -> genai.Client:
    options = genai_types.HttpOptions(base_url=upstream.base_url, api_version=api_version)
    return genai.Client(api_key=key, http_options=options)


def only_request(upstream: MockUpstream) -> dict[str, Any]:
    assert len(upstream.requests) == 1, upstream.requests
    return upstream.requests[0]


def sse_events(raw: bytes) -> list[str]:
    return [line[len("event: ") :] for line in raw.decode().splitlines() if line.startswith("event: ")]


# --- usage model -------------------------------------------------------------------------------------


def test_input_tokens_follow_prompt_text_only() -> None:
    body = {
        "model": "a-very-long-model-name-that-is-ignored",
        "max_tokens": 10,
        "system": [{"type": "text", "text": "x" * 40}],
        "messages": [
            {"role": "user", "content": "y" * 40},
            {"role": "assistant", "content": [{"type": "text", "text": "z" * 20}]},
        ],
    }
    assert count_input_tokens(body) == 100 // 4
    assert count_input_tokens({}) == 1
    assert reply_chunks("m", 3) == ("Hello ", "from ", "mock")
    assert "".join(reply_chunks("m", 6)) == "Hello from mock m lorem ipsum"


# --- Anthropic ---------------------------------------------------------------------------------------


async def test_anthropic_non_stream(upstream: MockUpstream) -> None:
    msg = await claude(upstream).messages.create(
        model=CLAUDE, max_tokens=1024, messages=[{"role": "user", "content": PROMPT}]
    )
    rec = only_request(upstream)
    assert msg.content[0].text == expected_text(CLAUDE)
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == count_input_tokens(rec["json"]) == len(PROMPT) // 4
    assert msg.usage.output_tokens == WORDS
    assert rec["usage"]["input_tokens"] == msg.usage.input_tokens
    assert rec["tokens"] == {
        "input_tokens": msg.usage.input_tokens,
        "output_tokens": WORDS,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }
    assert rec["vendor"] == "anthropic" and rec["endpoint"] == "messages" and rec["api_key"] == "sk-ant-test"
    assert rec["headers"]["anthropic-version"]  # headers are recorded lower-case


async def test_anthropic_stream_final_message(upstream: MockUpstream) -> None:
    client = claude(upstream)
    async with client.messages.stream(
        model=CLAUDE, max_tokens=1024, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    rec = only_request(upstream)
    assert "".join(pieces) == expected_text(CLAUDE)
    assert len(pieces) == WORDS
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == rec["usage"]["output_tokens"] == WORDS
    assert final.usage.input_tokens == rec["usage"]["input_tokens"] == rec["tokens"]["input_tokens"]
    assert rec["stream"] is True and rec["completed"] is True


async def test_anthropic_raw_event_sequence_and_headers(
    upstream: MockUpstream, http: aiohttp.ClientSession
) -> None:
    body = {"model": CLAUDE, "max_tokens": 100, "stream": True, "messages": X}
    async with http.post(
        upstream.url("/v1/messages?beta=true"), json=body, headers={"authorization": "Bearer oauth-token"}
    ) as resp:
        raw = await resp.read()
        assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert resp.headers["anthropic-ratelimit-unified-status"] == "allowed"
        assert resp.headers["request-id"].startswith("req_")
    assert sse_events(raw) == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * WORDS,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert b"data: " in raw and raw.endswith(b"\n\n")
    assert only_request(upstream)["api_key"] == "oauth-token"


async def test_anthropic_max_tokens_truncates(upstream: MockUpstream) -> None:
    msg = await claude(upstream).messages.create(
        model=CLAUDE, max_tokens=3, messages=[{"role": "user", "content": PROMPT}]
    )
    assert msg.stop_reason == "max_tokens"
    assert msg.usage.output_tokens == 3 == only_request(upstream)["usage"]["output_tokens"]


async def test_anthropic_count_tokens_and_models(upstream: MockUpstream) -> None:
    client = claude(upstream)
    counted = await client.messages.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": PROMPT}])
    assert counted.input_tokens == len(PROMPT) // 4
    models = await client.models.list()
    assert CLAUDE in [m.id for m in models.data]


async def test_anthropic_missing_key_is_401(upstream: MockUpstream, http: aiohttp.ClientSession) -> None:
    async with http.post(upstream.url("/v1/messages"), json={"model": CLAUDE}) as resp:
        assert resp.status == 401
        payload = await resp.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "authentication_error"
    assert payload["error"]["message"]


async def test_anthropic_cache_tokens_switch(upstream: MockUpstream) -> None:
    upstream.set_behaviour(cache_read=1000, cache_creation=200)
    msg = await claude(upstream).messages.create(
        model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": PROMPT}]
    )
    assert msg.usage.cache_read_input_tokens == 1000
    assert msg.usage.cache_creation_input_tokens == 200
    assert only_request(upstream)["tokens"]["cache_read_input_tokens"] == 1000


# --- OpenAI chat -------------------------------------------------------------------------------------


async def test_openai_chat_non_stream(upstream: MockUpstream) -> None:
    completion = await oai(upstream).chat.completions.create(
        model=GPT, messages=[{"role": "user", "content": PROMPT}]
    )
    rec = only_request(upstream)
    assert completion.choices[0].message.content == expected_text(GPT)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == len(PROMPT) // 4 == rec["usage"]["prompt_tokens"]
    assert completion.usage.completion_tokens == WORDS == rec["tokens"]["output_tokens"]


async def test_openai_chat_stream_with_usage(upstream: MockUpstream) -> None:
    stream = await oai(upstream).chat.completions.create(
        model=GPT,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    rec = only_request(upstream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected_text(GPT)
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    assert last.usage.completion_tokens == WORDS == rec["usage"]["completion_tokens"]
    assert last.usage.prompt_tokens == rec["usage"]["prompt_tokens"] == rec["tokens"]["input_tokens"]


async def test_openai_chat_stream_without_usage_reports_none(
    upstream: MockUpstream, http: aiohttp.ClientSession
) -> None:
    body = {"model": GPT, "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
    async with http.post(
        upstream.url("/v1/chat/completions"), json=body, headers={"authorization": "Bearer k"}
    ) as resp:
        assert resp.headers["x-request-id"]
        raw = await resp.read()
    assert raw.endswith(b"data: [DONE]\n\n")
    assert b'"usage"' not in raw
    assert only_request(upstream)["usage"] is None


async def test_azure_chat_deployment_path(upstream: MockUpstream) -> None:
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=upstream.base_url, api_key="azure-key", api_version="2024-10-21", max_retries=0
    )
    completion = await client.chat.completions.create(
        model="my-deployment", messages=[{"role": "user", "content": PROMPT}]
    )
    rec = only_request(upstream)
    assert rec["path"] == "/openai/deployments/my-deployment/chat/completions"
    assert rec["query"]["api-version"] == "2024-10-21"
    assert rec["api_key"] == "azure-key"
    assert completion.choices[0].message.content == expected_text("my-deployment")


async def test_openai_models_list(upstream: MockUpstream) -> None:
    models = await oai(upstream).models.list()
    assert GPT in [m.id for m in models.data]


# --- OpenAI Responses --------------------------------------------------------------------------------


async def test_openai_responses_non_stream(upstream: MockUpstream) -> None:
    response = await oai(upstream).responses.create(model=GPT, input=PROMPT, instructions="be brief")
    rec = only_request(upstream)
    assert response.output_text == expected_text(GPT)
    assert response.status == "completed"
    assert response.usage is not None
    assert response.usage.input_tokens == (len(PROMPT) + len("be brief")) // 4 == rec["usage"]["input_tokens"]
    assert response.usage.output_tokens == WORDS
    assert response.usage.total_tokens == response.usage.input_tokens + WORDS
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0


async def test_openai_responses_stream(upstream: MockUpstream) -> None:
    client = oai(upstream)
    async with client.responses.stream(model=GPT, input=PROMPT) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    rec = only_request(upstream)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[4 : 4 + WORDS] == ["response.output_text.delta"] * WORDS
    assert types[4 + WORDS :] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.output_text == expected_text(GPT)
    assert final.usage is not None
    assert final.usage.output_tokens == rec["usage"]["output_tokens"] == WORDS
    assert final.usage.input_tokens == rec["usage"]["input_tokens"]


async def test_codex_style_responses_path(upstream: MockUpstream) -> None:
    client = oai(upstream, key="chatgpt-access-token", base="/backend-api/codex")
    async with client.responses.stream(model="gpt-5-codex", input=PROMPT) as stream:
        final = await stream.get_final_response()
    rec = only_request(upstream)
    assert rec["path"] == "/backend-api/codex/responses"
    assert final.output_text == expected_text("gpt-5-codex")


# --- Gemini ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api_version", [None, "v1beta", "v1"])
async def test_gemini_generate_content(upstream: MockUpstream, api_version: str | None) -> None:
    client = gem(upstream, api_version)
    response = await client.aio.models.generate_content(model=GEMINI, contents=PROMPT)
    await client.aio.aclose()
    rec = only_request(upstream)
    # google-genai picks v1 or v1beta by itself when no version is given; both must work.
    version = api_version or rec["path"].split("/")[1]
    assert version in ("v1", "v1beta")
    assert rec["path"] == f"/{version}/models/{GEMINI}:generateContent"
    assert response.text == expected_text(GEMINI)
    usage = response.usage_metadata
    assert usage is not None
    assert usage.prompt_token_count == len(PROMPT) // 4 == rec["usage"]["promptTokenCount"]
    assert usage.candidates_token_count == WORDS == rec["tokens"]["output_tokens"]
    assert usage.total_token_count == usage.prompt_token_count + WORDS
    assert response.model_version == GEMINI and response.response_id


async def test_gemini_generate_content_stream(upstream: MockUpstream) -> None:
    client = gem(upstream)
    chunks = [c async for c in await client.aio.models.generate_content_stream(model=GEMINI, contents=PROMPT)]
    await client.aio.aclose()
    rec = only_request(upstream)
    assert rec["query"] == {"alt": "sse"}
    assert "".join(c.text or "" for c in chunks) == expected_text(GEMINI)
    assert len(chunks) == WORDS
    final = chunks[-1].usage_metadata
    assert final is not None
    assert final.candidates_token_count == WORDS == rec["usage"]["candidatesTokenCount"]
    assert final.prompt_token_count == rec["tokens"]["input_tokens"]
    assert chunks[-1].candidates is not None and chunks[-1].candidates[0].finish_reason == "STOP"


async def test_gemini_json_answer_fits_the_requested_schema(upstream: MockUpstream) -> None:
    """Structured output, as Gemini CLI's model router asks for it before every prompt."""
    schema = {
        "type": "OBJECT",
        "properties": {
            "complexity_reasoning": {"type": "STRING"},
            "complexity_score": {"type": "INTEGER", "minimum": 1},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["simple", "hard"]}},
        },
    }
    client = gem(upstream)
    config = genai_types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema=schema
    )
    response = await client.aio.models.generate_content(model=GEMINI, contents=PROMPT, config=config)
    await client.aio.aclose()
    rec = only_request(upstream)
    answer = json.loads(response.text or "")
    text = expected_text(GEMINI)
    assert answer == {"complexity_reasoning": text, "complexity_score": 1, "tags": ["simple"]}
    assert rec["tokens"]["output_tokens"] == 1 == rec["usage"]["candidatesTokenCount"]


async def test_gemini_count_tokens_and_models(upstream: MockUpstream) -> None:
    client = gem(upstream)
    counted = await client.aio.models.count_tokens(model=GEMINI, contents=PROMPT)
    names = [m.name async for m in await client.aio.models.list()]
    await client.aio.aclose()
    assert counted.total_tokens == len(PROMPT) // 4
    assert f"models/{GEMINI}" in names


async def test_gemini_json_array_stream_and_query_key(
    upstream: MockUpstream, http: aiohttp.ClientSession
) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
    async with http.post(
        upstream.url(f"/v1beta/models/{GEMINI}:streamGenerateContent?key=qk"), json=body
    ) as resp:
        chunks = await resp.json()
    assert isinstance(chunks, list) and len(chunks) == WORDS
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == WORDS
    assert only_request(upstream)["api_key"] == "qk"


# --- switches ----------------------------------------------------------------------------------------


async def test_429_via_admin_endpoint_with_headers_and_count(
    upstream: MockUpstream, http: aiohttp.ClientSession
) -> None:
    rule = {"key": "*", "mode": "429", "count": 2, "retry_after": 17}
    async with http.post(upstream.url("/__mock/behaviour"), json=rule) as resp:
        assert resp.status == 200
    client = claude(upstream)
    for _ in range(2):
        before = int(time.time())
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(model=CLAUDE, max_tokens=10, messages=X)
        headers = caught.value.response.headers
        assert headers["retry-after"] == "17"
        assert headers["anthropic-ratelimit-unified-status"] == "rejected"
        assert before + 17 <= int(headers["anthropic-ratelimit-unified-reset"]) <= int(time.time()) + 18
        assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    ok = await client.messages.create(model=CLAUDE, max_tokens=10, messages=X)
    assert ok.usage.output_tokens == WORDS
    assert [r["status"] for r in upstream.requests] == [429, 429, 200]
    assert [r["mode"] for r in upstream.requests] == ["429", "429", "ok"]


async def test_behaviour_is_scoped_to_upstream_key(upstream: MockUpstream) -> None:
    upstream.set_behaviour("403", key="sk-bad", body="This organization has been disabled.")
    good = await oai(upstream, key="sk-good").chat.completions.create(model=GPT, messages=X)
    assert good.choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await oai(upstream, key="sk-bad").chat.completions.create(model=GPT, messages=X)
    assert caught.value.body["message"] == "This organization has been disabled."  # type: ignore[index]
    assert caught.value.body["code"] == "account_deactivated"  # type: ignore[index]


async def test_behaviour_queue_and_path_filter(upstream: MockUpstream, http: aiohttp.ClientSession) -> None:
    rules = [
        {"key": "k", "mode": "500", "count": 1, "path": "/messages"},
        {"key": "k", "mode": "529", "count": 1, "path": "/messages", "append": True},
    ]
    async with http.post(upstream.url("/__mock/behaviour"), json=rules) as resp:
        assert len((await resp.json())["behaviours"]["k"]) == 2
    client = claude(upstream, key="k")
    await client.models.list()  # does not match the path filter, consumes nothing
    with pytest.raises(anthropic.InternalServerError) as first:
        await client.messages.create(model=CLAUDE, max_tokens=10, messages=X)
    assert first.value.status_code == 500
    with pytest.raises(anthropic.OverloadedError) as second:
        await client.messages.create(model=CLAUDE, max_tokens=10, messages=X)
    assert second.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    await client.messages.create(model=CLAUDE, max_tokens=10, messages=X)
    async with http.get(upstream.url("/__mock/behaviour")) as resp:
        assert await resp.json() == {}


async def test_header_switch_overrides_error_text(upstream: MockUpstream) -> None:
    client = claude(upstream)
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(
            model=CLAUDE,
            max_tokens=10,
            messages=X,
            extra_headers={"x-mock-mode": "429", "x-mock-body": "Extra usage is required for long context"},
        )
    assert caught.value.body["error"]["message"] == "Extra usage is required for long context"  # type: ignore[index]


async def test_openai_and_gemini_error_shapes(upstream: MockUpstream) -> None:
    upstream.set_behaviour("529", count=2)
    with pytest.raises(openai.InternalServerError) as oai_err:
        await oai(upstream).chat.completions.create(model=GPT, messages=X)
    assert oai_err.value.status_code == 503
    assert set(oai_err.value.body) >= {"message", "type", "code"}  # type: ignore[arg-type]
    client = gem(upstream)
    with pytest.raises(genai_errors.ServerError) as gem_err:
        await client.aio.models.generate_content(model=GEMINI, contents="x")
    await client.aio.aclose()
    assert gem_err.value.code == 503 and gem_err.value.status == "UNAVAILABLE"


async def test_gemini_429_shape(upstream: MockUpstream, http: aiohttp.ClientSession) -> None:
    upstream.set_behaviour("429", count=1, retry_after=5)
    async with http.post(
        upstream.url(f"/v1beta/models/{GEMINI}:generateContent"),
        json={"contents": []},
        headers={"x-goog-api-key": "g"},
    ) as resp:
        assert resp.status == 429 and resp.headers["retry-after"] == "5"
        payload = await resp.json()
    assert payload["error"]["code"] == 429 and payload["error"]["status"] == "RESOURCE_EXHAUSTED"


async def test_rejected_is_200_with_rejected_header(upstream: MockUpstream) -> None:
    upstream.set_behaviour("rejected", count=1)
    raw = await claude(upstream).messages.with_raw_response.create(model=CLAUDE, max_tokens=10, messages=X)
    assert raw.http_response.status_code == 200
    assert raw.headers["anthropic-ratelimit-unified-status"] == "rejected"
    assert (await raw.parse()).usage.output_tokens == WORDS


async def test_cut_anthropic_stream_raises(upstream: MockUpstream) -> None:
    upstream.set_behaviour("cut", count=1)
    client = claude(upstream)
    seen: list[str] = []
    with pytest.raises((httpx2.HTTPError, anthropic.APIConnectionError)):
        async with client.messages.stream(
            model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": PROMPT}]
        ) as stream:
            async for event in stream:
                seen.append(event.type)
    assert "message_start" in seen and "message_delta" not in seen and "message_stop" not in seen
    rec = only_request(upstream)
    assert rec["completed"] is False and rec["mode"] == "cut"
    assert rec["usage"]["output_tokens"] == 1  # only message_start's usage went out
    assert rec["text"] == "".join(reply_chunks(CLAUDE, WORDS)[: WORDS // 2])


async def test_cut_openai_stream_has_no_usage_or_done(
    upstream: MockUpstream, http: aiohttp.ClientSession
) -> None:
    body = {"model": GPT, "stream": True, "stream_options": {"include_usage": True}, "messages": X}
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(
            upstream.url("/v1/chat/completions"),
            json=body,
            headers={"authorization": "Bearer k", "x-mock-mode": "cut"},
        ) as resp:
            async for piece in resp.content.iter_any():
                received += piece
    assert b"[DONE]" not in received and b'"usage":{' not in received
    assert received.count(b"data: ") == 1 + WORDS // 2
    assert only_request(upstream)["usage"] is None


async def test_cut_openai_sdk_stream_raises(upstream: MockUpstream) -> None:
    upstream.set_behaviour("cut", count=1)
    stream = await oai(upstream).chat.completions.create(
        model=GPT, messages=X, stream=True, stream_options={"include_usage": True}
    )
    with pytest.raises((httpx2.HTTPError, openai.APIConnectionError)):
        async for _ in stream:
            pass


async def test_slow_stream_delays_each_chunk(upstream: MockUpstream) -> None:
    upstream.set_behaviour("slow", delay_ms=40, words=3)
    started = time.perf_counter()
    async with claude(upstream).messages.stream(model=CLAUDE, max_tokens=100, messages=X) as stream:
        final = await stream.get_final_message()
    # 3 deltas + 6 framing events, each followed by a 40 ms pause
    assert time.perf_counter() - started >= 9 * 0.04 * 0.9
    assert final.usage.output_tokens == 3


async def test_admin_requests_and_reset(upstream: MockUpstream, http: aiohttp.ClientSession) -> None:
    await oai(upstream).chat.completions.create(model=GPT, messages=X)
    async with http.get(upstream.url("/__mock/requests")) as resp:
        records = await resp.json()
    assert len(records) == 1
    assert set(records[0]) >= {"method", "path", "query", "headers", "json", "usage", "tokens"}
    assert records[0]["usage"]["completion_tokens"] == WORDS
    assert upstream.requests[0].usage == records[0]["usage"]  # attribute access works too
    upstream.set_behaviour("500")
    async with http.post(upstream.url("/__mock/reset")) as resp:
        assert resp.status == 200
    assert upstream.requests == []
    async with http.get(upstream.url("/__mock/behaviour")) as resp:
        assert await resp.json() == {}


async def test_bad_behaviour_is_rejected(upstream: MockUpstream, http: aiohttp.ClientSession) -> None:
    async with http.post(upstream.url("/__mock/behaviour"), json={"mode": "explode"}) as resp:
        assert resp.status == 400
        assert "unknown mock mode" in (await resp.json())["error"]


@pytest.mark.parametrize(
    ("path", "body", "auth"),
    [
        ("/v1/responses", {"model": GPT, "stream": True, "input": "x"}, {"authorization": "Bearer k"}),
        (f"/v1beta/models/{GEMINI}:streamGenerateContent?alt=sse", {"contents": []}, {"x-goog-api-key": "k"}),
        (f"/v1beta/models/{GEMINI}:streamGenerateContent", {"contents": []}, {"x-goog-api-key": "k"}),
        (
            "/v1/messages",
            {"model": CLAUDE, "max_tokens": 10, "messages": X},
            {"x-api-key": "k"},
        ),  # non-stream
    ],
)
async def test_cut_drops_connection_before_the_end(
    upstream: MockUpstream, http: aiohttp.ClientSession, path: str, body: dict[str, Any], auth: dict[str, str]
) -> None:
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(upstream.url(path), json=body, headers={**auth, "x-mock-mode": "cut"}) as resp:
            async for piece in resp.content.iter_any():
                received += piece
    assert received
    assert b"response.completed" not in received and b'"finishReason"' not in received
    rec = only_request(upstream)
    assert rec["completed"] is False


async def test_cut_non_stream_raises_in_sdk(upstream: MockUpstream) -> None:
    upstream.set_behaviour("cut", count=1)
    with pytest.raises(anthropic.APIConnectionError):
        await claude(upstream).messages.create(model=CLAUDE, max_tokens=10, messages=X)
    assert only_request(upstream)["usage"] is None


async def test_words_and_latency_headers(upstream: MockUpstream) -> None:
    started = time.perf_counter()
    completion = await oai(upstream).chat.completions.create(
        model=GPT, messages=X, extra_headers={"x-mock-words": "2", "x-mock-latency-ms": "50"}
    )
    assert time.perf_counter() - started >= 0.045
    assert completion.choices[0].message.content == "Hello from"
    assert completion.usage is not None and completion.usage.completion_tokens == 2
