"""Each client SDK through the relay, streaming and not: the answer parses and every token is billed."""

from __future__ import annotations

import anthropic
import httpx
import openai
from google import genai
from google.genai import types as genai_types

from .conftest import Pool
from .helpers import assert_billed, model_prices

CLAUDE_MODEL = "claude-opus-4-8"


def test_anthropic_sdk_messages(pool: Pool) -> None:
    credential = pool.add_account("claude-official")
    client = anthropic.Anthropic(base_url=f"{pool.relay.base_url}/claude", api_key=pool.key, max_retries=0)
    prompt = [{"role": "user", "content": "Tell me something about relays, please."}]
    message = client.messages.create(model=CLAUDE_MODEL, max_tokens=200, messages=prompt)
    assert message.content[0].text.startswith("Hello from mock")
    with client.messages.stream(
        model=CLAUDE_MODEL, max_tokens=200, messages=prompt, system="Be brief."
    ) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens == message.usage.output_tokens

    seen = pool.upstream.requests_for(credential)
    assert [r["stream"] for r in seen] == [False, True]
    assert seen[0]["headers"]["x-api-key"] == credential  # the account's key, never the caller's
    assert pool.key not in str(seen[0]["headers"])
    logs = pool.logs(expect=2)
    prices = model_prices(pool.admin, CLAUDE_MODEL)
    for log, record in zip(reversed(logs), seen, strict=True):
        assert log["status"] == "success" and log["account_id"] == pool.accounts[credential]
        assert_billed(log, record["tokens"], prices)
    assert [log["stream"] for log in reversed(logs)] == [False, True]

    key = pool.user.ok("GET", f"/api/api-keys/{pool.key_id}")
    assert key["request_count"] == 2
    assert key["used_tokens"] == sum(log["total_tokens"] for log in logs)
    assert abs(key["used_cost"] - sum(log["cost"] for log in logs)) < 1e-12


def test_cache_tokens_billed_at_cache_prices(pool: Pool) -> None:
    credential = pool.add_account("claude-official")
    pool.upstream.behave(credential, "ok", cache_read=1000, cache_creation=300)
    client = anthropic.Anthropic(base_url=f"{pool.relay.base_url}/claude", api_key=pool.key, max_retries=0)
    client.messages.create(
        model=CLAUDE_MODEL, max_tokens=50, messages=[{"role": "user", "content": "cached?"}]
    )
    (record,) = pool.upstream.requests_for(credential)
    assert record["tokens"]["cache_read_input_tokens"] == 1000
    (log,) = pool.logs(expect=1)
    assert_billed(log, record["tokens"], model_prices(pool.admin, CLAUDE_MODEL))


def test_one_hour_cache_writes_billed_at_their_own_price(pool: Pool) -> None:
    credential = pool.add_account("claude-official")
    pool.upstream.behave(credential, "ok", cache_creation=300, cache_creation_1h=120)
    client = anthropic.Anthropic(base_url=f"{pool.relay.base_url}/claude", api_key=pool.key, max_retries=0)
    prompt = [{"role": "user", "content": "cache this for an hour"}]
    message = client.messages.create(model=CLAUDE_MODEL, max_tokens=50, messages=prompt)
    assert message.usage.cache_creation.ephemeral_1h_input_tokens == 120
    with client.messages.stream(model=CLAUDE_MODEL, max_tokens=50, messages=prompt) as stream:
        assert stream.get_final_message().usage.cache_creation.ephemeral_1h_input_tokens == 120

    prices = model_prices(pool.admin, CLAUDE_MODEL)
    assert prices["cache_creation_1h_price"] > prices["cache_creation_price"] > 0
    logs = pool.logs(expect=2)
    for log, record in zip(reversed(logs), pool.upstream.requests_for(credential), strict=True):
        tokens = record["tokens"]
        assert log["cache_creation_tokens"] == 300 and log["status"] == "success"
        expected = (
            tokens["input_tokens"] * prices["input_price"]
            + tokens["output_tokens"] * prices["output_price"]
            + 180 * prices["cache_creation_price"]  # five-minute writes
            + 120 * prices["cache_creation_1h_price"]  # one-hour writes
        ) / 1_000_000
        assert abs(log["cost"] - expected) < 1e-12, (log["cost"], expected)
    key = pool.user.ok("GET", f"/api/api-keys/{pool.key_id}")
    assert key["request_count"] == 2 and abs(key["used_cost"] - sum(log["cost"] for log in logs)) < 1e-12


