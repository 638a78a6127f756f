"""OpenAI Chat Completions client ⇄ Responses API upstream: request, response, stream and error translation.

Responses bytes come from the mock upstream (the exact event sequences it streams, tool calls included) or
from hand-written streams for what the mock does not produce (reasoning, refusals, several tool calls,
failures); the OpenAI SDK must parse every output.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import openai
import orjson
import pytest
import pytest_asyncio
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from aiproxy.gateway.convert.openai_responses import (
    ChatRequestUnsupported,
    ResponsesToChatStream,
    chat_request_to_responses,
    responses_error_to_openai,
    responses_response_to_chat,
    responses_usage_to_chat,
)
from aiproxy.gateway.convert.sse import SSEParser
from aiproxy.mock_upstream import MockUpstream

MODEL = "gpt-5-codex"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "client-requests.jsonl"
X: list[Any] = [{"role": "user", "content": "x"}]  # a minimal conversation
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def upstream() -> AsyncIterator[MockUpstream]:
    async with MockUpstream(words=8) as up:
        yield up


async def responses_call(upstream: MockUpstream, body: dict[str, Any], **headers: str) -> tuple[int, bytes]:
    """POST /v1/responses; a dropped connection (mock ``cut``) returns what arrived before the drop."""
    hdrs = {"authorization": "Bearer sk-test", **{k.replace("_", "-"): v for k, v in headers.items()}}
    received = bytearray()
    async with (
        aiohttp.ClientSession() as http,
        http.post(upstream.url("/v1/responses"), json=body, headers=hdrs) as r,
    ):
        try:
            async for piece in r.content.iter_any():
                received += piece
        except aiohttp.ClientPayloadError:
            pass
        return r.status, bytes(received)


def convert_all(
    raw: bytes, pieces: list[bytes] | None = None, **kw: Any
) -> tuple[bytes, ResponsesToChatStream]:
    conv = ResponsesToChatStream(
        model=kw.pop("model", "gpt-5"), include_usage=kw.pop("usage", True), created=1
    )
    out = b"".join(conv.feed(p) for p in (pieces if pieces is not None else [raw])) + conv.finish()
    return out, conv


def random_pieces(raw: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(raw)), k=len(raw) // 20))
    return [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]


def chunks_of(out: bytes) -> list[dict[str, Any]]:
    """Every ``data:`` payload but [DONE], validated by the OpenAI SDK's chunk model (errors excluded)."""
    payloads = [orjson.loads(d) for _, d in SSEParser().feed(out) if d != b"[DONE]"]
    for p in payloads:
        if "error" not in p:
            ChatCompletionChunk.model_validate(p)
    return payloads


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events)


def sdk(handler: Callable[[httpx2.Request], httpx2.Response]) -> openai.OpenAI:
    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    return openai.OpenAI(base_url="http://relay.test/v1", api_key="sk-x", http_client=http, max_retries=0)


def sse_response(body: bytes, status: int = 200) -> Callable[[httpx2.Request], httpx2.Response]:
    ctype = "text/event-stream" if status == 200 else "application/json"
    return lambda _req: httpx2.Response(status, content=body, headers={"content-type": ctype})


def fixture_body(index: int) -> dict[str, Any]:
    return json.loads(FIXTURES.read_text().splitlines()[index])["body"]


def call(cid: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}


