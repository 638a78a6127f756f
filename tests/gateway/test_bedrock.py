"""Bedrock accounts through the real relay, with the official SDKs, against a fake Bedrock that
checks SigV4 signatures (or Bedrock API keys), the InvokeModel body and the model id."""

from __future__ import annotations

import uuid
from typing import Any

import anthropic
import openai
import pytest

from .conftest import Pool
from .helpers import assert_billed, model_prices

MODEL = "claude-haiku-4-5"
MODEL_ID = "anthropic.claude-haiku-4-5-20251001-v1:0"
PROMPT = [{"role": "user", "content": "Tell me something about relays, please."}]
FAVOURITE = {"priority": 1000, "weight": 1000}  # drawn first (the other account has 1 × 1)
SPARE = {"priority": 1, "weight": 1}


def _register(pool: Pool, **credentials: str) -> None:
    response = pool.upstream.http.post("/__mock/bedrock/credentials", json=credentials)
    assert response.status_code == 200, response.text


def add_bedrock(
    pool: Pool,
    *,
    region: str = "us-east-1",
    session_token: str | None = None,
    stored_secret: str | None = None,
    **fields: Any,
) -> str:
    """An access-key account the fake AWS knows; returns its access key id (the mock's record key)."""
    key_id = f"AKIA{uuid.uuid4().hex[:16].upper()}"
    secret = f"{uuid.uuid4().hex}/{uuid.uuid4().hex[:8]}"
    known = {"access_key_id": key_id, "secret_access_key": secret}
    if session_token:
        known["session_token"] = session_token
        fields["session_token"] = session_token
    _register(pool, **known)
    pool.add_account("bedrock", api_key=key_id, api_secret=stored_secret or secret, region=region, **fields)
    return key_id


def add_bedrock_api_key(pool: Pool, *, region: str = "us-west-2") -> str:
    token = f"ABSK{uuid.uuid4().hex}"
    _register(pool, api_key=token)
    body = {
        "name": f"bedrock-{token[:12]}",
        "type": "bedrock",
        "access_token": token,
        "region": region,
        "base_url": pool.upstream.base_url,
        "group_ids": [pool.group_id],
    }
    pool.accounts[token] = pool.admin.ok("POST", "/api/admin/accounts", json=body)["id"]
    pool.settle()
    return token


def _claude(pool: Pool) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{pool.relay.base_url}/claude", api_key=pool.key, max_retries=0)


def test_messages_whole_and_streamed_are_signed_decoded_and_billed_once(pool: Pool) -> None:
    key_id = add_bedrock(pool)
    client = _claude(pool)
    # The beta namespace is what Claude Code uses: `?beta=true` on the URL and an anthropic-beta header.
    message = client.beta.messages.create(
        model=MODEL,
        max_tokens=200,
        messages=PROMPT,
        betas=["claude-code-20250219", "context-1m-2025-08-07"],
    )
    text = message.content[0].text
    assert text.startswith(f"Hello from mock us.{MODEL_ID}")
    with client.messages.stream(model=MODEL, max_tokens=200, messages=PROMPT, system="Be brief.") as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == text and final.content[0].text == text
    assert final.usage.output_tokens == message.usage.output_tokens
    assert final.usage.input_tokens > message.usage.input_tokens  # the system prompt counts

    whole, live = pool.upstream.requests_for(key_id)
    assert whole["path"] == f"/model/us.{MODEL_ID}/invoke"
    assert live["path"] == f"/model/us.{MODEL_ID}/invoke-with-response-stream"
    for record in (whole, live):
        assert record["status"] == 200  # the fake recomputed the SigV4 signature and it matched
        facts = record["bedrock"]
        assert facts["auth"] == "sigv4" and facts["region"] == "us-east-1" and facts["service"] == "bedrock"
        assert facts["raw_path"].startswith(f"/model/us.{MODEL_ID.replace(':', '%3A')}/")  # no query
        assert record["query"] == {} and not facts["session_token"]
        assert record["json"]["anthropic_version"] == "bedrock-2023-05-31"
        assert "model" not in record["json"] and "stream" not in record["json"]
        headers = record["headers"]
        assert set(headers) >= {"authorization", "x-amz-date", "content-type", "accept"}
        assert not {"x-api-key", "anthropic-version", "anthropic-beta", "user-agent"} & set(headers)
        assert pool.key not in str(headers)
    assert whole["json"]["anthropic_beta"] == ["context-1m-2025-08-07"]  # Bedrock refuses the other one
    assert "anthropic_beta" not in live["json"]
    assert live["headers"]["accept"] == "application/vnd.amazon.eventstream"

    logs = pool.logs(expect=2)
    prices = model_prices(pool.admin, MODEL)
    for log, record in zip(reversed(logs), (whole, live), strict=True):
        assert log["status"] == "success" and log["account_id"] == pool.accounts[key_id]
        assert log["upstream_model"] == MODEL
        assert_billed(log, record["tokens"], prices)
    assert [log["stream"] for log in reversed(logs)] == [False, True]