def test_openai_sdk_chat_to_openai_account(pool: Pool) -> None:
    credential = pool.add_account("openai")
    client = openai.OpenAI(base_url=f"{pool.relay.base_url}/openai/v1", api_key=pool.key, max_retries=0)
    messages = [{"role": "user", "content": "Count to three for me."}]
    reply = client.chat.completions.create(model="gpt-4o", messages=messages)
    assert reply.choices[0].message.content.startswith("Hello from mock")
    plain = list(client.chat.completions.create(model="gpt-4o", messages=messages, stream=True))
    # The relay asked upstream for usage; a client that did not ask never sees the extra chunk.
    assert all(chunk.choices for chunk in plain) and all(chunk.usage is None for chunk in plain)
    asked = list(
        client.chat.completions.create(
            model="gpt-4o", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    assert asked[-1].choices == [] and asked[-1].usage.completion_tokens == reply.usage.completion_tokens

    seen = pool.upstream.requests_for(credential)
    assert [r["json"].get("stream_options") for r in seen] == [
        None,
        {"include_usage": True},
        {"include_usage": True},
    ]
    prices = model_prices(pool.admin, "gpt-4o")
    for log, record in zip(reversed(pool.logs(expect=3)), seen, strict=True):
        assert_billed(log, record["tokens"], prices)


def test_openai_sdk_chat_to_claude_account_is_converted(pool: Pool) -> None:
    credential = pool.add_account("claude-official")
    client = openai.OpenAI(base_url=f"{pool.relay.base_url}/openai/v1", api_key=pool.key, max_retries=0)
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Say hi."}]
    reply = client.chat.completions.create(model=CLAUDE_MODEL, messages=messages, max_tokens=100)
    assert reply.object == "chat.completion" and reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content.startswith("Hello from mock")
    chunks = list(
        client.chat.completions.create(
            model=f"claude-official,{CLAUDE_MODEL}",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens

    seen = pool.upstream.requests_for(credential)
    assert seen[0]["json"]["system"] == "Be terse." and seen[0]["json"]["model"] == CLAUDE_MODEL
    prices = model_prices(pool.admin, CLAUDE_MODEL)
    for log, record in zip(reversed(pool.logs(expect=2)), seen, strict=True):
        assert log["model"] == CLAUDE_MODEL
        assert_billed(log, record["tokens"], prices)


def test_openai_sdk_responses(pool: Pool) -> None:
    credential = pool.add_account("openai-responses")
    client = openai.OpenAI(base_url=f"{pool.relay.base_url}/v1", api_key=pool.key, max_retries=0)
    reply = client.responses.create(model="gpt-5-codex", input="Write hello world.")
    assert reply.output_text.startswith("Hello from mock")
    with client.responses.stream(model="gpt-5-codex", input="Write hello world.") as stream:
        final = stream.get_final_response()
    assert final.usage.output_tokens == reply.usage.output_tokens
    seen = pool.upstream.requests_for(credential)
    assert [r["path"] for r in seen] == ["/responses", "/responses"]
    prices = model_prices(pool.admin, "gpt-5-codex")
    for log, record in zip(reversed(pool.logs(expect=2)), seen, strict=True):
        assert_billed(log, record["tokens"], prices)


def test_google_genai_sdk_native_paths(pool: Pool) -> None:
    credential = pool.add_account("gemini")
    client = genai.Client(
        api_key=pool.key, http_options=genai_types.HttpOptions(base_url=f"{pool.relay.base_url}/gemini")
    )
    reply = client.models.generate_content(model="gemini-2.5-flash", contents="Hello Gemini")
    assert reply.text.startswith("Hello from mock")
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="Hello Gemini"))
    assert "".join(c.text or "" for c in chunks) == reply.text
    seen = pool.upstream.requests_for(credential)
    assert seen[0]["headers"]["x-goog-api-key"] == credential
    assert (
        seen[1]["query"].get("alt") == "sse"
        if isinstance(seen[1]["query"], dict)
        else "alt=sse" in seen[1]["query"]
    )
    prices = model_prices(pool.admin, "gemini-2.5-flash")
    for log, record in zip(reversed(pool.logs(expect=2)), seen, strict=True):
        assert_billed(log, record["tokens"], prices)


def test_gemini_chat_endpoint_and_query_key(pool: Pool) -> None:
    credential = pool.add_account("gemini")
    body = {
        "model": "gemini-2.5-flash",
        "messages": [{"role": "system", "content": "Short."}, {"role": "user", "content": "Hi there"}],
    }
    reply = httpx.post(
        f"{pool.relay.base_url}/gemini/v1/chat", json=body, headers={"Authorization": f"Bearer {pool.key}"}
    )
    assert reply.status_code == 200
    assert reply.json()["candidates"][0]["content"]["parts"][0]["text"].startswith("Hello from mock")
    streamed = httpx.post(
        f"{pool.relay.base_url}/gemini/v1/chat",
        json={**body, "stream": True},
        headers={"x-api-key": pool.key},
    )
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.text.count("data: ") >= 2
    native = httpx.post(
        f"{pool.relay.base_url}/gemini/v1beta/models/gemini-2.5-flash:generateContent?key={pool.key}",
        json={"contents": [{"role": "user", "parts": [{"text": "hey"}]}]},
    )
    assert native.status_code == 200
    seen = pool.upstream.requests_for(credential)
    assert seen[0]["json"]["systemInstruction"]["parts"][0]["text"] == "Short."
    assert all(pool.key not in str(r["query"]) for r in seen)  # the relay's key never goes upstream
    prices = model_prices(pool.admin, "gemini-2.5-flash")
    for log, record in zip(reversed(pool.logs(expect=3)), seen, strict=True):
        assert_billed(log, record["tokens"], prices)


def test_model_lists_answer_locally(pool: Pool) -> None:
    client = anthropic.Anthropic(base_url=f"{pool.relay.base_url}/claude", api_key=pool.key, max_retries=0)
    ids = [m.id for m in client.models.list()]
    assert CLAUDE_MODEL in ids and all(i.startswith("claude") for i in ids)
    oai = openai.OpenAI(base_url=f"{pool.relay.base_url}/openai/v1", api_key=pool.key, max_retries=0)
    assert "gpt-4o" in {m.id for m in oai.models.list()}
