"""Account kinds and paths beyond the common ones: Azure, count_tokens, outbound proxies, probes."""

from __future__ import annotations

import anthropic
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
    logs = pool.logs(expect=1)
    assert [log["path"] for log in logs] == ["/claude/v1/messages"]  # counting is neither logged nor billed


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
