"""Every key and user limit, enforced before any upstream call, in each client's error shape."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from .conftest import Pool

CLAUDE_BODY = {"model": "claude-opus-4-8", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
OPENAI_BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def claude(pool: Pool, key: str, body: dict[str, object] | None = None) -> httpx.Response:
    return httpx.post(
        f"{pool.relay.base_url}/claude/v1/messages",
        json=body or CLAUDE_BODY,
        headers={"x-api-key": key},
        timeout=30,
    )


def openai_chat(pool: Pool, key: str, body: dict[str, object] | None = None) -> httpx.Response:
    return httpx.post(
        f"{pool.relay.base_url}/openai/v1/chat/completions",
        json=body or OPENAI_BODY,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def anthropic_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["message"] == message, body


def test_key_authentication_errors(pool: Pool) -> None:
    base = pool.relay.base_url
    anthropic_error(
        httpx.post(f"{base}/claude/v1/messages", json=CLAUDE_BODY),
        401,
        "缺少 API Key，请在 Authorization 或 x-api-key header 中提供",
    )
    anthropic_error(claude(pool, "sk-" + "0" * 64), 401, "无效的 API Key")
    response = openai_chat(pool, "sk-nope")
    assert response.status_code == 401 and response.json()["error"]["message"] == "无效的 API Key"
    response = httpx.post(
        f"{base}/gemini/v1beta/models/gemini-2.5-flash:generateContent",
        json={},
        headers={"x-goog-api-key": "sk-nope"},
    )
    assert response.status_code == 401 and response.json()["error"]["status"] == "UNAUTHENTICATED"

    key, key_id = pool.new_key()
    pool.user.ok("PUT", f"/api/api-keys/{key_id}/toggle")
    anthropic_error(claude(pool, key), 401, "API Key 已被禁用")


def test_expired_key_and_disabled_user(pool: Pool) -> None:
    pool.add_account()
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    key, _ = pool.new_key(expires_at=soon)
    assert claude(pool, key).status_code == 200
    time.sleep(2.2)
    anthropic_error(claude(pool, key), 401, "API Key 已过期")

    fresh, _ = pool.new_key()
    pool.admin.ok("PUT", f"/api/admin/users/{pool.user_id}", json={"status": "disabled"})
    anthropic_error(claude(pool, fresh), 401, "用户已被禁用")


def test_platform_and_model_permissions(pool: Pool) -> None:
    pool.add_account()
    pool.add_account("openai")
    claude_only, _ = pool.new_key(allowed_platforms="claude-official")
    assert claude(pool, claude_only).status_code == 200
    response = openai_chat(pool, claude_only)
    assert response.status_code == 403 and response.json()["error"]["message"] == "无权访问此平台"
    one_model, _ = pool.new_key(allowed_models="claude-haiku-4-5")
    anthropic_error(claude(pool, one_model), 403, "无权使用此模型")
    assert claude(pool, one_model, {**CLAUDE_BODY, "model": "claude-haiku-4-5"}).status_code == 200


def test_disabled_and_unknown_models(pool: Pool) -> None:
    credential = pool.add_account()
    haiku = next(
        m
        for m in pool.admin.ok("GET", "/api/admin/models?keyword=claude-haiku-4-5")["items"]
        if m["model_id"] == "claude-haiku-4-5"
    )
    pool.admin.ok("PUT", f"/api/admin/models/{haiku['id']}/toggle")
    try:
        pool.settle()
        anthropic_error(
            claude(pool, pool.key, {**CLAUDE_BODY, "model": "claude-haiku-4-5"}), 403, "模型已禁用"
        )
    finally:
        pool.admin.ok("PUT", f"/api/admin/models/{haiku['id']}/toggle")
    # A model newer than the table: served, flagged, billed at the platform's priciest known price.
    assert claude(pool, pool.key, {**CLAUDE_BODY, "model": "claude-future-9"}).status_code == 200
    (record,) = [r for r in pool.upstream.requests_for(credential) if r["json"]["model"] == "claude-future-9"]
    log, refused = pool.logs(expect=2)
    assert (refused["status"], refused["model"]) == ("rejected", "claude-haiku-4-5")
    assert "unknown_model" in log["flags"] and log["cost"] > 0
    priciest = max(
        (
            m
            for m in pool.admin.ok("GET", "/api/admin/models?platform=claude-official&page_size=100")["items"]
        ),
        key=lambda m: m["input_price"] + m["output_price"],
    )
    tokens = record["tokens"]
    expected = (
        tokens["input_tokens"] * priciest["input_price"] + tokens["output_tokens"] * priciest["output_price"]
    )
    assert abs(log["cost"] - expected / 1e6) < 1e-12


def test_rate_limit_per_minute(pool: Pool) -> None:
    pool.add_account()
    key, _ = pool.new_key(rate_limit=2)
    assert [claude(pool, key).status_code for _ in range(2)] == [200, 200]
    refused = claude(pool, key)
    anthropic_error(refused, 429, "请求过于频繁，请稍后再试")
    assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_daily_request_limit(pool: Pool) -> None:
    pool.add_account("openai")
    key, key_id = pool.new_key(daily_limit=2)
    pool.admin.ok("PUT", f"/api/admin/api-keys/{key_id}", json={"rate_limit": 0})
    assert [openai_chat(pool, key).status_code for _ in range(2)] == [200, 200]
    refused = openai_chat(pool, key)
    assert refused.status_code == 429 and refused.json()["error"]["message"] == "已达到每日请求上限"


def test_monthly_dollar_quota(pool: Pool) -> None:
    pool.add_account()
    key, key_id = pool.new_key(monthly_quota=0.000001)
    assert claude(pool, key).status_code == 200  # under quota when it started; its cost counts
    anthropic_error(claude(pool, key), 429, "已达到本月费用配额")
    refused, served = pool.logs(key_id, expect=2)
    assert served["status"] == "success" and served["cost"] > 0
    # Refusals are logged for the admin, never billed.
    assert (refused["status"], refused["status_code"], refused["cost"]) == ("rejected", 429, 0)
    assert refused["error_message"] == "已达到本月费用配额" and refused["account_id"] is None


def test_user_concurrency_and_slots_released(pool: Pool) -> None:
    credential = pool.add_account()
    pool.admin.ok("PUT", f"/api/admin/users/{pool.user_id}", json={"max_concurrency": 1})
    pool.upstream.behave(credential, "slow", delay_ms=300, count=1)
    first: list[int] = []
    body = {**CLAUDE_BODY, "stream": True}
    worker = threading.Thread(target=lambda: first.append(claude(pool, pool.key, body).status_code))
    worker.start()
    time.sleep(0.5)
    anthropic_error(claude(pool, pool.key), 429, "并发请求数超过限制")
    worker.join()
    assert first == [200]
    assert claude(pool, pool.key).status_code == 200  # the slot came back
    conc = pool.admin.ok("GET", f"/api/admin/users/{pool.user_id}/concurrency")
    assert conc["current"] == 0 and conc["max_concurrency"] == 1


@pytest.mark.parametrize("path", ["/claude/v1/nothing", "/openai/v1/embeddings"])
def test_unknown_proxy_paths(pool: Pool, path: str) -> None:
    response = httpx.post(f"{pool.relay.base_url}{path}", json={}, headers={"x-api-key": pool.key})
    assert response.status_code == 404
