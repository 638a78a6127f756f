"""What the relay records about requests: user-facing usage views, log capture, group routing."""

from __future__ import annotations

import uuid

import anthropic
import httpx

from .conftest import Pool
from .helpers import model_prices


def _claude(pool: Pool, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"{pool.relay.base_url}/claude", api_key=key or pool.key, max_retries=0
    )


def test_usage_views_match_the_request_logs(pool: Pool) -> None:
    pool.add_account()
    client = _claude(pool)
    for words in ("one", "two words", "three more words"):
        client.messages.create(
            model="claude-opus-4-8", max_tokens=30, messages=[{"role": "user", "content": words}]
        )
    logs = pool.logs(expect=3)
    tokens = sum(log["total_tokens"] for log in logs)
    cost = sum(log["cost"] for log in logs)

    summary = pool.user.ok("GET", "/api/usage/summary")
    assert summary["request_count"] == 3 and summary["total_tokens"] == tokens
    assert abs(summary["total_cost"] - cost) < 1e-9
    assert summary["today"]["requests"] == 3
    assert pool.user.ok("GET", "/api/usage/db/summary")["total_tokens"] == tokens
    (model_row,) = pool.user.ok("GET", "/api/usage/models")
    assert model_row["model"] == "claude-opus-4-8" and model_row["request_count"] == 3
    records = pool.user.ok("GET", "/api/usage/records")
    assert records["total"] == 3 and "account_id" not in records["items"][0]
    key_usage = pool.user.ok("GET", f"/api/api-keys/{pool.key_id}/usage")
    assert key_usage["summary"]["total_tokens"] == tokens
    assert pool.admin.ok("GET", f"/api/admin/users/{pool.user_id}/usage/summary")["request_count"] == 3
    prices = model_prices(pool.admin, "claude-opus-4-8")
    assert prices["input_price"] > 0  # billed from the table, not a constant


def test_request_logs_sanitise_headers_and_capture_bodies_on_request(pool: Pool) -> None:
    pool.add_account()
    body = {
        "model": "claude-opus-4-8",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "z" * 500}],
    }
    headers = {"x-api-key": pool.key, "cookie": "session=secret-cookie", "user-agent": "probe/1.0"}
    assert (
        httpx.post(f"{pool.relay.base_url}/claude/v1/messages", json=body, headers=headers).status_code == 200
    )
    for key, value in (("capture_request_body", True), ("capture_body_max_bytes", 100)):
        pool.admin.ok("PUT", "/api/admin/configs", json={"key": key, "value": value})
    try:
        assert (
            httpx.post(f"{pool.relay.base_url}/claude/v1/messages", json=body, headers=headers).status_code
            == 200
        )
    finally:
        pool.admin.ok("PUT", "/api/admin/configs", json={"key": "capture_request_body", "value": False})
        pool.admin.ok("PUT", "/api/admin/configs", json={"key": "capture_body_max_bytes", "value": 16384})
    newest, oldest = pool.logs(expect=2)
    full_old = pool.admin.ok("GET", f"/api/admin/logs/{oldest['id']}")
    full_new = pool.admin.ok("GET", f"/api/admin/logs/{newest['id']}")
    assert full_old["request_body"] == ""
    assert len(full_new["request_body"]) == 100 and full_new["request_body"].startswith('{"model"')
    for full in (full_old, full_new):
        assert "probe/1.0" in full["request_headers"]
        assert pool.key not in full["request_headers"] and "secret-cookie" not in full["request_headers"]


def test_unbound_keys_use_the_default_group(pool: Pool) -> None:
    inside = pool.add_account()
    outside = pool.add_account(api_key=f"out-{uuid.uuid4().hex[:8]}")
    # Take the second account out of this pool's group, and make the group the default one.
    pool.admin.ok("DELETE", f"/api/admin/account-groups/{pool.group_id}/accounts/{pool.accounts[outside]}")
    pool.admin.ok("PUT", f"/api/admin/account-groups/{pool.group_id}", json={"is_default": True})
    try:
        unbound = pool.user.ok("POST", "/api/api-keys", json={"name": "unbound", "rate_limit": 0})
        pool.settle()
        client = _claude(pool, unbound["key"])
        for _ in range(8):
            client.messages.create(
                model="claude-opus-4-8", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            )
        assert len(pool.upstream.requests_for(inside)) == 8
        assert pool.upstream.requests_for(outside) == []
    finally:
        pool.admin.ok("PUT", f"/api/admin/account-groups/{pool.group_id}", json={"is_default": False})
        pool.admin.ok("DELETE", f"/api/admin/accounts/{pool.accounts[outside]}")


def test_price_rates_key_over_user_and_global_over_both(pool: Pool) -> None:
    credential = pool.add_account()
    prices = model_prices(pool.admin, "claude-opus-4-8")
    body = {"model": "claude-opus-4-8", "max_tokens": 10, "messages": [{"role": "user", "content": "rates"}]}

    def billed(key: str, key_id: int) -> tuple[float, float]:
        before = len(pool.upstream.requests_for(credential))
        assert (
            httpx.post(
                f"{pool.relay.base_url}/claude/v1/messages", json=body, headers={"x-api-key": key}
            ).status_code
            == 200
        )
        record = pool.upstream.requests_for(credential)[before]
        (log,) = [entry for entry in pool.logs(key_id, expect=1)[:1]]
        list_cost = (
            sum(
                record["tokens"][wire] * prices[price]
                for wire, price in (("input_tokens", "input_price"), ("output_tokens", "output_price"))
            )
            / 1e6
        )
        return log["cost"], list_cost

    pool.admin.ok("PUT", f"/api/admin/users/{pool.user_id}", json={"price_rate": 0.5})
    user_rate_key, user_rate_id = pool.new_key(rate_limit=0)
    cost, list_cost = billed(user_rate_key, user_rate_id)
    assert abs(cost - list_cost * 0.5) < 1e-12  # the user's rate

    key_rate_key, key_rate_id = pool.new_key(rate_limit=0)
    pool.admin.ok("PUT", f"/api/admin/api-keys/{key_rate_id}", json={"price_rate": 2.0})
    cost, list_cost = billed(key_rate_key, key_rate_id)
    assert abs(cost - list_cost * 2.0) < 1e-12  # a key rate ≠ 1 wins over the user's

    pool.admin.ok("PUT", "/api/admin/configs", json={"key": "global_price_rate", "value": 3.0})
    try:
        global_key, global_id = pool.new_key(rate_limit=0)
        cost, list_cost = billed(global_key, global_id)
        assert abs(cost - list_cost * 3.0) < 1e-12  # a global rate ≠ 1 overrides both
    finally:
        pool.admin.ok("PUT", "/api/admin/configs", json={"key": "global_price_rate", "value": 1.0})
