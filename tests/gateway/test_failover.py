"""Failover and the account status machine, driven by real upstream errors."""

from __future__ import annotations

import time

import anthropic
import httpx
import pytest

from .conftest import Pool

MESSAGES = [{"role": "user", "content": "hello"}]
FAVOURITE = {"priority": 1000, "weight": 1000}  # drawn first (the other account has 1 × 1)
SPARE = {"priority": 1, "weight": 1}


def _claude(pool: Pool) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{pool.relay.base_url}/claude", api_key=pool.key, max_retries=0)


def test_429_switches_account_and_rests_the_first_until_reset(pool: Pool) -> None:
    first = pool.add_account(**FAVOURITE)
    second = pool.add_account(**SPARE)
    pool.upstream.behave(first, "429", count=1, retry_after=120)
    before = time.time()
    reply = _claude(pool).messages.create(model="claude-opus-4-8", max_tokens=50, messages=MESSAGES)
    assert reply.content[0].text.startswith("Hello from mock")
    assert len(pool.upstream.requests_for(first)) == 1 and len(pool.upstream.requests_for(second)) == 1

    marked = pool.account(first)
    assert marked["status"] == "rate_limited" and "429" in marked["status_reason"]
    until = marked["rate_limited_until"]
    assert until is not None
    from datetime import datetime

    rest = datetime.fromisoformat(until.replace("Z", "+00:00")).timestamp() - before
    assert 100 < rest < 200  # the upstream's reset header, not the one-hour default
    (log,) = pool.logs(expect=1)
    assert log["account_id"] == pool.accounts[second] and log["retries"] == 1

    # While it rests, the favourite is skipped without being asked.
    pool.settle()
    _claude(pool).messages.create(model="claude-opus-4-8", max_tokens=50, messages=MESSAGES)
    assert len(pool.upstream.requests_for(first)) == 1


@pytest.mark.parametrize(
    ("mode", "fields", "status"),
    [
        ("529", {}, "overloaded"),
        ("401", {}, "invalid"),
        ("403", {"body": "This account has been disabled."}, "invalid"),
        ("rejected", {}, "rate_limited"),
    ],
)
def test_error_rules_mark_the_account(pool: Pool, mode: str, fields: dict[str, object], status: str) -> None:
    first = pool.add_account(**FAVOURITE)
    pool.add_account(**SPARE)
    pool.upstream.behave(first, mode, count=1, **fields)
    _claude(pool).messages.create(model="claude-opus-4-8", max_tokens=50, messages=MESSAGES)
    assert pool.account(first)["status"] == status


def test_request_shaped_429_does_not_freeze_the_account(pool: Pool) -> None:
    only = pool.add_account()
    pool.upstream.behave(only, "429", count=1, body="Extra usage is required for long context requests.")
    with pytest.raises(anthropic.RateLimitError) as caught:
        _claude(pool).messages.create(model="claude-opus-4-8", max_tokens=50, messages=MESSAGES)
    assert "Extra usage" in str(caught.value)
    assert pool.account(only)["status"] == "valid"
    _claude(pool).messages.create(model="claude-opus-4-8", max_tokens=50, messages=MESSAGES)


def test_client_error_is_returned_not_retried(pool: Pool) -> None:
    first = pool.add_account(**FAVOURITE)
    second = pool.add_account(**SPARE)
    response = httpx.post(
        f"{pool.relay.base_url}/claude/v1/messages",
        content=b'{"model": "claude-opus-4-8"',
        headers={"x-api-key": pool.key},
    )
    assert response.status_code == 400 and response.json()["type"] == "error"
    pool.upstream.behave(first, "ok")
    assert pool.upstream.requests_for(first) == [] and pool.upstream.requests_for(second) == []


def test_all_accounts_failing_returns_the_upstream_error(pool: Pool) -> None:
    first = pool.add_account(**FAVOURITE)
    second = pool.add_account(**SPARE)
    for credential in (first, second):
        pool.upstream.behave(credential, "500", count=-1)
    with pytest.raises(anthropic.InternalServerError):
        _claude(pool).messages.create(model="claude-opus-4-8", max_tokens=50, messages=MESSAGES)
    # Both tried once; an Anthropic `api_error` body rests each for the short overload cooldown.
    assert len(pool.upstream.requests_for(first)) == 1 and len(pool.upstream.requests_for(second)) == 1
    assert pool.account(first)["status"] == "overloaded" and pool.account(second)["status"] == "overloaded"
    (log,) = pool.logs(expect=1)
    assert log["status"] == "error" and log["status_code"] == 500 and log["cost"] == 0


def test_retry_count_bounds_the_switches(pool: Pool) -> None:
    credentials = [pool.add_account() for _ in range(4)]
    for credential in credentials:
        pool.upstream.behave(credential, "529", count=-1)
    pool.admin.ok("PUT", "/api/admin/configs", json={"key": "retry_count", "value": 1})
    try:
        with pytest.raises(anthropic.APIStatusError):
            _claude(pool).messages.create(model="claude-opus-4-8", max_tokens=50, messages=MESSAGES)
    finally:
        pool.admin.ok("PUT", "/api/admin/configs", json={"key": "retry_count", "value": 5})
    asked = sum(len(pool.upstream.requests_for(c)) for c in credentials)
    assert asked == 2  # the first account and one switch
    assert sorted(pool.account(c)["status"] for c in credentials).count("overloaded") == 2


def test_no_account_gives_503_in_the_clients_shape(pool: Pool) -> None:
    response = httpx.post(
        f"{pool.relay.base_url}/openai/v1/chat/completions",
        json={"model": "gpt-4o", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {pool.key}"},
    )
    assert response.status_code == 503
    assert response.json()["error"]["message"] == "没有可用的账户"


def test_cooldown_ends_by_itself(pool: Pool) -> None:
    only = pool.add_account()
    pool.upstream.behave(only, "429", count=1, retry_after=1)
    with pytest.raises(anthropic.RateLimitError):
        _claude(pool).messages.create(model="claude-opus-4-8", max_tokens=50, messages=MESSAGES)
    assert pool.account(only)["status"] == "rate_limited"
    time.sleep(1.3)
    pool.settle()
    reply = _claude(pool).messages.create(model="claude-opus-4-8", max_tokens=50, messages=MESSAGES)
    assert reply.content[0].text.startswith("Hello from mock")