def user_text(t: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": t}]}


# --- requests --------------------------------------------------------------------------------------------


def test_openai_sdk_fixture_requests() -> None:
    plain, streamed = fixture_body(10), fixture_body(11)
    assert chat_request_to_responses(plain, model=MODEL) == {
        "model": MODEL,
        "instructions": "You are a terse test assistant.",
        "input": [user_text("hello from the sdk check please answer")],
        "store": False,
    }
    out = chat_request_to_responses(streamed, model=MODEL)
    assert out["stream"] is True and "stream_options" not in out


def test_conversation_with_tools_images_files_and_results() -> None:
    data_url, http_url = f"data:image/png;base64,{PNG}", "https://example.com/cat.jpg"
    pdf = {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBER"}
    user_parts = [
        {"type": "text", "text": "What is here?"},
        {"type": "image_url", "image_url": {"url": data_url, "detail": "low"}},
        {"type": "image_url", "image_url": {"url": http_url}},
        {"type": "file", "file": pdf},
        {"type": "file", "file": {"file_id": "file-1"}},
    ]
    calls = [call("c1", "get_weather", '{"city": "Paris"}'), call("c2", "now", {"tz": "UTC"})]
    body = {
        "model": "gpt-5",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {"role": "user", "content": user_parts},
            {"role": "assistant", "content": "Checking.", "tool_calls": calls},
            {"role": "tool", "tool_call_id": "c1", "content": "18°C"},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "noon"}]},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            {"role": "user", "content": ""},  # carries nothing: left out
            {"role": "user", "content": "Thanks"},
        ],
        **{"seed": 3, "prediction": {"type": "content", "content": "x"}, "n": 1},  # no effect: left out
    }
    before = copy.deepcopy(body)
    out = chat_request_to_responses(body, model=MODEL)
    assert body == before  # the client body is never mutated
    assert set(out) == {"model", "instructions", "input", "store"}
    assert out["instructions"] == "Be brief.\n\nUse tools."
    assert out["input"] == [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is here?"},
                {"type": "input_image", "image_url": data_url, "detail": "low"},
                {"type": "input_image", "image_url": http_url, "detail": "auto"},
                {"type": "input_file", "file_data": pdf["file_data"], "filename": "a.pdf"},
                {"type": "input_file", "file_id": "file-1"},
            ],
        },
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call", "call_id": "c2", "name": "now", "arguments": '{"tz":"UTC"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "18°C"},
        {"type": "function_call_output", "call_id": "c2", "output": "noon"},
        {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
        user_text("Thanks"),
    ]


