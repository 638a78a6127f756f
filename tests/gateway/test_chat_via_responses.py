"""OpenAI Chat Completions served by Responses API accounts (`openai-responses`), through the real relay.

The official `openai` SDK calls `/openai/v1/chat/completions`; the relay converts the request for a
Responses account (an API key, or Codex through a ChatGPT subscription onboarded by OAuth against the fake
provider), converts the answer back, and bills the usage the fake put on the Responses wire, once.
Routing: a `openai-responses,<model>` prefix forces it; otherwise Responses accounts serve chat only when no
`openai` account can.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from ..support import RelayServer
from .conftest import Pool, Upstream
from .helpers import assert_billed, model_prices
from .restarts import started_relay
from .test_oauth_serving import OAuthSetup, current_access, mock_oauth, relay_env

MODEL = "gpt-5-codex"
SYSTEM = "You are a terse test assistant."
MESSAGES: list[Any] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Say something."}]
ECHO = {
    "type": "function",
    "function": {
        "name": "echo",
        "description": "Repeat a text",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    },
}


def chat_client(base_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/openai/v1", api_key=key, max_retries=0)


def streamed(client: openai.OpenAI, model: str = MODEL, **kw: Any) -> tuple[str, list[Any]]:
    chunks = list(client.chat.completions.create(model=model, messages=MESSAGES, stream=True, **kw))
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


def assert_chat_usage(usage: Any, record: dict[str, Any]) -> None:
    """The chat usage equals what the fake put on the Responses wire (cached tokens inside the prompt)."""
    wire = record["usage"]
    assert usage.prompt_tokens == wire["input_tokens"]
    assert usage.completion_tokens == wire["output_tokens"] == record["tokens"]["output_tokens"]
    assert usage.total_tokens == wire["total_tokens"]
    assert usage.prompt_tokens_details.cached_tokens == wire["input_tokens_details"]["cached_tokens"]


def serve_three_ways(client: openai.OpenAI) -> tuple[Any, str, list[Any], str, list[Any]]:
    """Whole, streamed without usage, streamed with usage: each answer's text is the fake's."""
    whole = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=200, temperature=0.5)
    plain_text, plain = streamed(client)
    asked_text, asked = streamed(client, stream_options={"include_usage": True})
    assert whole.object == "chat.completion" and whole.choices[0].finish_reason == "stop"
    assert all(c.choices and c.usage is None for c in plain)  # no usage chunk unless asked
    assert asked[-1].choices == [] and asked[-1].usage is not None
    assert [c.choices[0].finish_reason for c in plain if c.choices][-1] == "stop"
    return whole, plain_text, plain, asked_text, asked


# -- an API-key account ----------------------------------------------------------------------------


def test_chat_served_by_a_responses_api_key_account(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    pool.upstream.behave(credential, "ok", cache_read=4)
    client = chat_client(pool.relay.base_url, pool.key)
    whole, plain_text, _, asked_text, asked = serve_three_ways(client)

    seen = pool.upstream.requests_for(credential)
    assert [r["path"] for r in seen] == ["/responses"] * 3
    assert [whole.choices[0].message.content, plain_text, asked_text] == [r["text"] for r in seen]
    assert_chat_usage(whole.usage, seen[0])
    assert_chat_usage(asked[-1].usage, seen[2])
    first = seen[0]["json"]
    assert first["instructions"] == SYSTEM and "messages" not in first and first["store"] is False
    assert first["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say something."}]}
    ]
    assert (first["max_output_tokens"], first["temperature"]) == (200, 0.5) and "stream" not in first
    assert [r["json"].get("stream") for r in seen[1:]] == [True, True]
    assert all("stream_options" not in r["json"] for r in seen)

    logs = pool.logs(expect=3)
    assert len(logs) == 3  # one row per request: billed once
    prices = model_prices(pool.admin, MODEL)
    for log, record in zip(reversed(logs), seen, strict=True):
        assert log["status"] == "success" and log["account_id"] == pool.accounts[credential]
        assert log["model"] == MODEL and log["path"] == "/openai/v1/chat/completions"
        assert_billed(log, record["tokens"], prices)
    assert [log["stream"] for log in reversed(logs)] == [False, True, True]


def test_tool_call_round_trip(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    client = chat_client(pool.relay.base_url, pool.key)
    asked = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, tools=[ECHO], tool_choice="required"
    )
    choice = asked.choices[0]
    (tool_call,) = choice.message.tool_calls or []
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert tool_call.function.name == "echo" and json.loads(tool_call.function.arguments)["text"]
    with client.chat.completions.stream(
        model=MODEL,
        messages=MESSAGES,
        tools=[ECHO],
        tool_choice={"type": "function", "function": {"name": "echo"}},
    ) as stream:
        final = stream.get_final_completion()
    (streamed_call,) = final.choices[0].message.tool_calls or []
    assert final.choices[0].finish_reason == "tool_calls" and streamed_call.function.name == "echo"

    turn = {"role": "assistant", "content": None, "tool_calls": [tool_call.model_dump(exclude_none=True)]}
    result = {"role": "tool", "tool_call_id": tool_call.id, "content": "echoed"}
    answer = client.chat.completions.create(model=MODEL, messages=[*MESSAGES, turn, result], tools=[ECHO])
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.content

    seen = pool.upstream.requests_for(credential)
    assert [r["text"] for r in seen[:2]] == [tool_call.function.arguments, streamed_call.function.arguments]
    assert seen[0]["json"]["tools"] == [
        {"type": "function", "name": "echo", "description": "Repeat a text"}
        | {"parameters": ECHO["function"]["parameters"], "strict": False}
    ]
    assert seen[1]["json"]["tool_choice"] == {"type": "function", "name": "echo"}
    call_item, output_item = seen[2]["json"]["input"][-2:]
    assert call_item == {
        "type": "function_call",
        "call_id": tool_call.id,
        "name": "echo",
        "arguments": tool_call.function.arguments,
    }
    assert output_item == {"type": "function_call_output", "call_id": tool_call.id, "output": "echoed"}
    prices = model_prices(pool.admin, MODEL)
    for log, record in zip(reversed(pool.logs(expect=3)), seen, strict=True):
        assert_billed(log, record["tokens"], prices)


def test_an_openai_account_keeps_serving_chat_and_the_prefix_forces_responses(pool: Pool) -> None:
    responses = pool.add_account("openai-responses")
    client = chat_client(pool.relay.base_url, pool.key)
    client.chat.completions.create(model=MODEL, messages=MESSAGES)  # no openai account: the fallback serves
    assert len(pool.upstream.requests_for(responses)) == 1

    plain = pool.add_account("openai")
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    streamed(client)
    assert [r["path"] for r in pool.upstream.requests_for(plain)] == ["/v1/chat/completions"] * 2
    forced = client.chat.completions.create(model=f"openai-responses,{MODEL}", messages=MESSAGES)
    forced_text, _ = streamed(
        client, model=f"openai-responses,{MODEL}", stream_options={"include_usage": True}
    )
    seen = pool.upstream.requests_for(responses)
    assert len(seen) == 3 and all(r["json"]["model"] == MODEL for r in seen)
    assert [forced.choices[0].message.content, forced_text] == [r["text"] for r in seen[1:]]
    assert len(pool.upstream.requests_for(plain)) == 2

    logs = list(reversed(pool.logs(expect=5)))
    ids = [pool.accounts[c] for c in (responses, plain, plain, responses, responses)]
    assert [log["account_id"] for log in logs] == ids
    assert [(log["model"], log["status"]) for log in logs] == [(MODEL, "success")] * 5, logs

    # A rate-limited openai account is no candidate: the Responses account serves meanwhile.
    pool.upstream.behave(plain, "429", count=1)
    with pytest.raises(openai.RateLimitError):  # the only candidate's answer, this time...
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert len(pool.upstream.requests_for(responses)) == 3
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert len(pool.upstream.requests_for(responses)) == 4  # ...and the cooling account is skipped after


def test_claude_models_prefer_claude_accounts_then_any_account_of_the_group(pool: Pool) -> None:
    """The model's platform picks the family first; an account of another family in the key's group
    serves (converted) only when none of it can (issue 11: any protocol in, any account out)."""
    responses = pool.add_account("openai-responses")
    client = chat_client(pool.relay.base_url, pool.key)
    with pytest.raises(openai.APIStatusError) as refused:  # forced to a family the group does not have
        client.chat.completions.create(model=f"gemini,{MODEL}", messages=MESSAGES)
    assert refused.value.status_code == 503
    served = client.chat.completions.create(model="claude-opus-4-8", messages=MESSAGES)
    assert served.choices[0].message.content == pool.upstream.requests_for(responses)[0]["text"]
    claude = pool.add_account("claude-official")
    client.chat.completions.create(model="claude-opus-4-8", messages=MESSAGES)
    assert len(pool.upstream.requests_for(responses)) == 1 and len(pool.upstream.requests_for(claude)) == 1
    logs = pool.logs(expect=3)
    assert [log["account_id"] for log in logs] == [pool.accounts[claude], pool.accounts[responses], None]


def test_what_responses_cannot_express_is_a_400_in_openai_shape(pool: Pool) -> None:
    responses = pool.add_account("openai-responses")
    client = chat_client(pool.relay.base_url, pool.key)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, stop=["END"])
    error = refused.value.body
    assert isinstance(error, dict) and error["code"] == "unsupported_parameter"
    assert error["message"].startswith("stop: ") and error["type"] == "invalid_request_error"
    assert pool.upstream.requests_for(responses) == []
    (log,) = pool.logs(expect=1)
    assert log["status_code"] == 400 and log["cost"] == 0

    plain = pool.add_account("openai")  # an openai account takes the same request as it is
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, stop=["END"])
    assert reply.choices[0].message.content and len(pool.upstream.requests_for(plain)) == 1


def test_upstream_errors_and_cut_streams_reach_the_chat_client_in_its_shape(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    client = chat_client(pool.relay.base_url, pool.key)
    pool.upstream.behave(credential, "500", count=1)
    with pytest.raises(openai.InternalServerError, match="The server had an error") as failed:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert failed.value.body == {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": None,
        "code": "server_error",
    }
    pool.upstream.behave(credential, "cut", count=1)
    with pytest.raises(openai.APIError, match="ended before the response was complete"):
        streamed(client)
    cut, refused = pool.logs(expect=2)
    assert refused["status"] == "error" and refused["status_code"] == 500
    assert cut["status"] == "truncated" and cut["account_id"] == pool.accounts[credential]


# -- a Codex (ChatGPT subscription) account ------------------------------------------------------


@pytest.fixture(scope="module")
def codex_relay(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayServer]:
    relay = started_relay(tmp_path_factory.mktemp("codex-chat-relay"), relay_env(upstream))
    try:
        yield relay
    finally:
        relay.stop()


@pytest.fixture
def setup(codex_relay: RelayServer, upstream: Upstream) -> Iterator[OAuthSetup]:
    yield OAuthSetup(codex_relay, upstream)
    mock_oauth(upstream, "/__mock/oauth/config", {"expires_in": {"claude": 28_800, "openai": 864_000}})


def test_codex_account_serves_chat_completions(setup: OAuthSetup, upstream: Upstream) -> None:
    account = setup.onboard("openai")
    assert account["type"] == "openai-responses"
    chatgpt_id = account["extra"]["oauth"]["chatgpt_account_id"]
    token = current_access(upstream, "openai")
    client = chat_client(setup.relay.base_url, setup.key)
    whole, plain_text, _, asked_text, asked = serve_three_ways(client)
    tool = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, tools=[ECHO], tool_choice="required"
    )
    (tool_call,) = tool.choices[0].message.tool_calls or []

    seen = upstream.requests_for(token)
    assert len(seen) == 4
    assert [whole.choices[0].message.content, plain_text, asked_text] == [r["text"] for r in seen[:3]]
    assert tool_call.function.arguments == seen[3]["text"] and tool.choices[0].finish_reason == "tool_calls"
    assert_chat_usage(whole.usage, seen[0])  # gathered from the stream the backend always sends
    assert_chat_usage(asked[-1].usage, seen[2])
    for record in seen:
        headers = {k.lower(): v for k, v in record["headers"].items()}
        assert headers["authorization"] == f"Bearer {token}" and headers["chatgpt-account-id"] == chatgpt_id
        body = record["json"]
        assert body["stream"] is True and body["store"] is False and body["instructions"] == SYSTEM
        assert "max_output_tokens" not in body and "temperature" not in body and "messages" not in body
        assert body["model"] == MODEL and body["input"][0]["role"] == "user"

    logs = setup.logs(expect=4)
    prices = model_prices(setup.admin, MODEL)
    for log, record in zip(reversed(logs), seen, strict=True):
        assert log["status"] == "success" and log["account_id"] == account["id"]
        assert_billed(log, record["tokens"], prices)
    assert [log["stream"] for log in reversed(logs)] == [False, True, True, False]


def test_codex_plan_limit_reaches_the_chat_client(setup: OAuthSetup, upstream: Upstream) -> None:
    account = setup.onboard("openai")
    upstream.behave(current_access(upstream, "openai"), "429", retry_after=7200)
    client = chat_client(setup.relay.base_url, setup.key)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    error = limited.value.body
    assert isinstance(error, dict) and error["type"] == "usage_limit_reached" and "param" in error
    assert setup.account(account["id"])["status"] == "rate_limited"
    (log,) = setup.logs(expect=1)
    assert log["status"] == "error" and log["cost"] == 0


def test_a_client_closing_after_done_is_served_not_gone(pool: Pool) -> None:
    """The converter sends [DONE] at `response.completed`; the SDK then closes at once, before a slow
    upstream ends its stream. The answer was whole: logged and billed as a success."""
    credential = pool.add_account("openai-responses")
    pool.upstream.behave(credential, "slow", delay_ms=100)  # the mock also waits after its last event
    text, _ = streamed(chat_client(pool.relay.base_url, pool.key))
    (record,) = pool.upstream.requests_for(credential)
    assert text == record["text"]
    (log,) = pool.logs(expect=1)
    assert log["status"] == "success" and "client_gone" not in log["flags"]
    assert_billed(log, record["tokens"], model_prices(pool.admin, MODEL))
