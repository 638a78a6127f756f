"""Chat answers → Claude, Responses and Gemini clients, Gemini answers → chat, and their composition."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from aiproxy.gateway.convert.chat_answers_to_claude import (
    ChatToClaudeStream,
    chat_error_to_claude,
    chat_response_to_claude,
)
from aiproxy.gateway.convert.chat_answers_to_gemini import ChatToGeminiStream, chat_response_to_gemini
from aiproxy.gateway.convert.chat_answers_to_responses import (
    ChatToResponsesStream,
    chat_response_to_responses,
)
from aiproxy.gateway.convert.compose import conversion
from aiproxy.gateway.convert.gemini_answers_to_chat import GeminiToChatStream, gemini_response_to_chat
from aiproxy.gateway.convert.refusal import Unconvertible
from aiproxy.gateway.convert.sse import SSEParser

USAGE = {
    "prompt_tokens": 20,
    "completion_tokens": 9,
    "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 5},
    "completion_tokens_details": {"reasoning_tokens": 2},
}
ANSWER = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello",
                "reasoning_content": "Think",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "echo", "arguments": '{"t":1}'}}
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": USAGE,
}


def chat_stream(*, done: bool = True) -> bytes:
    head = {"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    deltas: list[tuple[dict[str, Any], str | None]] = [
        ({"role": "assistant", "content": ""}, None),
        ({"reasoning_content": "Think"}, None),
        ({"content": "Hel"}, None),
        ({"content": "lo"}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "echo", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"t"'}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}, None),
        ({}, "tool_calls"),
    ]
    frames = [
        b"data: "
        + orjson.dumps({**head, "choices": [{"index": 0, "delta": d, "finish_reason": f}]})
        + b"\n\n"
        for d, f in deltas
    ]
    if done:
        frames.append(b"data: " + orjson.dumps({**head, "choices": [], "usage": USAGE}) + b"\n\n")
        frames.append(b"data: [DONE]\n\n")
    return b"".join(frames)


def run(converter: Any, data: bytes, step: int = 0) -> bytes:
    """Feed whole, or in slices of `step` bytes: the output must not depend on the slicing."""
    if not step:
        return converter.feed(data) + converter.finish()
    out = b"".join(converter.feed(data[i : i + step]) for i in range(0, len(data), step))
    return out + converter.finish()


def events(data: bytes) -> list[tuple[str | None, Any]]:
    return [(name, json.loads(payload)) for name, payload in SSEParser().feed(data + b"\n\n")]


# -- whole answers -------------------------------------------------------------------------------


def test_whole_chat_answer_for_each_client() -> None:
    claude = chat_response_to_claude(ANSWER, model="asked")
    assert [b["type"] for b in claude["content"]] == ["thinking", "text", "tool_use"]
    assert claude["content"][2] == {"type": "tool_use", "id": "c1", "name": "echo", "input": {"t": 1}}
    assert claude["stop_reason"] == "tool_use" and claude["model"] == "asked"
    assert claude["usage"] == {
        "input_tokens": 15,
        "output_tokens": 9,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 5,
    }
    responses = chat_response_to_responses(ANSWER, model="asked")
    assert [i["type"] for i in responses["output"]] == ["reasoning", "message", "function_call"]
    assert responses["status"] == "completed" and responses["output"][2]["call_id"] == "c1"
    assert responses["usage"]["input_tokens"] == 20 and responses["usage"]["output_tokens_details"] == {
        "reasoning_tokens": 2
    }
    gemini = chat_response_to_gemini(ANSWER, model="asked")
    parts = gemini["candidates"][0]["content"]["parts"]
    assert parts == [
        {"text": "Think", "thought": True},
        {"text": "Hello"},
        {"functionCall": {"name": "echo", "args": {"t": 1}, "id": "c1"}},
    ]
    assert gemini["usageMetadata"] == {
        "promptTokenCount": 20,
        "candidatesTokenCount": 7,
        "thoughtsTokenCount": 2,
        "cachedContentTokenCount": 5,
        "totalTokenCount": 29,
    }


def test_length_is_an_incomplete_response_and_max_tokens() -> None:
    cut = {
        **ANSWER,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "length"}
        ],
    }
    assert chat_response_to_responses(cut, model="m")["incomplete_details"] == {"reason": "max_output_tokens"}
    assert chat_response_to_claude(cut, model="m")["stop_reason"] == "max_tokens"
    assert chat_response_to_gemini(cut, model="m")["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_errors_take_the_clients_shape() -> None:
    body = orjson.dumps({"error": {"message": "slow down", "type": "rate_limit_exceeded", "code": None}})
    assert orjson.loads(chat_error_to_claude(429, body)) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }
    gemini = conversion("gemini", "claude")
    assert gemini is not None
    claude_error = orjson.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    assert orjson.loads(gemini.error(529, claude_error))["error"] == {
        "code": 529,
        "message": "busy",
        "status": "INTERNAL",
    }


# -- streams -------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [0, 1, 7])
def test_chat_stream_to_claude_events(step: int) -> None:
    out = run(ChatToClaudeStream(model="asked"), chat_stream(), step)
    got = events(out)
    assert [name for name, _ in got] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert got[8][1]["content_block"] == {"type": "tool_use", "id": "c1", "name": "echo", "input": {}}
    assert got[12][1]["delta"]["stop_reason"] == "tool_use" and got[12][1]["usage"]["output_tokens"] == 9


@pytest.mark.parametrize("step", [0, 5])
def test_chat_stream_to_responses_events(step: int) -> None:
    converter = ChatToResponsesStream(model="asked")
    got = events(run(converter, chat_stream(), step))
    names = [name for name, _ in got]
    assert names[:2] == ["response.created", "response.in_progress"] and names[-1] == "response.completed"
    assert [p["sequence_number"] for _, p in got] == list(range(len(got)))
    final = got[-1][1]["response"]
    assert [i["type"] for i in final["output"]] == ["reasoning", "message", "function_call"]
    assert (
        final["output"][1]["content"][0]["text"] == "Hello" and final["output"][2]["arguments"] == '{"t":1}'
    )
    assert final["usage"]["output_tokens"] == 9 and converter.completed


@pytest.mark.parametrize("sse", [True, False])
def test_chat_stream_to_gemini_keeps_the_clients_framing(sse: bool) -> None:
    out = run(ChatToGeminiStream(model="asked", sse=sse), chat_stream(), 3)
    chunks = [json.loads(p) for _, p in SSEParser().feed(out + b"\n\n")] if sse else json.loads(out)
    last = chunks[-1]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "echo", "args": {"t": 1}, "id": "c1"}}
    ]
    assert last["usageMetadata"]["candidatesTokenCount"] == 7
    texts = [p.get("text") for c in chunks[:-1] for p in c["candidates"][0]["content"]["parts"]]
    assert texts == ["Think", "Hel", "lo"]


def test_a_cut_chat_stream_ends_with_each_clients_error() -> None:
    cut = chat_stream(done=False)
    claude = events(run(ChatToClaudeStream(model="m"), cut))
    assert claude[-1][0] == "error" and claude[-1][1]["error"]["type"] == "api_error"
    responses = events(run(ChatToResponsesStream(model="m"), cut))
    assert responses[-1][0] == "error" and "ended before" in responses[-1][1]["message"]
    gemini = json.loads(run(ChatToGeminiStream(model="m", sse=False), cut))
    assert gemini[-1]["error"]["status"] == "INTERNAL"


def test_gemini_answers_to_chat() -> None:
    answer = {
        "responseId": "r1",
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "hm", "thought": True},
                        {"functionCall": {"name": "echo", "args": {"t": 1}}},
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 10,
            "candidatesTokenCount": 3,
            "thoughtsTokenCount": 2,
            "cachedContentTokenCount": 4,
        },
    }
    chat = gemini_response_to_chat(answer, model="asked")
    message = chat["choices"][0]["message"]
    assert chat["choices"][0]["finish_reason"] == "tool_calls" and message["content"] is None
    assert (
        message["reasoning_content"] == "hm"
        and message["tool_calls"][0]["function"]["arguments"] == '{"t":1}'
    )
    assert chat["usage"]["prompt_tokens"] == 10 and chat["usage"]["completion_tokens"] == 5
    assert chat["usage"]["prompt_tokens_details"] == {"cached_tokens": 4}

    frames = [
        {"responseId": "r1", "candidates": [{"content": {"parts": [{"text": "Hel"}]}}]},
        {
            "candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2},
        },
    ]
    data = b"".join(b"data: " + orjson.dumps(f) + b"\r\n\r\n" for f in frames)
    converter = GeminiToChatStream(model="asked", include_usage=True)
    out = run(converter, data, 4)
    chunks = [json.loads(p) for _, p in SSEParser().feed(out) if p != b"[DONE]"]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "Hello"
    assert chunks[-1]["usage"]["completion_tokens"] == 2 and out.endswith(b"data: [DONE]\n\n")
    assert converter.completed


def test_compose_chains_two_stream_converters_and_leaves_same_protocol_alone() -> None:
    assert conversion("claude", "claude") is None and conversion("responses", "responses") is None
    only_request = conversion("gemini_chat", "gemini")
    assert only_request is not None and only_request.answer_steps == ()
    assert only_request.stream(model="m", chat_usage=False, gemini_sse=True) is None
    found = conversion("claude", "gemini")
    assert found is not None
    stream = found.stream(model="asked", chat_usage=False, gemini_sse=False)
    frames = [
        {
            "responseId": "r1",
            "candidates": [{"content": {"parts": [{"text": "Hi"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1},
        },
    ]
    out = run(stream, b"".join(b"data: " + orjson.dumps(f) + b"\n\n" for f in frames), 2)
    got = events(out)
    assert got[0][0] == "message_start" and got[-1][0] == "message_stop" and stream.completed
    assert got[-2][1]["usage"] == {
        "input_tokens": 3,
        "output_tokens": 1,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    request = found.request(
        {"model": "x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        model="g",
        stream=False,
    )
    assert request["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
    assert request["generationConfig"] == {"maxOutputTokens": 5}


def test_a_refusal_names_the_clients_own_field() -> None:
    found = conversion("claude", "responses")
    assert found is not None
    body = {
        "model": "x",
        "max_tokens": 5,
        "stop_sequences": ["END"],
        "messages": [{"role": "user", "content": "hi"}],
    }
    with pytest.raises(Unconvertible) as refused:
        found.request(body, model="gpt-5", stream=False)
    assert refused.value.param == "stop_sequences" and str(refused.value).startswith(
        "stop_sequences: stop sequences"
    )
