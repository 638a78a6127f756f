"""Account kinds and paths beyond the common ones: Azure, count_tokens, outbound proxies, probes."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from .conftest import Pool
from .fake_proxies import TunnelProxy
from .helpers import assert_billed, model_prices


def test_azure_account_serves_openai_chat(pool: Pool) -> None:
    credential = pool.add_account("azure-openai", deployment="prod-gpt4o", api_version="2024-10-21")
    client = openai.OpenAI(base_url=f"{pool.relay.base_url}/openai/v1", api_key=pool.key, max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi azure"}])
    assert reply.choices[0].message.content.startswith("Hello from mock")
    (record,) = pool.upstream.requests_for(credential)
    assert record["path"] == "/openai/deployments/prod-gpt4o/chat/completions"
    assert record["headers"]["api-key"] == credential and "authorization" not in record["headers"]
    (log,) = pool.logs(expect=1)
    assert_billed(log, record["tokens"], model_prices(pool.admin, "gpt-4o"))


def test_claude_ccr_account_serves_claude_clients(pool: Pool) -> None:
    """A Claude Code Router (or any Anthropic-compatible router) behind its own base URL and key."""
    credential = pool.add_account("claude-ccr")
    client = anthropic.Anthropic(base_url=f"{pool.relay.base_url}/claude", api_key=pool.key, max_retries=0)
    reply = client.messages.create(
        model="claude-opus-4-8", max_tokens=10, messages=[{"role": "user", "content": "hi router"}]
    )
    assert reply.content[0].text.startswith("Hello from mock")
    (record,) = pool.upstream.requests_for(credential)
    assert record["path"] == "/v1/messages" and record["headers"]["x-api-key"] == credential
    (log,) = pool.logs(expect=1)
    assert log["account_id"] == pool.accounts[credential] and log["platform"] == "claude-ccr"
    assert_billed(log, record["tokens"], model_prices(pool.admin, "claude-opus-4-8"))


def test_count_tokens_is_relayed_free(pool: Pool) -> None:
    credential = pool.add_account()
    client = anthropic.Anthropic(base_url=f"{pool.relay.base_url}/claude", api_key=pool.key, max_retries=0)
    counted = client.messages.count_tokens(
        model="claude-opus-4-8", messages=[{"role": "user", "content": "x" * 40}]
    )
    assert counted.input_tokens == 10
    assert [r["path"] for r in pool.upstream.requests_for(credential)] == ["/v1/messages/count_tokens"]
    client.messages.create(
        model="claude-opus-4-8", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    logs = pool.logs(expect=2)
    # Counting is logged like every request, but neither billed nor counted as usage.
    assert [log["path"] for log in logs] == ["/claude/v1/messages", "/claude/v1/messages/count_tokens"]
    counting = logs[1]
    assert counting["status"] == "success" and counting["cost"] == 0 and counting["total_tokens"] == 0
    assert logs[0]["cost"] > 0
    usage = pool.user.ok("GET", "/api/usage/summary")
    assert usage["request_count"] == 1, usage


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_account_traffic_goes_through_its_proxy(pool: Pool, kind: str) -> None:
    with TunnelProxy(kind) as proxy:
        config = pool.admin.ok(
            "POST",
            "/api/admin/proxy-configs",
            json={
                "name": f"p-{kind}-{proxy.port}",
                "type": kind,
                "host": "127.0.0.1",
                "port": proxy.port,
                "username": "relay",
                "password": "tunnel-secret",
            },
        )
        credential = pool.add_account(proxy_config_id=config["id"])
        client = anthropic.Anthropic(
            base_url=f"{pool.relay.base_url}/claude", api_key=pool.key, max_retries=0
        )
        for _ in range(2):
            reply = client.messages.create(
                model="claude-opus-4-8", max_tokens=10, messages=[{"role": "user", "content": "via proxy"}]
            )
            assert reply.content[0].text.startswith("Hello from mock")
        assert proxy.seen.connections >= 1
        assert proxy.seen.credentials and set(proxy.seen.credentials) == {"relay:tunnel-secret"}
        upstream_port = pool.upstream.base_url.rsplit(":", 1)[1]
        assert all(target.endswith(f":{upstream_port}") for target in proxy.seen.targets)
        assert len(pool.upstream.requests_for(credential)) == 2
        pool.admin.ok("DELETE", f"/api/admin/proxy-configs/{config['id']}")


def test_admin_probe_makes_one_real_call(pool: Pool) -> None:
    credential = pool.add_account("openai")
    account_id = pool.accounts[credential]
    result = pool.admin.ok(
        "POST", "/api/admin/proxy/test", json={"account_id": account_id, "model": "gpt-4o-mini"}
    )
    assert result["success"] is True and result["status_code"] == 200
    assert result["reply"].startswith("Hello from mock") and result["usage"]["output_tokens"] > 0
    assert len(pool.upstream.requests_for(credential)) == 1
    pool.upstream.behave(credential, "401", count=1)
    failed = pool.admin.ok("POST", "/api/admin/proxy/test", json={"account_id": account_id})
    assert failed["success"] is False and failed["status_code"] == 401
    assert pool.account(credential)["status"] == "valid"  # a probe never changes the account
    assert pool.admin.post("/api/admin/proxy/test", json={"account_id": 99999999})[0] == 404
    assert pool.user.post("/api/admin/proxy/test", json={"account_id": account_id})[0] == 403


def test_responses_through_a_plain_openai_account_is_billed(pool: Pool) -> None:
    credential = pool.add_account("openai")
    pool.add_account("azure-openai")  # speaks Chat Completions only: never picked for Responses
    client = openai.OpenAI(base_url=f"{pool.relay.base_url}/openai/v1", api_key=pool.key, max_retries=0)
    reply = client.responses.create(model="gpt-5-codex", input="hello")
    with client.responses.stream(model="gpt-5-codex", input="hello") as stream:
        final = stream.get_final_response()
    assert reply.output_text.startswith("Hello from mock") and final.usage.output_tokens > 0
    seen = pool.upstream.requests_for(credential)
    assert [r["path"] for r in seen] == ["/v1/responses", "/v1/responses"]
    prices = model_prices(pool.admin, "gpt-5-codex")
    for log, record in zip(reversed(pool.logs(expect=2)), seen, strict=True):
        assert log["status"] == "success"
        assert_billed(log, record["tokens"], prices)


def test_gemini_count_tokens_is_free(pool: Pool) -> None:
    credential = pool.add_account("gemini")
    response = httpx.post(
        f"{pool.relay.base_url}/gemini/v1beta/models/gemini-2.5-flash:countTokens",
        json={"contents": [{"role": "user", "parts": [{"text": "count me please"}]}]},
        headers={"x-goog-api-key": pool.key},
    )
    assert response.status_code == 200 and response.json()["totalTokens"] > 0
    assert len(pool.upstream.requests_for(credential)) == 1
    # Logged once like every request, never billed. (This used to assert no row at all, right after
    # the call: it passed only while the recorder had not flushed yet.)
    (log,) = pool.logs(expect=1)
    assert log["status"] == "success" and log["cost"] == 0


def test_unreachable_upstream_gives_502(pool: Pool) -> None:
    from ..support import free_port

    pool.add_account(base_url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    response = httpx.post(
        f"{pool.relay.base_url}/claude/v1/messages",
        headers={"x-api-key": pool.key},
        json={"model": "claude-opus-4-8", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 502
    assert response.json() == {"type": "error", "error": {"type": "api_error", "message": "上游服务请求失败"}}


def test_preflight_and_unknown_paths(pool: Pool) -> None:
    for path in ("/", "/claude", "/claude/", "/gemini/"):
        assert httpx.head(f"{pool.relay.base_url}{path}").status_code == 200
    response = httpx.post(
        f"{pool.relay.base_url}/claude/v1/unknown", headers={"x-api-key": pool.key}, json={}
    )
    assert response.status_code == 404 and response.json()["type"] == "error"
    response = httpx.post(
        f"{pool.relay.base_url}/gemini/v9/whatever", headers={"x-goog-api-key": pool.key}, json={}
    )
    assert response.status_code == 404 and response.json()["error"]["status"] == "NOT_FOUND"