def test_sampling_limits_and_options() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    body = {
        "messages": X,
        "max_tokens": 50,
        "max_completion_tokens": 70,
        "temperature": 0.3,
        "top_p": 0.9,
        "user": "u-42",
        "metadata": {"k": "v"},
        "service_tier": "flex",
        "prompt_cache_key": "conv-1",
        "parallel_tool_calls": False,
        "reasoning_effort": "high",
        "verbosity": "low",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "A", "schema": schema, "strict": True},
        },
        "stream": True,
        "stream_options": {"include_usage": True},
        "store": True,
        "stop": [],
        "presence_penalty": 0,
    }
    out = chat_request_to_responses(body, model=MODEL)
    assert out["max_output_tokens"] == 70 and out["temperature"] == 0.3 and out["top_p"] == 0.9
    assert (out["user"], out["metadata"], out["service_tier"]) == ("u-42", {"k": "v"}, "flex")
    assert out["prompt_cache_key"] == "conv-1" and out["parallel_tool_calls"] is False
    assert out["reasoning"] == {"effort": "high"} and out["stream"] is True and out["store"] is True
    assert out["text"] == {
        "format": {"type": "json_schema", "name": "A", "schema": schema, "strict": True},
        "verbosity": "low",
    }
    assert out["text"]["format"]["schema"] is schema  # referenced, not copied
    assert "stream_options" not in out and "stop" not in out and "presence_penalty" not in out
    assert chat_request_to_responses({"messages": X, "max_tokens": 9}, model=MODEL)["max_output_tokens"] == 9
    for kind in ("text", "json_object"):
        fmt = chat_request_to_responses({"messages": X, "response_format": {"type": kind}}, model=MODEL)
        assert fmt["text"] == {"format": {"type": kind}}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "function", "name": "get_weather"},
        ),
        (
            {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "required",
                    "tools": [{"type": "function", "function": {"name": "f"}}],
                },
            },
            {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "f"}]},
        ),
    ],
)
def test_tools_and_tool_choice(choice: Any, expected: Any) -> None:
    strict = {"type": "function", "function": {"name": "now", "strict": True}}
    out = chat_request_to_responses(
        {"messages": X, "tools": [WEATHER, strict], "tool_choice": choice}, model=MODEL
    )
    fn = WEATHER["function"]
    assert out["tools"] == [
        {"type": "function", "name": "get_weather", "description": "Weather"}
        | {"parameters": fn["parameters"], "strict": False},  # Responses would default to strict
        {
            "type": "function",
            "name": "now",
            "parameters": {"type": "object", "properties": {}},
            "strict": True,
        },
    ]
    assert out["tools"][0]["parameters"] is fn["parameters"]  # referenced, not copied
    assert out["tool_choice"] == expected


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"n": 2}, "n"),
        ({"stop": "END"}, "stop"),
        ({"stop": ["END"]}, "stop"),
        ({"logprobs": True, "top_logprobs": 2}, "logprobs"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"presence_penalty": -1}, "presence_penalty"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "audio"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"tools": [{"type": "custom", "custom": {"name": "grep"}}]}, "tools[0]"),
        ({"tools": [WEATHER], "tool_choice": {"type": "custom", "custom": {"name": "g"}}}, "tool_choice"),
        ({"response_format": {"type": "grammar"}}, "response_format"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "function", "name": "f", "content": "1"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "system", "content": [{"type": "image_url"}]}]}, "messages[0].content[0]"),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"type": "custom"}]}]},
            "messages[0].tool_calls[0]",
        ),
    ],
)
def test_what_cannot_be_expressed_is_refused(change: dict[str, Any], param: str) -> None:
    with pytest.raises(ChatRequestUnsupported) as refused:
        chat_request_to_responses({"messages": X, **change}, model=MODEL)
    assert refused.value.param == param and str(refused.value).startswith(f"{param}: ")


# --- non-stream responses --------------------------------------------------------------------------------


def response(status: str = "completed", output: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    usage = {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 100}, "output_tokens": 30}
    usage |= {"output_tokens_details": {"reasoning_tokens": 12}, "total_tokens": 150}
    head = {"id": "resp_1", "object": "response", "created_at": 1700000000, "status": status}
    return head | {"usage": usage, "output": output or [], **extra}


REASONING = {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Weather: a tool."}]}
TEXTS = [{"type": "output_text", "text": "Checking", "annotations": []}, {"type": "output_text", "text": "."}]
MESSAGE = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "content": TEXTS}
FUNCTION = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather"}
FUNCTION |= {"arguments": '{"city":"Paris"}', "status": "completed"}


@pytest.mark.parametrize(
    ("status", "incomplete", "tools", "finish"),
    [
        ("completed", None, False, "stop"),
        ("completed", None, True, "tool_calls"),
        ("incomplete", {"reason": "max_output_tokens"}, False, "length"),
        ("incomplete", {"reason": "content_filter"}, True, "content_filter"),
    ],
)
def test_response_with_reasoning_text_and_tools(
    status: str, incomplete: Any, tools: bool, finish: str
) -> None:
    output = [REASONING, MESSAGE, *([FUNCTION] if tools else [])]
    out = responses_response_to_chat(response(status, output, incomplete_details=incomplete), model="gpt-5")
    parsed = ChatCompletion.model_validate(out)
    assert (parsed.id, parsed.model, parsed.created) == ("chatcmpl-resp_1", "gpt-5", 1700000000)
    assert parsed.choices[0].finish_reason == finish
    msg = parsed.choices[0].message
    assert msg.content == "Checking." and msg.refusal is None
    assert msg.model_extra == {"reasoning_content": "Weather: a tool."}
    expected_calls = [("call_1", "get_weather", '{"city":"Paris"}')] if tools else []
    assert [(c.id, c.function.name, c.function.arguments) for c in msg.tool_calls or []] == expected_calls
    assert out["usage"] == {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 12},
    }


