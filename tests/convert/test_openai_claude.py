"""OpenAI Chat Completions client ⇄ Claude upstream: request, response, stream and error translation.

Claude bytes come from the mock upstream (exact Anthropic SSE sequences) or from hand-written streams for
what the mock does not produce (thinking, tool use, errors); the OpenAI SDK must parse every output.
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

from aiproxy.gateway.convert import (
    ClaudeToChatStream,
    SSEParser,
    chat_request_to_claude,
    claude_error_to_openai,
    claude_response_to_chat,
    wants_stream_usage,
)
from aiproxy.mock_upstream import MockUpstream

CLAUDE = "claude-sonnet-4-6"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "client-requests.jsonl"
X: list[Any] = [{"role": "user", "content": "x"}]  # a minimal conversation
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def upstream() -> AsyncIterator[MockUpstream]:
    async with MockUpstream(words=8) as up:
        yield up


async def claude_call(upstream: MockUpstream, body: dict[str, Any], **headers: str) -> tuple[int, bytes]:
    """POST /v1/messages; a dropped connection (mock ``cut``) returns what arrived before the drop."""
    hdrs = {"x-api-key": "sk-ant-test", **{k.replace("_", "-"): v for k, v in headers.items()}}
    received = bytearray()
    async with (
        aiohttp.ClientSession() as http,
        http.post(upstream.url("/v1/messages"), json=body, headers=hdrs) as r,
    ):
        try:
            async for piece in r.content.iter_any():
                received += piece
        except aiohttp.ClientPayloadError:
            pass
        return r.status, bytes(received)


def convert_all(raw: bytes, pieces: list[bytes] | None = None, **kw: Any) -> tuple[bytes, ClaudeToChatStream]:
    conv = ClaudeToChatStream(model=kw.pop("model", "gpt-5"), include_usage=kw.pop("usage", True), created=1)
    out = b"".join(conv.feed(p) for p in (pieces if pieces is not None else [raw])) + conv.finish()
    return out, conv


def random_pieces(raw: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(raw)), k=len(raw) // 20))
    return [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]


def chunks_of(out: bytes) -> list[dict[str, Any]]:
    """Every ``data:`` payload but [DONE], validated by the OpenAI SDK's chunk model (errors excluded)."""
    events = [data for _, data in SSEParser().feed(out)]
    payloads = [orjson.loads(d) for d in events if d != b"[DONE]"]
    for p in payloads:
        if "error" not in p:
            ChatCompletionChunk.model_validate(p)
    return payloads


def sse(*events: dict[str, Any], crlf: bool = False) -> bytes:
    raw = b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events)
    return raw.replace(b"\n", b"\r\n") if crlf else raw


def sdk(handler: Callable[[httpx2.Request], httpx2.Response]) -> openai.OpenAI:
    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    return openai.OpenAI(base_url="http://relay.test/v1", api_key="sk-x", http_client=http, max_retries=0)


def sse_response(body: bytes, status: int = 200) -> Callable[[httpx2.Request], httpx2.Response]:
    ctype = "text/event-stream" if status == 200 else "application/json"
    return lambda _req: httpx2.Response(status, content=body, headers={"content-type": ctype})


# A Claude turn with thinking, text and two tool calls, as the Messages API streams it.
TOOL_INPUTS = [{"location": "San Francisco, CA", "unit": "fahrenheit"}, {"query": 'häuser "quoted"', "n": 3}]


