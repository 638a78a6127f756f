"""Each upstream kind builds its own URL, credentials and forwarded headers."""

from __future__ import annotations

import dataclasses

import pytest

from aiproxy.gateway.errors import CLAUDE, GEMINI, OPENAI, RESPONSES
from aiproxy.gateway.pool import PoolAccount
from aiproxy.gateway.providers import RESPONSES_INCAPABLE, UpstreamRequest, provider_for

CLIENT = {
    b"content-type": b"application/json",
    b"user-agent": b"client/1",
    b"authorization": b"Bearer sk-relay-key",
    b"x-api-key": b"sk-relay-key",
    b"cookie": b"a=b",
    b"x-forwarded-for": b"203.0.113.9",
    b"anthropic-beta": b"claude-code-20250219",
    b"x-stainless-lang": b"js",
    b"originator": b"codex_exec",
    b"x-codex-turn-metadata": b"{}",
    b"x-goog-api-client": b"genai/1",
}


def _account(type_: str, family: str, base_url: str, **fields: object) -> PoolAccount:
    account = PoolAccount(
        id=1,
        name="a",
        type=type_,
        family=family,
        status="valid",
        cooldown_until=0.0,
        priority=50,
        weight=1,
        max_concurrency=0,
        base_url=base_url,
        credentials={"api_key": "up-key"},
        api_version="",
        deployment="",
        organization_id="",
        model_mapping={},
        allowed_models=None,
        proxy_url=None,
        groups=frozenset(),
    )
    return dataclasses.replace(account, **fields)


def _build(account: PoolAccount, route: str, **request: object) -> tuple[str, dict[str, str], str]:
    provider = provider_for(account, route)
    call = provider.build(account, UpstreamRequest(model="m-1", client_headers=CLIENT, **request))  # type: ignore[arg-type]
    # The client's own credentials, cookies and network headers never reach the vendor.
    assert "sk-relay-key" not in str(call.headers)
    assert not {"cookie", "x-forwarded-for"} & set(call.headers)
    assert call.headers["accept-encoding"] == "identity"
    return call.url, call.headers, provider.wire


def test_anthropic() -> None:
    account = _account("claude-official", CLAUDE, "https://api.anthropic.com/v1")
    url, headers, wire = _build(account, CLAUDE, query="beta=true")
    assert url == "https://api.anthropic.com/v1/messages?beta=true" and wire == CLAUDE
    assert headers["x-api-key"] == "up-key" and headers["anthropic-version"] == "2023-06-01"
    assert headers["anthropic-beta"] == "claude-code-20250219" and headers["x-stainless-lang"] == "js"
    assert "originator" not in headers and "x-goog-api-client" not in headers
    url, _, _ = _build(account, CLAUDE, count_tokens=True)
    assert url == "https://api.anthropic.com/v1/messages/count_tokens"
    oauth = dataclasses.replace(account, credentials={"access_token": "tok"})
    assert _build(oauth, OPENAI)[1]["authorization"] == "Bearer tok"  # converted chat: same vendor


def test_openai_chat_and_azure() -> None:
    url, headers, wire = _build(
        _account("openai", OPENAI, "https://api.openai.com", organization_id="org"), OPENAI
    )
    assert url == "https://api.openai.com/v1/chat/completions" and wire == OPENAI
    assert headers["authorization"] == "Bearer up-key" and headers["openai-organization"] == "org"
    azure = _account(
        "azure-openai", OPENAI, "https://x.openai.azure.com", deployment="dep", api_version="2025-01"
    )
    url, headers, wire = _build(azure, OPENAI)
    assert url == "https://x.openai.azure.com/openai/deployments/dep/chat/completions?api-version=2025-01"
    assert headers["api-key"] == "up-key" and "authorization" not in headers
    assert "azure-openai" in RESPONSES_INCAPABLE


@pytest.mark.parametrize(
    ("type_", "family", "base", "expected"),
    [
        (
            "openai-responses",
            RESPONSES,
            "https://chatgpt.com/backend-api/codex",
            "https://chatgpt.com/backend-api/codex/responses",
        ),
        ("openai", OPENAI, "https://api.openai.com/v1", "https://api.openai.com/v1/responses"),
    ],
)
def test_responses(type_: str, family: str, base: str, expected: str) -> None:
    url, headers, wire = _build(_account(type_, family, base, organization_id="acct"), RESPONSES)
    assert url == expected and wire == RESPONSES
    assert headers["originator"] == "codex_exec" and "x-codex-turn-metadata" in headers
    if "chatgpt.com" in base:
        assert headers["chatgpt-account-id"] == "acct" and headers["openai-beta"] == "responses=experimental"


def test_gemini() -> None:
    account = _account("gemini", GEMINI, "https://generativelanguage.googleapis.com/v1beta")
    url, headers, wire = _build(account, GEMINI, gemini_action="streamGenerateContent", query="alt=sse")
    expected = "https://generativelanguage.googleapis.com/v1beta/models/m-1:streamGenerateContent?alt=sse"
    assert url == expected and wire == GEMINI
    assert headers["x-goog-api-key"] == "up-key" and headers["x-goog-api-client"] == "genai/1"
    assert "x-stainless-lang" not in headers and "anthropic-beta" not in headers


def test_probe_bodies_parse_their_own_replies() -> None:
    claude = provider_for(_account("claude-console", CLAUDE, "https://x"), CLAUDE)
    assert b'"max_tokens":64' in claude.probe_body("m", "hi")
    assert claude.reply_text({"content": [{"type": "text", "text": "ok"}]}) == "ok"
    gemini = provider_for(_account("gemini", GEMINI, "https://x"), GEMINI)
    assert gemini.reply_text({"candidates": [{"content": {"parts": [{"text": "ok"}]}}]}) == "ok"
    responses = provider_for(_account("openai-responses", RESPONSES, "https://x"), RESPONSES)
    reply = {"output": [{"type": "message", "content": [{"text": "ok"}]}]}
    assert responses.reply_text(reply) == "ok" and responses.default_probe_model == "gpt-5-codex"
    chat = provider_for(_account("openai", OPENAI, "https://x"), OPENAI)
    assert chat.reply_text({"choices": [{"message": {"content": "ok"}}]}) == "ok"
    assert chat.reply_text({"unexpected": 1}) == ""