def test_tool_only_and_refusal_answers() -> None:
    bare = {**FUNCTION, "arguments": ""}
    message = responses_response_to_chat(response(output=[bare]), model="gpt-5")["choices"][0]["message"]
    assert message["content"] is None and message["tool_calls"][0]["function"]["arguments"] == "{}"
    refusal = {"type": "message", "content": [{"type": "refusal", "refusal": "I can't."}]}
    message = responses_response_to_chat(response(output=[refusal]), model="gpt-5")["choices"][0]["message"]
    assert message["content"] is None and message["refusal"] == "I can't."
    assert responses_response_to_chat({"output": []}, model="m")["usage"] is None
    assert responses_usage_to_chat({"input_tokens": 5, "output_tokens": 2})["total_tokens"] == 7


def test_a_failed_response_is_not_an_answer() -> None:
    failed = response("failed", error={"code": "server_error", "message": "The model crashed"})
    with pytest.raises(ValueError, match="The model crashed"):
        responses_response_to_chat(failed, model="gpt-5")


@pytest.mark.parametrize("tools", [False, True])
async def test_mock_answer_through_the_openai_sdk(upstream: MockUpstream, tools: bool) -> None:
    request = {**fixture_body(10), **({"tools": [WEATHER], "tool_choice": "required"} if tools else {})}
    body = chat_request_to_responses(request, model=MODEL)
    status, raw = await responses_call(upstream, body, x_mock_cache_read="40")
    assert status == 200
    converted = orjson.dumps(responses_response_to_chat(orjson.loads(raw), model="gpt-5"))
    completion = sdk(sse_response(converted)).chat.completions.create(model="gpt-5", messages=[])
    record = upstream.requests[-1]
    choice = completion.choices[0]
    if tools:
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (tool_call,) = choice.message.tool_calls or []
        assert tool_call.function.name == "get_weather" and tool_call.function.arguments == record["text"]
    else:
        assert choice.finish_reason == "stop" and choice.message.content == record["text"]
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens == record["tokens"]["input_tokens"] + 40  # cached tokens are inside
    assert usage.prompt_tokens_details.cached_tokens == 40
    assert usage.completion_tokens == record["tokens"]["output_tokens"] == 8


# --- streams ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [None, 3])
async def test_mock_stream_converts_identically_at_any_split(
    upstream: MockUpstream, max_tokens: int | None
) -> None:
    request = {**fixture_body(11), **({"max_tokens": max_tokens} if max_tokens else {})}
    body = chat_request_to_responses(request, model=MODEL)
    status, raw = await responses_call(upstream, body, x_mock_cache_read="40")
    record = upstream.requests[-1]
    assert status == 200 and record["completed"]
    whole, conv = convert_all(raw)
    assert conv.completed and conv.usage == record["usage"]  # the wire's usage object, as billed
    for i in range(len(raw) + 1):
        assert convert_all(raw, [raw[:i], raw[i:]])[0] == whole, i
    rng = random.Random(7)
    for _ in range(20):
        assert convert_all(raw, random_pieces(raw, rng))[0] == whole
    chunks = chunks_of(whole)
    assert whole.endswith(b"data: [DONE]\n\n") and whole.count(b"[DONE]") == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[0]["id"].startswith("chatcmpl-resp_")
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("content", "") for d in deltas) == record["text"]
    assert chunks[-2]["choices"][0]["finish_reason"] == ("length" if max_tokens else "stop")
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == record["tokens"]["input_tokens"] + 40
    assert chunks[-1]["usage"]["completion_tokens"] == record["tokens"]["output_tokens"]
    without_usage, _ = convert_all(raw, usage=False)
    assert all(c["choices"] for c in chunks_of(without_usage)) and without_usage.endswith(b"data: [DONE]\n\n")