def tool_turn_events() -> list[dict[str, Any]]:
    usage = {"input_tokens": 472, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 100}
    start = {"id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant", "model": CLAUDE}
    start |= {"content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = usage | {"output_tokens": 2}
    ev: list[dict[str, Any]] = [{"type": "message_start", "message": start}]

    def block(i: int, cb: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        ev.append({"type": "content_block_start", "index": i, "content_block": cb})
        ev.extend({"type": "content_block_delta", "index": i, "delta": d} for d in deltas)
        ev.append({"type": "content_block_stop", "index": i})

    think = [{"type": "thinking_delta", "thinking": t} for t in ("The user wants ", "the weather.")]
    think.append({"type": "signature_delta", "signature": "EqQB"})
    block(0, {"type": "thinking", "thinking": "", "signature": ""}, think)
    ev.append({"type": "ping"})
    block(1, {"type": "text", "text": ""}, [{"type": "text_delta", "text": "Let me check."}])
    for n, args in enumerate(TOOL_INPUTS):
        text = json.dumps(args)
        parts = ["", text[:7], text[7:20], text[20:]]
        tool = {"type": "tool_use", "id": f"toolu_0{n}", "name": ["get_weather", "search"][n], "input": {}}
        block(2 + n, tool, [{"type": "input_json_delta", "partial_json": p} for p in parts])
    stop = {"stop_reason": "tool_use", "stop_sequence": None}
    ev.append({"type": "message_delta", "delta": stop, "usage": {"output_tokens": 89}})
    ev.append({"type": "message_stop"})
    return ev


# --- SSE parser ------------------------------------------------------------------------------------------


SSE_SAMPLE = (
    b": keep-alive comment\r\n\r\n"
    b'event: message_start\r\ndata: {"a":1}\r\n\r\n'
    b"id: 7\nretry: 100\ndata: line one\ndata:line two\n\n"
    b"data: [DONE]\n\n"
    b"event: only-event-no-data\n\n"
    b"data: lone-cr\r\r"
)
SSE_EXPECTED = [("message_start", b'{"a":1}'), (None, b"line one\nline two"), (None, b"[DONE]")]
SSE_EXPECTED.append((None, b"lone-cr"))


def test_sse_parser_any_split() -> None:
    assert SSEParser().feed(SSE_SAMPLE) == SSE_EXPECTED
    for i in range(len(SSE_SAMPLE) + 1):
        parser = SSEParser()
        assert parser.feed(SSE_SAMPLE[:i]) + parser.feed(SSE_SAMPLE[i:]) == SSE_EXPECTED, i
    parser = SSEParser()
    assert [ev for b in range(len(SSE_SAMPLE)) for ev in parser.feed(SSE_SAMPLE[b : b + 1])] == SSE_EXPECTED


def test_sse_parser_flush_keeps_an_unterminated_last_event() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: 1\n\ndata: 2\r\n") == [(None, b"1")]
    assert parser.flush() == [(None, b"2")]
    assert parser.flush() == []


# --- requests --------------------------------------------------------------------------------------------


def fixture_body(index: int) -> dict[str, Any]:
    return json.loads(FIXTURES.read_text().splitlines()[index])["body"]


def test_openai_sdk_fixture_requests() -> None:
    plain, streamed = fixture_body(10), fixture_body(11)
    assert chat_request_to_claude(plain, model=CLAUDE) == {
        "model": CLAUDE,
        "messages": [{"role": "user", "content": "hello from the sdk check please answer"}],
        "system": "You are a terse test assistant.",
        "max_tokens": 8192,
    }
    out = chat_request_to_claude(streamed, model=CLAUDE)
    assert out["stream"] is True and "stream_options" not in out
    assert wants_stream_usage(streamed) and not wants_stream_usage(plain)


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def call(cid: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_conversation_with_tools_images_and_results() -> None:
    data_url, http_url = f"data:image/png;base64,{PNG}", "https://example.com/cat.jpg"
    user_parts = [
        text("What is here?"),
        {"type": "image_url", "image_url": {"url": data_url, "detail": "low"}},
        {"type": "image_url", "image_url": {"url": http_url}},
        {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}},  # no Claude equivalent
    ]
    calls = [call("c1", "get_weather", '{"city": "Paris"}'), call("c2", "now", ""), call("c3", "bad", "{x")]
    body = {
        "model": "gpt-5",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Use tools."},
            {"role": "user", "content": user_parts},
            {"role": "user", "content": "And the weather?"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "c1", "content": "18°C"},
            {"role": "tool", "tool_call_id": "c2", "content": [text("noon")]},
            {"role": "tool", "tool_call_id": "c3", "content": ""},
            {"role": "user", "content": "Thanks"},
            {"role": "assistant", "content": "It is "},
        ],
        **{"n": 1, "logprobs": False, "response_format": {"type": "text"}, "seed": 3},  # ignored
    }
    before = copy.deepcopy(body)
    out = chat_request_to_claude(body, model=CLAUDE)
    assert body == before  # the client body is never mutated
    assert set(out) == {"model", "messages", "system", "max_tokens"}
    assert out["system"] == "Be brief.\n\nUse tools."
    image = {"type": "base64", "media_type": "image/png", "data": PNG}
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user", "assistant"]
    user, assistant, results, prefill = (m["content"] for m in out["messages"])
    assert user == [
        text("What is here?"),
        {"type": "image", "source": image},
        {"type": "image", "source": {"type": "url", "url": http_url}},
        text("And the weather?"),
    ]
    assert [(b["type"], b["id"], b["name"], b["input"]) for b in assistant] == [
        ("tool_use", "c1", "get_weather", {"city": "Paris"}),
        ("tool_use", "c2", "now", {}),
        ("tool_use", "c3", "bad", {"_raw_arguments": "{x"}),
    ]
    assert results == [
        {"type": "tool_result", "tool_use_id": "c1", "content": "18°C"},
        {"type": "tool_result", "tool_use_id": "c2", "content": [text("noon")]},
        {"type": "tool_result", "tool_use_id": "c3"},
        text("Thanks"),
    ]
    assert prefill == "It is"  # a prefill may not end in whitespace


def test_system_parts_keep_blocks_and_cache_control() -> None:
    cached = {"type": "text", "text": "Long rules", "cache_control": {"type": "ephemeral"}}
    body = {"messages": [{"role": "system", "content": [cached]}, {"role": "user", "content": "hi"}]}
    assert chat_request_to_claude(body, model=CLAUDE)["system"] == [cached]


def test_sampling_limits_and_metadata() -> None:
    body = {
        "messages": X,
        "max_tokens": 50,
        "max_completion_tokens": 70,
        "temperature": 1.6,
        "top_p": 0.9,
        "stop": ["END", "  ", "\n"],
        "user": "u-42",
        "stream": False,
    }
    out = chat_request_to_claude(body, model=CLAUDE)
    assert out["max_tokens"] == 70 and out["temperature"] == 1.0 and out["top_p"] == 0.9
    assert out["stop_sequences"] == ["END"] and out["metadata"] == {"user_id": "u-42"} and "stream" not in out
    assert chat_request_to_claude({**body, "stop": "STOP"}, model=CLAUDE)["stop_sequences"] == ["STOP"]


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ],
)
def test_tools_and_tool_choice(choice: Any, parallel: Any, expected: Any) -> None:
    body: dict[str, Any] = {"messages": X, "tools": [WEATHER, {"type": "custom"}]}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    out = chat_request_to_claude(body, model=CLAUDE)
    assert out["tools"] == [
        {"name": "get_weather", "description": "Weather", "input_schema": WEATHER["function"]["parameters"]}
    ]
    assert out["tools"][0]["input_schema"] is WEATHER["function"]["parameters"]  # referenced, not copied
    assert out.get("tool_choice") == expected


