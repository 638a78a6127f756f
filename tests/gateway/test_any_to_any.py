"""Any protocol in, any account out (issue 11), through the real relay with the official SDKs.

Each client SDK is served by accounts of other families: the request is converted through the chat hub
(convert/compose.py), the answer comes back in the client's own protocol and parses in its SDK, and the
request log holds exactly one row billed with the usage the fake upstream put on ITS wire.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from .conftest import Pool
from .helpers import assert_billed, model_prices

CLAUDE_MODEL = "claude-opus-4-8"
CODEX_MODEL = "gpt-5-codex"
GEMINI_MODEL = "gemini-2.5-flash"
PROMPT = [{"role": "user", "content": "Tell me something about relays, please."}]
ECHO_CLAUDE = {
    "name": "echo",
    "description": "Repeat a text",
    "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}
ECHO_RESPONSES = {
    "type": "function",
    "name": "echo",
    "description": "Repeat a text",
    "parameters": ECHO_CLAUDE["input_schema"],
}
CLIENT_REQUESTS = Path(__file__).parents[1] / "fixtures" / "client-requests.jsonl"


def claude_client(pool: Pool) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{pool.relay.base_url}/claude", api_key=pool.key, max_retries=0)


def openai_client(pool: Pool) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{pool.relay.base_url}/openai/v1", api_key=pool.key, max_retries=0)


def genai_client(pool: Pool) -> genai.Client:
    options = genai_types.HttpOptions(base_url=f"{pool.relay.base_url}/gemini")
    return genai.Client(api_key=pool.key, http_options=options)


def assert_logged(pool: Pool, credential: str, model: str, streams: list[bool]) -> list[dict[str, Any]]:
    """One row per request, served by the account, billed what the fake reported on its own wire."""
    seen = pool.upstream.requests_for(credential)
    logs = list(reversed(pool.logs(expect=len(streams))))
    assert len(logs) == len(streams) == len(seen)
    prices = model_prices(pool.admin, model)
    for log, record in zip(logs, seen, strict=True):
        assert log["status"] == "success" and log["account_id"] == pool.accounts[credential], log
        assert_billed(log, record["tokens"], prices)
    assert [log["stream"] for log in logs] == streams
    return seen


def claude_both_ways(pool: Pool, model: str) -> tuple[anthropic.types.Message, anthropic.types.Message]:
    client = claude_client(pool)
    whole = client.messages.create(model=model, max_tokens=200, messages=PROMPT, system="Be brief.")
    with client.messages.stream(model=model, max_tokens=200, messages=PROMPT, system="Be brief.") as stream:
        final = stream.get_final_message()
    for message in (whole, final):
        assert message.role == "assistant" and message.stop_reason == "end_turn"
        assert message.content[0].type == "text" and message.content[0].text.startswith("Hello from mock")
    return whole, final


# -- a Claude client -----------------------------------------------------------------------------


def test_anthropic_sdk_served_by_a_responses_account(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    pool.upstream.behave(credential, "ok", cache_read=3)
    whole, final = claude_both_ways(pool, CODEX_MODEL)  # an OpenAI model: the platform says so
    seen = assert_logged(pool, credential, CODEX_MODEL, [False, True])
    assert [whole.content[0].text, final.content[0].text] == [r["text"] for r in seen]
    for message, record in zip((whole, final), seen, strict=True):
        wire = record["usage"]
        assert message.usage.output_tokens == wire["output_tokens"]
        assert message.usage.cache_read_input_tokens == wire["input_tokens_details"]["cached_tokens"] == 3
        assert message.usage.input_tokens == wire["input_tokens"] - 3
    assert seen[0]["path"] == "/responses" and seen[0]["json"]["instructions"] == "Be brief."
    assert seen[0]["json"]["max_output_tokens"] == 200 and seen[1]["json"]["stream"] is True


def test_anthropic_sdk_served_by_an_openai_chat_account(pool: Pool) -> None:
    credential = pool.add_account("openai")
    whole, final = claude_both_ways(pool, "openai,gpt-4o")  # forced to the account type
    seen = assert_logged(pool, credential, "gpt-4o", [False, True])
    assert seen[0]["json"]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert whole.usage.output_tokens == seen[0]["tokens"]["output_tokens"]
    assert final.usage.output_tokens == seen[1]["tokens"]["output_tokens"]


def test_anthropic_sdk_served_by_a_gemini_account(pool: Pool) -> None:
    credential = pool.add_account("gemini")
    whole, final = claude_both_ways(pool, GEMINI_MODEL)
    seen = assert_logged(pool, credential, GEMINI_MODEL, [False, True])
    assert seen[0]["json"]["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert seen[1]["query"] == {"alt": "sse"}  # a converted Gemini stream is read as SSE
    assert [whole.content[0].text, final.content[0].text] == [r["text"] for r in seen]


def test_claude_code_tool_loop_through_a_codex_account(pool: Pool) -> None:
    """Claude Code through a Codex account: a tool call, then its result in the next request."""
    credential = pool.add_account("openai-responses")
    client = claude_client(pool)
    asked = client.messages.create(
        model=CODEX_MODEL, max_tokens=200, messages=PROMPT, tools=[ECHO_CLAUDE], tool_choice={"type": "any"}
    )
    (call,) = asked.content
    assert asked.stop_reason == "tool_use" and call.type == "tool_use" and call.name == "echo"
    assert call.input["text"]
    with client.messages.stream(
        model=CODEX_MODEL,
        max_tokens=200,
        messages=PROMPT,
        tools=[ECHO_CLAUDE],
        tool_choice={"type": "tool", "name": "echo"},
    ) as stream:
        streamed = stream.get_final_message()
    assert streamed.stop_reason == "tool_use" and streamed.content[0].input["text"]
    turn = {"role": "assistant", "content": [call.model_dump(exclude_none=True)]}
    result = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "echoed"}],
    }
    answer = client.messages.create(
        model=CODEX_MODEL, max_tokens=200, messages=[*PROMPT, turn, result], tools=[ECHO_CLAUDE]
    )
    assert answer.stop_reason == "end_turn" and answer.content[0].text

    seen = assert_logged(pool, credential, CODEX_MODEL, [False, True, False])
    assert seen[0]["json"]["tool_choice"] == "required"
    assert seen[1]["json"]["tool_choice"] == {"type": "function", "name": "echo"}
    call_item, output_item = seen[2]["json"]["input"][-2:]
    assert call_item["type"] == "function_call" and call_item["call_id"] == call.id
    assert json.loads(call_item["arguments"]) == call.input
    assert output_item == {"type": "function_call_output", "call_id": call.id, "output": "echoed"}


def test_a_recorded_claude_code_request_served_by_a_codex_account(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    recorded = next(
        json.loads(line)
        for line in CLIENT_REQUESTS.read_text().splitlines()
        if '"claude-cli/' in line and '"/v1/messages"' in line
    )
    body = {**recorded["body"], "model": f"openai-responses,{CODEX_MODEL}"}
    known = ("model", "messages", "system", "tools", "metadata", "max_tokens", "thinking")
    extra = {k: v for k, v in body.items() if k not in known and k != "stream"}
    with claude_client(pool).messages.stream(
        **{k: v for k, v in body.items() if k in known}, extra_body=extra
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn" and final.content[-1].text
    (record,) = pool.upstream.requests_for(credential)
    assert {t["name"] for t in record["json"]["tools"]} == {t["name"] for t in recorded["body"]["tools"]}
    assert record["json"]["reasoning"]["effort"] in ("low", "medium", "high")
    assert_logged(pool, credential, CODEX_MODEL, [True])


def test_an_upstream_error_and_a_cut_stream_reach_a_claude_client_in_its_shape(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    client = claude_client(pool)
    pool.upstream.behave(credential, "cut", count=1)
    with (
        pytest.raises(anthropic.APIStatusError, match="ended before"),
        client.messages.stream(model=CODEX_MODEL, max_tokens=200, messages=PROMPT) as stream,
    ):
        stream.get_final_message()
    with pytest.raises(anthropic.BadRequestError, match="server tool"):
        client.messages.create(
            model=CODEX_MODEL,
            max_tokens=50,
            messages=PROMPT,
            tools=[{"type": "web_search_20250305", "name": "web_search"}],  # type: ignore[list-item]
        )
    pool.upstream.behave(credential, "429", count=1)
    with pytest.raises(anthropic.RateLimitError) as refused:
        client.messages.create(model=CODEX_MODEL, max_tokens=50, messages=PROMPT)
    assert refused.value.body["type"] == "error"  # type: ignore[index]
    assert refused.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    logs = pool.logs(expect=3)
    assert [log["status_code"] for log in reversed(logs)] == [200, 400, 429]
    assert logs[2]["status"] == "truncated" and logs[1]["cost"] == 0 and logs[0]["cost"] == 0
    assert len(pool.upstream.requests_for(credential)) == 2  # the refused request never went up


def test_count_tokens_on_another_family_is_estimated_locally(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    counted = claude_client(pool).messages.count_tokens(model=CODEX_MODEL, messages=PROMPT)
    assert counted.input_tokens > 0
    (log,) = pool.logs(expect=1)
    assert "estimated" in log["flags"] and log["cost"] == 0
    assert pool.upstream.requests_for(credential) == []


# -- an OpenAI chat client -----------------------------------------------------------------------


def test_openai_chat_sdk_with_a_gemini_model(pool: Pool) -> None:
    credential = pool.add_account("gemini")
    client = openai_client(pool)
    whole = client.chat.completions.create(model=GEMINI_MODEL, messages=PROMPT)
    chunks = list(
        client.chat.completions.create(
            model=GEMINI_MODEL, messages=PROMPT, stream=True, stream_options={"include_usage": True}
        )
    )
    assert whole.choices[0].finish_reason == "stop" and whole.choices[0].message.content
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    seen = assert_logged(pool, credential, GEMINI_MODEL, [False, True])
    assert [whole.choices[0].message.content, text] == [r["text"] for r in seen]
    assert whole.usage.completion_tokens == seen[0]["tokens"]["output_tokens"]
    assert chunks[-1].usage.completion_tokens == seen[1]["tokens"]["output_tokens"]


# -- a Responses client --------------------------------------------------------------------------


def test_responses_sdk_served_by_a_claude_account(pool: Pool) -> None:
    credential = pool.add_account("claude-official")
    pool.upstream.behave(credential, "ok", cache_read=5)
    client = openai_client(pool)
    whole = client.responses.create(model=CLAUDE_MODEL, input="Write hello world.", instructions="Be brief.")
    with client.responses.stream(model=CLAUDE_MODEL, input="Write hello world.") as stream:
        final = stream.get_final_response()
    assert whole.status == final.status == "completed"
    seen = assert_logged(pool, credential, CLAUDE_MODEL, [False, True])
    assert [whole.output_text, final.output_text] == [r["text"] for r in seen]
    for response, record in zip((whole, final), seen, strict=True):
        wire = record["tokens"]
        assert response.usage.output_tokens == wire["output_tokens"]
        assert response.usage.input_tokens_details.cached_tokens == wire["cache_read_input_tokens"] == 5
    assert seen[0]["json"]["system"] == "Be brief." and seen[0]["path"] == "/v1/messages"


def test_codex_tool_loop_through_a_claude_account(pool: Pool) -> None:
    """Codex through a Claude account: a function call, then its output in the next request."""
    credential = pool.add_account("claude-official")
    client = openai_client(pool)
    asked = client.responses.create(
        model=CLAUDE_MODEL, input="Echo something.", tools=[ECHO_RESPONSES], tool_choice="required"
    )
    (call,) = [item for item in asked.output if item.type == "function_call"]
    assert call.name == "echo" and json.loads(call.arguments)["text"]
    with client.responses.stream(
        model=CLAUDE_MODEL,
        input="Echo something.",
        tools=[ECHO_RESPONSES],
        tool_choice={"type": "function", "name": "echo"},
    ) as stream:
        streamed = stream.get_final_response()
    (streamed_call,) = [item for item in streamed.output if item.type == "function_call"]
    assert json.loads(streamed_call.arguments)["text"]
    follow = [
        {"role": "user", "content": "Echo something."},
        {"type": "function_call", "call_id": call.call_id, "name": "echo", "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "echoed"},
    ]
    answer = client.responses.create(model=CLAUDE_MODEL, input=follow, tools=[ECHO_RESPONSES])
    assert answer.output_text

    seen = assert_logged(pool, credential, CLAUDE_MODEL, [False, True, False])
    assert seen[0]["json"]["tool_choice"] == {"type": "any"}
    assert seen[1]["json"]["tool_choice"] == {"type": "tool", "name": "echo"}
    assistant, user = seen[2]["json"]["messages"][-2:]
    assert assistant["content"][-1] == {
        "type": "tool_use",
        "id": call.call_id,
        "name": "echo",
        "input": json.loads(call.arguments),
    }
    assert user["content"][0] == {"type": "tool_result", "tool_use_id": call.call_id, "content": "echoed"}


def test_a_recorded_codex_request_served_by_a_claude_account(pool: Pool) -> None:
    credential = pool.add_account("claude-official")
    recorded = next(
        json.loads(line)
        for line in CLIENT_REQUESTS.read_text().splitlines()
        if '"codex_exec/' in line and '"/v1/responses"' in line
    )
    body = {**recorded["body"], "model": f"claude-official,{CLAUDE_MODEL}"}
    known = {k: v for k, v in body.items() if k not in ("stream", "client_metadata")}
    extra = {"client_metadata": body["client_metadata"]}
    with openai_client(pool).responses.stream(**known, extra_body=extra) as stream:
        final = stream.get_final_response()
    assert final.status == "completed" and final.output_text
    (record,) = pool.upstream.requests_for(credential)
    names = {t["name"] for t in record["json"]["tools"]}
    assert "exec_command" in names and "close_agent" in names  # functions, and a namespace's, flattened
    assert record["json"]["system"].startswith("You are a coding agent")
    assert_logged(pool, credential, CLAUDE_MODEL, [True])
    (log,) = pool.logs(expect=1)
    assert "tools_dropped" in log["flags"]  # Codex's hosted web search had no Claude counterpart


# -- a Gemini client -----------------------------------------------------------------------------


def test_gemini_sdk_served_by_a_claude_account(pool: Pool) -> None:
    credential = pool.add_account("claude-official")
    client = genai_client(pool)
    config = genai_types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=200)
    reply = client.models.generate_content(model=CLAUDE_MODEL, contents="Hello Claude", config=config)
    chunks = list(client.models.generate_content_stream(model=CLAUDE_MODEL, contents="Hello Claude"))
    assert reply.candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert chunks[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP
    seen = assert_logged(pool, credential, CLAUDE_MODEL, [False, True])
    assert [reply.text, "".join(c.text or "" for c in chunks)] == [r["text"] for r in seen]
    assert reply.usage_metadata.candidates_token_count == seen[0]["tokens"]["output_tokens"]
    assert chunks[-1].usage_metadata.candidates_token_count == seen[1]["tokens"]["output_tokens"]
    assert seen[0]["json"]["system"] == "Be brief." and seen[0]["json"]["max_tokens"] == 200


def test_errors_and_cut_streams_reach_gemini_and_responses_clients_in_their_shape(pool: Pool) -> None:
    credential = pool.add_account("claude-official")
    gemini = genai_client(pool)
    pool.upstream.behave(credential, "cut", count=1)
    with pytest.raises(genai.errors.ServerError, match="ended before"):
        list(gemini.models.generate_content_stream(model=CLAUDE_MODEL, contents="Hello Claude"))
    responses = openai_client(pool)
    pool.upstream.behave(credential, "cut", count=1)
    with responses.responses.stream(model=CLAUDE_MODEL, input="Hi") as stream:
        events = list(stream)
        with pytest.raises(RuntimeError):
            stream.get_final_response()  # no response.completed came: the SDK says so
    assert events[0].type == "response.created" and events[-1].type == "error"
    assert "ended before" in events[-1].message  # type: ignore[union-attr]
    pool.upstream.behave(credential, "429", count=1)
    with pytest.raises(genai.errors.ClientError) as refused:
        gemini.models.generate_content(model=CLAUDE_MODEL, contents="Hello Claude")
    assert refused.value.code == 429 and refused.value.status == "RESOURCE_EXHAUSTED"
    logs = list(reversed(pool.logs(expect=3)))
    assert [(log["status"], log["status_code"]) for log in logs] == [
        ("truncated", 200),
        ("truncated", 200),
        ("error", 429),
    ]
    assert logs[2]["cost"] == 0 and all(log["account_id"] == pool.accounts[credential] for log in logs)


def test_gemini_chat_endpoint_served_by_a_claude_account(pool: Pool) -> None:
    """`/gemini/v1/chat`: a chat body in, Gemini answers out, whichever account serves it."""
    credential = pool.add_account("claude-official")
    body = {"model": CLAUDE_MODEL, "messages": [{"role": "system", "content": "Be brief."}, *PROMPT]}
    headers = {"Authorization": f"Bearer {pool.key}"}
    url = f"{pool.relay.base_url}/gemini/v1/chat"
    whole = httpx.post(url, json=body, headers=headers, timeout=30)
    streamed = httpx.post(url, json={**body, "stream": True}, headers=headers, timeout=30)
    assert whole.status_code == streamed.status_code == 200
    answer = whole.json()
    chunks = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: ")]
    seen = assert_logged(pool, credential, CLAUDE_MODEL, [False, True])
    assert answer["candidates"][0]["content"]["parts"] == [{"text": seen[0]["text"]}]
    assert answer["usageMetadata"]["candidatesTokenCount"] == seen[0]["tokens"]["output_tokens"]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert (
        "".join(p["text"] for c in chunks for p in c["candidates"][0]["content"]["parts"]) == seen[1]["text"]
    )
    assert seen[0]["json"]["system"] == "Be brief."


def test_images_cross_families(pool: Pool) -> None:
    """A base64 image from a Claude client reaches a Gemini account inline; an image URL from a Responses
    client reaches a Claude account as a URL source."""
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    gemini = pool.add_account("gemini")
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}
    content = [{"type": "text", "text": "What is this?"}, image]
    reply = claude_client(pool).messages.create(
        model=GEMINI_MODEL, max_tokens=100, messages=[{"role": "user", "content": content}]
    )
    assert reply.content[0].text
    (record,) = pool.upstream.requests_for(gemini)
    assert record["json"]["contents"][0]["parts"] == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": png}},
    ]
    claude = pool.add_account("claude-official")
    parts = [
        {"type": "input_text", "text": "And this?"},
        {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"},
    ]
    answer = openai_client(pool).responses.create(
        model=CLAUDE_MODEL,
        input=[{"role": "user", "content": parts}],  # type: ignore[list-item]
    )
    assert answer.output_text
    (sent,) = pool.upstream.requests_for(claude)
    assert sent["json"]["messages"][0]["content"] == [
        {"type": "text", "text": "And this?"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
    ]
    logs = pool.logs(expect=2)
    assert [log["account_id"] for log in logs] == [pool.accounts[claude], pool.accounts[gemini]]
    assert_billed(logs[0], sent["tokens"], model_prices(pool.admin, CLAUDE_MODEL))
    assert_billed(logs[1], record["tokens"], model_prices(pool.admin, GEMINI_MODEL))


# -- the whole matrix: every client on every other family, whole and streamed ----------------------

ACCOUNT_MODELS = {"claude-official": CLAUDE_MODEL, "openai": "gpt-4o", "openai-responses": CODEX_MODEL}
ACCOUNT_MODELS["gemini"] = GEMINI_MODEL


def ask_claude(pool: Pool, model: str) -> list[str]:
    client = claude_client(pool)
    whole = client.messages.create(model=model, max_tokens=100, messages=PROMPT)
    with client.messages.stream(model=model, max_tokens=100, messages=PROMPT) as stream:
        final = stream.get_final_message()
    assert whole.stop_reason == final.stop_reason == "end_turn"
    return [whole.content[0].text, final.content[0].text]  # type: ignore[union-attr]


def ask_chat(pool: Pool, model: str) -> list[str]:
    client = openai_client(pool)
    whole = client.chat.completions.create(model=model, messages=PROMPT)  # type: ignore[arg-type]
    with client.chat.completions.stream(model=model, messages=PROMPT) as stream:  # type: ignore[arg-type]
        final = stream.get_final_completion()
    assert whole.choices[0].finish_reason == final.choices[0].finish_reason == "stop"
    return [whole.choices[0].message.content or "", final.choices[0].message.content or ""]


def ask_responses(pool: Pool, model: str) -> list[str]:
    client = openai_client(pool)
    whole = client.responses.create(model=model, input="Tell me something about relays, please.")
    with client.responses.stream(model=model, input="Tell me something about relays, please.") as stream:
        final = stream.get_final_response()
    assert whole.status == final.status == "completed"
    return [whole.output_text, final.output_text]


def ask_gemini(pool: Pool, model: str) -> list[str]:
    client = genai_client(pool)
    whole = client.models.generate_content(model=model, contents="Tell me something about relays, please.")
    chunks = list(client.models.generate_content_stream(model=model, contents="Tell me about relays."))
    assert chunks[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP  # type: ignore[index]
    return [whole.text or "", "".join(c.text or "" for c in chunks)]


CLIENTS = {"claude": ask_claude, "chat": ask_chat, "responses": ask_responses, "gemini": ask_gemini}
HOME = {"claude": "claude-official", "chat": "openai", "responses": "openai-responses", "gemini": "gemini"}


@pytest.mark.parametrize(
    ("client", "account"),
    [(c, a) for c in CLIENTS for a in ACCOUNT_MODELS if a != HOME[c]],
)
def test_every_client_on_every_other_family(pool: Pool, client: str, account: str) -> None:
    credential = pool.add_account(account)
    model = ACCOUNT_MODELS[account]
    texts = CLIENTS[client](pool, f"{account},{model}")
    seen = assert_logged(pool, credential, model, [False, True])
    assert texts == [record["text"] for record in seen] and all(texts)