async def test_mock_tool_call_stream_through_the_sdk_stream_helper(upstream: MockUpstream) -> None:
    request = {**fixture_body(11), "tools": [WEATHER], "tool_choice": "required"}
    _, raw = await responses_call(upstream, chat_request_to_responses(request, model=MODEL))
    arguments = upstream.requests[-1]["text"]
    whole, _ = convert_all(raw)
    for i in range(len(raw) + 1):
        assert convert_all(raw, [raw[:i], raw[i:]])[0] == whole, i
    pieces = [c["choices"][0]["delta"].get("tool_calls") for c in chunks_of(whole) if c["choices"]]
    assert len([p for p in pieces if p]) == 4  # the call announced, then three argument deltas
    client = sdk(sse_response(whole))
    with client.chat.completions.stream(model="gpt-5", messages=X) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    (tool_call,) = choice.message.tool_calls or []
    assert tool_call.id.startswith("call_") and tool_call.function.name == "get_weather"
    assert tool_call.function.arguments == arguments


PARIS = ('{"ci', 'ty":"Paris"}')  # arguments deltas, found by item id


def test_reasoning_refusal_and_two_tool_calls_some_arguments_only_at_the_end() -> None:
    pending = {"id": "resp_9", "created_at": 1700000009, "status": "in_progress", "output": []}
    second = {"type": "function_call", "id": "fc_2", "call_id": "call_2", "name": "now", "arguments": ""}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": pending},
        {"type": "response.in_progress", "response": pending},
        {"type": "response.reasoning_summary_text.delta", "output_index": 0, "delta": "Think"},
        {"type": "response.output_text.delta", "output_index": 1, "delta": "Let me check."},
        {"type": "response.output_text.done", "output_index": 1, "text": "Let me check."},
        {"type": "response.output_item.added", "output_index": 2, "item": {**FUNCTION, "arguments": ""}},
        *({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": d} for d in PARIS),
        {"type": "response.function_call_arguments.done", "output_index": 2, "arguments": '{"city":"Paris"}'},
        {"type": "response.output_item.added", "output_index": 3, "item": second},
        {
            "type": "response.output_item.done",
            "output_index": 3,
            "item": second | {"arguments": '{"tz":"UTC"}'},
        },
        {"type": "response.refusal.delta", "output_index": 4, "delta": "Not that."},
        {"type": "response.completed", "response": response("completed", [FUNCTION])},
    ]
    whole, conv = convert_all(sse(*events))
    chunks = chunks_of(whole)
    assert conv.completed and chunks[0]["id"] == "chatcmpl-resp_9" and chunks[0]["created"] == 1700000009
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert [d.get("reasoning_content") for d in deltas if "reasoning_content" in d] == ["Think"]
    assert [d["refusal"] for d in deltas if "refusal" in d] == ["Not that."]
    with sdk(sse_response(whole)).chat.completions.stream(model="gpt-5", messages=X) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me check."
    calls = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
    assert calls == [("call_1", "get_weather", '{"city":"Paris"}'), ("call_2", "now", '{"tz":"UTC"}')]
    assert final.usage is not None and final.usage.prompt_tokens == 120 and final.usage.total_tokens == 150


async def test_cut_stream_ends_with_an_error_and_no_done(upstream: MockUpstream) -> None:
    body = chat_request_to_responses(fixture_body(11), model=MODEL)
    _, raw = await responses_call(upstream, body, x_mock_mode="cut")
    record = upstream.requests[-1]
    out, conv = convert_all(raw)
    assert record["completed"] is False and not conv.completed and conv.errored and conv.usage is None
    chunks = chunks_of(out)
    assert (
        "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c.get("choices"))
        == record["text"]
    )
    assert b"[DONE]" not in out and chunks[-1]["error"]["type"] == "api_error"
    with pytest.raises(openai.APIError, match="ended before"):
        list(sdk(sse_response(out)).chat.completions.create(model="gpt-5", messages=[], stream=True))


@pytest.mark.parametrize(
    ("final", "message", "code"),
    [
        (
            {"type": "error", "code": "server_is_overloaded", "message": "Overloaded", "param": None},
            "Overloaded",
            "server_is_overloaded",
        ),
        (
            {
                "type": "response.failed",
                "response": response("failed", error={"code": "server_error", "message": "Boom"}),
            },
            "Boom",
            "server_error",
        ),
    ],
)
def test_upstream_failures_become_an_openai_error_chunk(
    final: dict[str, Any], message: str, code: str
) -> None:
    start = {"type": "response.created", "response": {"id": "resp_2", "status": "in_progress"}}
    text = {"type": "response.output_text.delta", "delta": "Hi"}
    late = {"type": "response.output_text.delta", "delta": "ignored"}
    out, conv = convert_all(sse(start, text, final, late))
    assert not conv.completed and conv.errored and out.count(b'"error"') == 1 and b"ignored" not in out
    assert chunks_of(out)[-1] == {
        "error": {"message": message, "type": "api_error", "param": None, "code": code}
    }
    with pytest.raises(openai.APIError, match=message):
        list(sdk(sse_response(out)).chat.completions.create(model="gpt-5", messages=[], stream=True))


# --- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "headers", "status", "etype", "code", "exc"),
    [
        ("429", {}, 429, "requests", "rate_limit_exceeded", openai.RateLimitError),
        ("429", {"chatgpt-account-id": "acc"}, 429, "usage_limit_reached", None, openai.RateLimitError),
        ("401", {}, 401, "invalid_request_error", "invalid_api_key", openai.AuthenticationError),
        ("500", {}, 500, "server_error", "server_error", openai.InternalServerError),
        ("400", {}, 400, "invalid_request_error", None, openai.BadRequestError),
    ],
)
async def test_mock_errors_map_to_openai_errors(
    upstream: MockUpstream,
    mode: str,
    headers: dict[str, str],
    status: int,
    etype: str,
    code: Any,
    exc: type[Exception],
) -> None:
    body = chat_request_to_responses(fixture_body(10), model=MODEL)
    got, raw = await responses_call(upstream, body, x_mock_mode=mode, **headers)
    assert got == status
    converted = responses_error_to_openai(status, raw)
    err = orjson.loads(converted)["error"]
    assert (err["type"], err["code"]) == (etype, code) and "param" in err
    assert err["message"] == orjson.loads(raw)["error"]["message"]
    with pytest.raises(exc, match=err["message"][:20]):
        sdk(sse_response(converted, status)).chat.completions.create(model="gpt-5", messages=[])


def test_other_error_bodies_are_wrapped() -> None:
    detail = orjson.loads(responses_error_to_openai(400, b'{"detail":"Unsupported parameter: top_p"}'))
    shaped = {"message": "Unsupported parameter: top_p", "type": "invalid_request_error"}
    assert detail == {"error": shaped | {"param": None, "code": None}}
    html = orjson.loads(responses_error_to_openai(502, b"<html>Bad gateway</html>\n"))["error"]
    assert (html["message"], html["type"]) == ("<html>Bad gateway</html>", "server_error")
    empty = orjson.loads(responses_error_to_openai(429, b""))["error"]
    assert (empty["message"], empty["type"]) == ("upstream returned HTTP 429", "rate_limit_exceeded")
    plain = orjson.loads(responses_error_to_openai(403, b'{"error": "nope"}'))["error"]
    assert (plain["message"], plain["type"]) == ("nope", "permission_error")
    event = orjson.loads(responses_error_to_openai(500, b'{"type":"error","code":"x","message":"m"}'))
    event = event["error"]
    assert (event["message"], event["code"]) == ("m", "x")
