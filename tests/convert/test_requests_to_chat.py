"""Claude, Responses and Gemini requests → chat requests (the first half of every conversion)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiproxy.gateway.convert.claude_to_chat import claude_request_to_chat
from aiproxy.gateway.convert.estimate import MEDIA_TOKENS, estimate_tokens
from aiproxy.gateway.convert.gemini_chat import chat_request_to_gemini
from aiproxy.gateway.convert.gemini_to_chat import gemini_request_to_chat
from aiproxy.gateway.convert.refusal import Unconvertible
from aiproxy.gateway.convert.responses_to_chat import dropped_tools, responses_request_to_chat

FIXTURES = Path(__file__).parents[1] / "fixtures" / "client-requests.jsonl"
SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}}
PNG = "iVBORw0KGgo="


def recorded(marker: str) -> dict:
    return next(json.loads(line)["body"] for line in FIXTURES.read_text().splitlines() if marker in line)


# -- Claude ---------------------------------------------------------------------------------------


def test_claude_conversation_with_tools_images_and_thinking() -> None:
    body = {
        "model": "x",
        "max_tokens": 300,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "thinking": {"type": "enabled", "budget_tokens": 4000},
        "tools": [{"name": "echo", "description": "Repeat", "input_schema": SCHEMA}],
        "tool_choice": {"type": "tool", "name": "echo", "disable_parallel_tool_use": True},
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "sig"},
                    {"type": "text", "text": "Calling."},
                    {"type": "tool_use", "id": "toolu_1", "name": "echo", "input": {"text": "a"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a", "is_error": True},
                    {"type": "text", "text": "Go on."},
                ],
            },
        ],
    }
    out = claude_request_to_chat(body, model="gpt-5", stream=True)
    assert out["messages"] == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Calling.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "echo", "arguments": '{"text":"a"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: a"},
        {"role": "user", "content": [{"type": "text", "text": "Go on."}]},
    ]
    assert out["tools"] == [
        {"type": "function", "function": {"name": "echo", "description": "Repeat", "parameters": SCHEMA}}
    ]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "echo"}}
    assert out["parallel_tool_calls"] is False and out["stop"] == ["END"] and out["temperature"] == 0.2
    assert out["max_completion_tokens"] == 300 and out["reasoning_effort"] == "medium"
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}


def test_claude_requests_other_families_cannot_serve_are_refused() -> None:
    base = {"model": "x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(Unconvertible, match="tools\\[0\\]: server tool"):
        claude_request_to_chat(
            {**base, "tools": [{"type": "web_search_20250305", "name": "w"}]}, model="m", stream=False
        )
    with pytest.raises(Unconvertible, match="mcp_servers"):
        claude_request_to_chat({**base, "mcp_servers": [{"url": "x"}]}, model="m", stream=False)
    doc = {"type": "document", "source": {"type": "base64", "media_type": "text/csv", "data": "eA=="}}
    with pytest.raises(Unconvertible, match="PDF"):
        claude_request_to_chat(
            {**base, "messages": [{"role": "user", "content": [doc]}]}, model="m", stream=False
        )


def test_recorded_claude_code_request_converts_whole() -> None:
    body = recorded('"claude-cli/')
    out = claude_request_to_chat(body, model="gpt-5-codex", stream=True)
    assert [t["function"]["name"] for t in out["tools"]] == [t["name"] for t in body["tools"]]
    assert out["messages"][0]["role"] == "system" and out["reasoning_effort"] in ("low", "medium", "high")


# -- Responses ------------------------------------------------------------------------------------


def test_responses_items_become_chat_messages() -> None:
    body = {
        "instructions": "Be brief.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Dev."}]},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Hi"},
                    {"type": "input_image", "image_url": "https://x/y.png"},
                ],
            },
            {"type": "reasoning", "id": "rs_1", "encrypted_content": "opaque"},
            {"type": "function_call", "call_id": "c1", "name": "echo", "arguments": '{"text":"a"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "a"},
        ],
        "tools": [
            {"type": "function", "name": "echo", "parameters": SCHEMA, "strict": True},
            {
                "type": "namespace",
                "name": "ns",
                "tools": [{"type": "function", "name": "inner", "parameters": SCHEMA}],
            },
            {"type": "web_search"},
        ],
        "tool_choice": {"type": "function", "name": "echo"},
        "reasoning": {"effort": "high"},
        "max_output_tokens": 99,
        "text": {"format": {"type": "json_schema", "name": "o", "schema": SCHEMA}},
    }
    out = responses_request_to_chat(body, model="claude", stream=False)
    assert out["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Dev."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Hi"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "echo", "arguments": '{"text":"a"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "a"},
    ]
    assert [t["function"]["name"] for t in out["tools"]] == ["echo", "inner"]
    assert out["tools"][0]["function"]["strict"] is True and dropped_tools(body)
    assert out["tool_choice"] == {"type": "function", "function": {"name": "echo"}}
    assert out["reasoning_effort"] == "high" and out["max_completion_tokens"] == 99
    assert out["response_format"]["json_schema"] == {"name": "o", "schema": SCHEMA}
    assert "stream" not in out


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["v"]}]}, "tools[0]"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"background": True}, "background"),
    ],
)
def test_responses_state_and_hosted_tools_are_refused(extra: dict, param: str) -> None:
    with pytest.raises(Unconvertible) as refused:
        responses_request_to_chat({"input": "hi", **extra}, model="m", stream=False)
    assert refused.value.param == param


def test_recorded_codex_request_converts_whole() -> None:
    body = recorded('"codex_exec/')
    out = responses_request_to_chat(body, model="claude", stream=True)
    names = [t["function"]["name"] for t in out["tools"]]
    assert "exec_command" in names and "close_agent" in names and out["tool_choice"] == "auto"
    assert out["messages"][0]["role"] == "developer"


# -- Gemini ---------------------------------------------------------------------------------------


def test_gemini_contents_become_chat_messages() -> None:
    body = {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {
                "role": "user",
                "parts": [{"text": "Look"}, {"inlineData": {"mimeType": "image/png", "data": PNG}}],
            },
            {
                "role": "model",
                "parts": [
                    {"text": "thinking", "thought": True},
                    {"functionCall": {"name": "echo", "args": {"text": "a"}}},
                ],
            },
            {"role": "user", "parts": [{"functionResponse": {"name": "echo", "response": {"output": "a"}}}]},
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "echo",
                        "parameters": {"type": "OBJECT", "properties": {"text": {"type": "STRING"}}},
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["echo"]}},
        "generationConfig": {
            "maxOutputTokens": 50,
            "temperature": 0.1,
            "stopSequences": ["X"],
            "thinkingConfig": {"thinkingBudget": 20000},
        },
    }
    out = gemini_request_to_chat(body, model="claude", stream=True)
    call_id = out["messages"][2]["tool_calls"][0]["id"]
    assert out["messages"] == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "echo", "arguments": '{"text":"a"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "a"},
    ]
    assert out["tools"][0]["function"]["parameters"] == SCHEMA
    assert out["tool_choice"] == {"type": "function", "function": {"name": "echo"}}
    assert (out["max_completion_tokens"], out["temperature"], out["stop"]) == (50, 0.1, ["X"])
    assert out["reasoning_effort"] == "high" and out["stream"] is True


def test_gemini_hosted_tools_and_candidates_are_refused() -> None:
    base = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    with pytest.raises(Unconvertible, match="googleSearch"):
        gemini_request_to_chat({**base, "tools": [{"googleSearch": {}}]}, model="m", stream=False)
    with pytest.raises(Unconvertible, match="candidateCount"):
        gemini_request_to_chat({**base, "generationConfig": {"candidateCount": 2}}, model="m", stream=False)


def test_chat_tool_loop_to_gemini_names_the_functions() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "echo", "arguments": '{"text":"a"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "a"},
        ],
        "tools": [{"type": "function", "function": {"name": "echo", "parameters": SCHEMA}}],
        "tool_choice": "required",
        "reasoning_effort": "low",
    }
    out = chat_request_to_gemini(body)
    assert out["contents"][1] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "echo", "args": {"text": "a"}, "id": "c1"}}],
    }
    assert out["contents"][2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "echo", "response": {"output": "a"}, "id": "c1"}}],
    }
    assert out["tools"] == [{"functionDeclarations": [{"name": "echo", "parametersJsonSchema": SCHEMA}]}]
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert out["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 1024


def test_local_count_estimate() -> None:
    text = {"messages": [{"role": "user", "content": "x" * 400}]}
    assert estimate_tokens(text) == (400 + len("user")) // 4
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG * 1000}}
    with_image = {"messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 400}, image]}]}
    assert estimate_tokens(with_image) == (400 + len("user") + len("text") + len("image")) // 4 + MEDIA_TOKENS
    gemini = {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": PNG}}]}]}
    assert estimate_tokens(gemini) == MEDIA_TOKENS