def test_session_token_is_sent_and_signed(pool: Pool) -> None:
    key_id = add_bedrock(pool, region="eu-west-1", session_token=f"IQoJb3JpZ2luX2VjE{uuid.uuid4().hex}")
    reply = _claude(pool).messages.create(model=MODEL, max_tokens=20, messages=PROMPT)
    assert reply.content[0].text.startswith(f"Hello from mock eu.{MODEL_ID}")
    (record,) = pool.upstream.requests_for(key_id)
    assert (
        record["bedrock"]["session_token"] and "x-amz-security-token" in record["bedrock"]["signed_headers"]
    )
    assert record["bedrock"]["region"] == "eu-west-1"


def test_wrong_secret_is_a_clear_error_and_marks_the_account(pool: Pool) -> None:
    key_id = add_bedrock(pool, stored_secret="not-the-secret-aws-knows")
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        _claude(pool).messages.create(model=MODEL, max_tokens=20, messages=PROMPT)
    assert refused.value.status_code == 403
    error = refused.value.body["error"]  # type: ignore[index]
    assert error["type"] == "authentication_error"
    assert error["message"].startswith("The request signature we calculated does not match")
    (record,) = pool.upstream.requests_for(key_id)
    assert record["status"] == 403
    account = pool.account(key_id)
    assert account["status"] == "rate_limited"  # the default rules: a 403 rests the account
    assert "signature we calculated" in account["status_reason"]
    (log,) = pool.logs(expect=1)
    assert log["status"] == "error" and log["status_code"] == 403 and log["cost"] == 0


def test_bedrock_api_key_is_sent_as_bearer(pool: Pool) -> None:
    token = add_bedrock_api_key(pool)
    client = _claude(pool)
    reply = client.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=PROMPT)
    assert reply.content[0].text.startswith("Hello from mock us.anthropic.claude-sonnet-4-6")
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=20, messages=PROMPT) as stream:
        assert stream.get_final_message().content[0].text == reply.content[0].text
    records = pool.upstream.requests_for(token)
    assert [r["bedrock"]["auth"] for r in records] == ["bearer", "bearer"]
    assert all(r["headers"]["authorization"] == f"Bearer {token}" for r in records)
    assert all(log["status"] == "success" for log in pool.logs(expect=2))


def test_model_mapping_wins_over_the_table(pool: Pool) -> None:
    arn = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/opus48"
    key_id = add_bedrock(pool, region="eu-west-1", model_mapping={"claude-opus-4-8": arn})
    client = _claude(pool)
    mapped = client.messages.create(model="claude-opus-4-8", max_tokens=20, messages=PROMPT)
    assert mapped.content[0].text.startswith(f"Hello from mock {arn}")
    table = client.messages.create(model=MODEL, max_tokens=20, messages=PROMPT)
    assert table.content[0].text.startswith(f"Hello from mock eu.{MODEL_ID}")
    first, second = pool.upstream.requests_for(key_id)
    assert first["bedrock"]["raw_path"] == (
        "/model/arn%3Aaws%3Abedrock%3Aeu-west-1%3A123456789012%3Aapplication-inference-profile%2Fopus48/invoke"
    )
    assert first["status"] == second["status"] == 200
    logs = pool.logs(expect=2)
    assert [log["upstream_model"] for log in reversed(logs)] == [arn, MODEL]
    assert_billed(logs[1], first["tokens"], model_prices(pool.admin, "claude-opus-4-8"))


def test_unknown_model_is_the_clients_error(pool: Pool) -> None:
    key_id = add_bedrock(pool)
    with pytest.raises(anthropic.BadRequestError) as refused:
        _claude(pool).messages.create(model="claude-opus-4-8", max_tokens=20, messages=PROMPT)
    assert refused.value.body["error"] == {  # type: ignore[index]
        "type": "invalid_request_error",
        "message": "The provided model identifier is invalid.",
    }
    assert pool.account(key_id)["status"] == "valid"