@pytest.mark.parametrize(
    ("effort", "budget"), [("low", 1024), ("medium", 4096), ("high", 16384), ("minimal", None)]
)
def test_reasoning_effort_becomes_thinking(effort: str, budget: int | None) -> None:
    body = {"messages": X, "reasoning_effort": effort, "max_tokens": 2000, "temperature": 0.2, "top_p": 0.5}
    out = chat_request_to_claude(body, model=CLAUDE)
    if budget is None:
        assert "thinking" not in out and out["max_tokens"] == 2000
        return
    assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert out["max_tokens"] > budget and "temperature" not in out and "top_p" not in out


def test_thinking_is_skipped_where_claude_refuses_it() -> None:
    forced = {"messages": X, "tools": [WEATHER], "tool_choice": "required", "reasoning_effort": "high"}
    assert "thinking" not in chat_request_to_claude(forced, model=CLAUDE)
    turn = [{"role": "assistant", "tool_calls": [call("c1", "get_weather", "{}")]}]
    result = [{"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
    loop = {"messages": X + turn + result, "tools": [WEATHER], "reasoning_effort": "high"}
    assert "thinking" not in chat_request_to_claude(loop, model=CLAUDE)


# --- non-stream responses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_response_with_thinking_and_tools(stop: str, finish: str) -> None:
    resp = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": CLAUDE,
        "stop_reason": stop,
        "content": [
            {"type": "thinking", "thinking": "Weather, so a tool.", "signature": "sig"},
            {"type": "text", "text": "Checking"},
            {"type": "text", "text": "."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": TOOL_INPUTS[0]},
        ],
        "usage": {"input_tokens": 11, "output_tokens": 22, "cache_creation_input_tokens": 3},
    }
    resp["usage"]["cache_read_input_tokens"] = None  # the API sends null for an unused cache
    out = claude_response_to_chat(resp, model="gpt-5")
    parsed = ChatCompletion.model_validate(out)
    assert (parsed.id, parsed.model, parsed.choices[0].finish_reason) == ("chatcmpl-msg_01", "gpt-5", finish)
    msg = parsed.choices[0].message
    assert msg.content == "Checking." and msg.model_extra == {"reasoning_content": "Weather, so a tool."}
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in msg.tool_calls or []] == [
        ("toolu_1", "get_weather", TOOL_INPUTS[0])
    ]
    usage = {"prompt_tokens": 14, "completion_tokens": 22, "total_tokens": 36}
    assert out["usage"] == usage | {"prompt_tokens_details": {"cached_tokens": 0}}


def test_tool_only_response_has_null_content() -> None:
    tool_use = {"type": "tool_use", "id": "t", "name": "f", "input": {}}
    resp = {"id": "m", "content": [tool_use], "stop_reason": "tool_use"}
    message = claude_response_to_chat(resp, model="gpt-5")["choices"][0]["message"]
    assert message["content"] is None and message["tool_calls"][0]["function"]["arguments"] == "{}"


async def test_mock_response_through_the_openai_sdk(upstream: MockUpstream) -> None:
    body = chat_request_to_claude(fixture_body(10), model=CLAUDE)
    status, raw = await claude_call(upstream, body, x_mock_cache_read="40", x_mock_cache_creation="5")
    assert status == 200
    converted = orjson.dumps(claude_response_to_chat(orjson.loads(raw), model="gpt-5"))
    completion = sdk(sse_response(converted)).chat.completions.create(model="gpt-5", messages=[])
    tokens = upstream.requests[-1]["tokens"]
    assert completion.choices[0].message.content == upstream.requests[-1]["text"]
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == tokens["input_tokens"] + 45
    assert (
        completion.usage.prompt_tokens_details and completion.usage.prompt_tokens_details.cached_tokens == 40
    )
    assert completion.usage.completion_tokens == tokens["output_tokens"] == 8


# --- streams ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [None, 3])
async def test_mock_stream_converts_identically_at_any_split(
    upstream: MockUpstream, max_tokens: int | None
) -> None:
    request = {**fixture_body(11), **({"max_tokens": max_tokens} if max_tokens else {})}
    body = chat_request_to_claude(request, model=CLAUDE)
    status, raw = await claude_call(upstream, body, x_mock_cache_read="40", x_mock_cache_creation="5")
    record = upstream.requests[-1]
    assert status == 200 and record["completed"]
    whole, conv = convert_all(raw)
    assert conv.completed and conv.usage == record["tokens"]  # exact, as billed
    for i in range(len(raw) + 1):
        assert convert_all(raw, [raw[:i], raw[i:]])[0] == whole, i
    rng = random.Random(7)
    for _ in range(20):
        assert convert_all(raw, random_pieces(raw, rng))[0] == whole
    chunks = chunks_of(whole)
    assert whole.endswith(b"data: [DONE]\n\n")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("content", "") for d in deltas) == record["text"]
    assert chunks[-2]["choices"][0]["finish_reason"] == ("length" if max_tokens else "stop")
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == record["tokens"]["input_tokens"] + 45
    without_usage, _ = convert_all(raw, usage=False)
    assert all(c["choices"] for c in chunks_of(without_usage))