def test_throttled_account_fails_over(pool: Pool) -> None:
    throttled = add_bedrock(pool, **FAVOURITE)
    spare = add_bedrock(pool, **SPARE)
    pool.upstream.behave(throttled, "429", count=1)
    reply = _claude(pool).messages.create(model=MODEL, max_tokens=20, messages=PROMPT)
    assert reply.content[0].text.startswith("Hello from mock")
    assert [r["status"] for r in pool.upstream.requests_for(throttled)] == [429]
    assert [r["status"] for r in pool.upstream.requests_for(spare)] == [200]
    marked = pool.account(throttled)
    assert marked["status"] == "rate_limited" and "429" in marked["status_reason"]
    (log,) = pool.logs(expect=1)
    assert log["account_id"] == pool.accounts[spare] and log["retries"] == 1


def test_throttling_without_a_spare_is_a_429_in_anthropic_shape(pool: Pool) -> None:
    key_id = add_bedrock(pool)
    pool.upstream.behave(key_id, "429", count=1)
    with pytest.raises(anthropic.RateLimitError) as limited:
        _claude(pool).messages.create(model=MODEL, max_tokens=20, messages=PROMPT)
    assert limited.value.body["error"] == {  # type: ignore[index]
        "type": "rate_limit_error",
        "message": "Too many requests, please wait before trying again.",
    }
    assert pool.account(key_id)["status"] == "rate_limited"


@pytest.mark.parametrize("how", ["cut", "exception"])
def test_broken_stream_is_truncated_and_billed_for_what_was_seen(pool: Pool, how: str) -> None:
    key_id = add_bedrock(pool)
    if how == "cut":  # the connection drops in the middle of a frame
        pool.upstream.behave(key_id, "cut", count=1)
    else:  # Bedrock ends the stream with an exception frame
        pool.upstream.behave(key_id, "ok", count=1, body="exception:modelStreamErrorException")
    seen = []
    client = _claude(pool)
    with (
        pytest.raises(anthropic.APIError) as broke,
        client.messages.stream(model=MODEL, max_tokens=200, messages=PROMPT) as stream,
    ):
        seen.extend(stream.text_stream)
    assert seen and "".join(seen).startswith("Hello from mock")
    if how == "exception":
        assert "modelStreamErrorException" in str(broke.value)
    (record,) = pool.upstream.requests_for(key_id)
    assert record["completed"] is False
    (log,) = pool.logs(expect=1)
    assert log["status"] == "truncated" and log["account_id"] == pool.accounts[key_id]
    assert_billed(log, record["tokens"], model_prices(pool.admin, MODEL))
    assert log["output_tokens"] == 1  # message_start's provisional count: nothing later arrived


def test_count_tokens(pool: Pool) -> None:
    key_id = add_bedrock(pool)
    counted = _claude(pool).messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": "x" * 40}]
    )
    assert counted.input_tokens == 10
    (record,) = pool.upstream.requests_for(key_id)
    assert record["path"] == f"/model/{MODEL_ID}/count-tokens"  # the bare model id: no profile
    inner = record["json"]["decoded_body"]
    assert inner["anthropic_version"] == "bedrock-2023-05-31" and "model" not in inner
    (log,) = pool.logs(expect=1)
    assert log["status"] == "success" and log["cost"] == 0


def test_openai_chat_clients_reach_bedrock_through_the_conversion(pool: Pool) -> None:
    key_id = add_bedrock(pool)
    client = openai.OpenAI(base_url=f"{pool.relay.base_url}/openai/v1", api_key=pool.key, max_retries=0)
    messages = [{"role": "user", "content": "Count to three for me."}]
    reply = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=50)
    assert reply.choices[0].message.content.startswith("Hello from mock")
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=50, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens
    assert [r["status"] for r in pool.upstream.requests_for(key_id)] == [200, 200]
    logs = pool.logs(expect=2)
    assert all(log["status"] == "success" and log["cost"] > 0 for log in logs), logs


def test_admin_probe(pool: Pool) -> None:
    key_id = add_bedrock(pool)
    result = pool.admin.ok("POST", "/api/admin/proxy/test", json={"account_id": pool.accounts[key_id]})
    assert result["success"] is True and result["status_code"] == 200, result
    assert result["reply"].startswith("Hello from mock us.anthropic.claude-haiku-4-5")
    assert result["usage"]["output_tokens"] > 0
    (record,) = pool.upstream.requests_for(key_id)
    assert record["json"]["anthropic_version"] == "bedrock-2023-05-31"