def test_tool_stream_through_the_openai_sdk_stream_helper() -> None:
    raw = sse(*tool_turn_events(), crlf=True)
    whole, conv = convert_all(raw)
    for i in range(len(raw) + 1):
        assert convert_all(raw, [raw[:i], raw[i:]])[0] == whole, i
    chunks_of(whole)
    assert conv.usage == {"input_tokens": 472, "output_tokens": 89} | {
        "cache_creation_input_tokens": 10,
        "cache_read_input_tokens": 100,
    }
    client = sdk(sse_response(whole))
    with client.chat.completions.stream(model="gpt-5", messages=[{"role": "user", "content": "x"}]) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me check."
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name) for c in calls] == [("toolu_00", "get_weather"), ("toolu_01", "search")]
    assert [json.loads(c.function.arguments) for c in calls] == TOOL_INPUTS
    assert final.usage is not None and final.usage.prompt_tokens == 582 and final.usage.total_tokens == 671
    deltas = [c["choices"][0]["delta"] for c in chunks_of(whole) if c["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "The user wants the weather."


async def test_cut_stream_keeps_usage_and_ends_with_an_error(upstream: MockUpstream) -> None:
    body = chat_request_to_claude(fixture_body(11), model=CLAUDE)
    _, raw = await claude_call(upstream, body, x_mock_mode="cut", x_mock_cache_read="9")
    record = upstream.requests[-1]
    out, conv = convert_all(raw)
    assert record["completed"] is False and not conv.completed
    assert conv.usage == record["tokens"]  # message_start's input side, provisional output of 1
    assert b"[DONE]" not in out and chunks_of(out)[-1]["error"]["type"] == "api_error"
    with pytest.raises(openai.APIError, match="ended before"):
        list(sdk(sse_response(out)).chat.completions.create(model="gpt-5", messages=[], stream=True))


def test_upstream_error_event_becomes_an_openai_error_chunk() -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    events = [*tool_turn_events()[:3], overloaded]
    out, conv = convert_all(sse(*events))
    assert not conv.completed and conv.errored and out.count(b'"error"') == 1
    assert chunks_of(out)[-1] == {
        "error": {"message": "Overloaded", "type": "overloaded_error", "param": None, "code": "overloaded"}
    }
    with pytest.raises(openai.APIError, match="Overloaded"):
        list(sdk(sse_response(out)).chat.completions.create(model="gpt-5", messages=[], stream=True))


# --- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "status", "etype", "code", "exc"),
    [
        ("429", 429, "rate_limit_error", "rate_limit_exceeded", openai.RateLimitError),
        ("401", 401, "authentication_error", "invalid_api_key", openai.AuthenticationError),
        ("529", 529, "overloaded_error", "overloaded", openai.InternalServerError),
        ("400", 400, "invalid_request_error", None, openai.BadRequestError),
    ],
)
async def test_mock_errors_map_to_openai_errors(
    upstream: MockUpstream, mode: str, status: int, etype: str, code: str | None, exc: type[Exception]
) -> None:
    body = chat_request_to_claude(fixture_body(10), model=CLAUDE)
    got, raw = await claude_call(upstream, body, x_mock_mode=mode)
    assert got == status
    converted = claude_error_to_openai(status, raw)
    err = orjson.loads(converted)["error"]
    assert (err["type"], err["code"]) == (etype, code)
    assert err["message"] == orjson.loads(raw)["error"]["message"]
    with pytest.raises(exc, match=err["message"][:20]):
        sdk(sse_response(converted, status)).chat.completions.create(model="gpt-5", messages=[])


def test_non_json_error_bodies_are_wrapped() -> None:
    html = {"message": "<html>Bad gateway</html>", "type": "api_error", "param": None, "code": "server_error"}
    assert orjson.loads(claude_error_to_openai(502, b"<html>Bad gateway</html>\n")) == {"error": html}
    assert orjson.loads(claude_error_to_openai(429, b""))["error"]["message"] == "upstream returned HTTP 429"
    plain = orjson.loads(claude_error_to_openai(403, b'{"error": "nope"}'))["error"]
    assert (plain["message"], plain["type"]) == ("nope", "permission_error")
