"""Packages on the request path: which one pays, what each one allows, and exact quotas.

Every test drives real SDK clients through the relay and checks the package's figures against
the request logs: each request is one row, and a package's used tokens are exactly what its
served requests used.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import openai
import pytest

from .conftest import Pool

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
CLAUDE_MODEL = "claude-opus-4-8"
EXHAUSTED = "套餐额度已用完"


def claude_client(pool: Pool, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"{pool.relay.base_url}/claude", api_key=key or pool.key, max_retries=0
    )


def openai_client(pool: Pool, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{pool.relay.base_url}/openai/v1", api_key=key or pool.key, max_retries=0)


def ask_claude(pool: Pool, key: str | None = None) -> anthropic.types.Message:
    return claude_client(pool, key).messages.create(model=CLAUDE_MODEL, max_tokens=64, messages=MESSAGES)


def claude_refusal(pool: Pool, status: int, message: str, key: str | None = None) -> None:
    with pytest.raises(anthropic.APIStatusError) as refused:
        ask_claude(pool, key)
    assert refused.value.status_code == status
    assert refused.value.body["error"]["message"] == message  # type: ignore[index]


def new_package(pool: Pool, **fields: Any) -> int:
    body = {"name": f"p-{uuid.uuid4().hex[:8]}", "price": 1, "token_quota": 0, "valid_days": 30, **fields}
    return int(pool.admin.ok("POST", "/api/admin/packages", json=body)["id"])


def assign(pool: Pool, package_id: int, **fields: Any) -> int:
    path = f"/api/admin/user-packages/user/{pool.user_id}"
    held_id = int(pool.admin.ok("POST", path, json={"package_id": package_id, **fields})["id"])
    pool.settle()  # callers are cached: other instances see the change within half a second
    return held_id


def held(pool: Pool, user_package_id: int) -> dict[str, Any]:
    return next(p for p in pool.user.ok("GET", "/api/my-packages") if p["id"] == user_package_id)


def wait_for_usage(pool: Pool, user_package_id: int, tokens: int, timeout: float = 10.0) -> dict[str, Any]:
    """The user package once the recorder has written `tokens` used tokens to it."""
    deadline = time.monotonic() + timeout
    while True:
        view = held(pool, user_package_id)
        if view["used_tokens"] >= tokens:
            return view
        assert time.monotonic() < deadline, view
        time.sleep(0.05)


def tokens_of(message: anthropic.types.Message) -> int:
    usage = message.usage
    return (
        usage.input_tokens
        + usage.output_tokens
        + (usage.cache_creation_input_tokens or 0)
        + (usage.cache_read_input_tokens or 0)
    )


@pytest.fixture
def require_package(pool: Pool) -> Iterator[None]:
    pool.admin.ok("PUT", "/api/admin/configs", json={"key": "require_package", "value": True})
    pool.settle()
    try:
        yield
    finally:
        pool.admin.ok("PUT", "/api/admin/configs", json={"key": "require_package", "value": False})
        pool.settle()


def test_package_used_up_mid_stream(pool: Pool, require_package: None) -> None:
    """The stream admitted with room left completes and is billed in full; while it holds the last
    of the quota, and once it has used it, the next request is refused (packages required: else a
    user whose packages are all used up is served like one without any, see the next test)."""
    credential = pool.add_account()
    package = new_package(pool, token_quota=30)
    mine = assign(pool, package)
    pool.upstream.behave(credential, "slow", delay_ms=60, words=40, count=1)
    streamed: list[anthropic.types.Message] = []

    def stream() -> None:
        client = claude_client(pool)
        with client.messages.stream(model=CLAUDE_MODEL, max_tokens=64, messages=MESSAGES) as answer:
            for _ in answer.text_stream:
                pass
            streamed.append(answer.get_final_message())

    worker = threading.Thread(target=stream)
    worker.start()
    time.sleep(0.8)
    assert worker.is_alive()
    claude_refusal(pool, 429, EXHAUSTED)  # the stream holds what is left
    worker.join()
    assert len(streamed) == 1 and streamed[0].usage.output_tokens == 40
    used = tokens_of(streamed[0])
    assert used > 30  # over the quota: billed anyway
    claude_refusal(pool, 429, EXHAUSTED)

    view = wait_for_usage(pool, mine, used)
    assert view["used_tokens"] == used and view["remaining_tokens"] == 0 and view["status"] == "exhausted"
    logs = pool.logs(expect=3)
    assert len(logs) == 3
    assert sorted(log["status"] for log in logs) == ["rejected", "rejected", "success"]
    served = next(log for log in logs if log["status"] == "success")
    assert served["total_tokens"] == used and served["cost"] > 0
    assert all(log["error_message"] == EXHAUSTED for log in logs if log["status"] == "rejected")
    key = pool.admin.ok("GET", f"/api/admin/api-keys/{pool.key_id}")
    assert key["request_count"] == 1 and key["used_tokens"] == used  # what was served, like the usage views


def test_earliest_expiring_package_pays_first(pool: Pool) -> None:
    pool.add_account()
    later = assign(pool, new_package(pool, token_quota=100_000), valid_days=30)
    sooner = assign(pool, new_package(pool, token_quota=5), valid_days=5)
    first = ask_claude(pool)  # the sooner one pays, and is used up by it (9 tokens)
    spent = tokens_of(first)
    wait_for_usage(pool, sooner, spent)
    second = ask_claude(pool)  # the sooner one is spent: the later one pays
    view = wait_for_usage(pool, later, tokens_of(second))
    assert view["used_tokens"] == tokens_of(second)
    assert held(pool, sooner)["used_tokens"] == spent and held(pool, sooner)["status"] == "exhausted"


def test_used_up_packages_leave_a_user_without_package_served_when_none_is_required(pool: Pool) -> None:
    pool.add_account()
    mine = assign(pool, new_package(pool, token_quota=5))
    spent = tokens_of(ask_claude(pool))  # the package pays, and is used up
    free = ask_claude(pool)  # served without a package: packages are not required
    view = wait_for_usage(pool, mine, spent)
    assert view["used_tokens"] == spent and view["status"] == "exhausted"
    served = [log for log in pool.logs(expect=2) if log["status"] == "success"]
    assert len(served) == 2 and sum(log["total_tokens"] for log in served) == spent + tokens_of(free)


def test_key_bound_to_a_package_uses_only_that_one(pool: Pool) -> None:
    pool.add_account()
    sooner = assign(pool, new_package(pool, token_quota=100_000), valid_days=5)
    bound = assign(pool, new_package(pool, token_quota=100_000), valid_days=30)
    key, _ = pool.new_key(user_package_id=bound)
    answer = ask_claude(pool, key)
    view = wait_for_usage(pool, bound, tokens_of(answer))
    assert view["used_tokens"] == tokens_of(answer)
    assert held(pool, sooner)["used_tokens"] == 0
    # The bound package switched off: the key stops, although the user holds another package.
    pool.admin.ok("PUT", f"/api/admin/user-packages/{bound}", json={"status": "disabled"})
    pool.settle()
    claude_refusal(pool, 403, "套餐已停用", key)
    assert ask_claude(pool).content  # the user's unbound key still uses the other one


def test_expired_package_and_require_package(pool: Pool, require_package: None) -> None:
    pool.add_account("openai")
    client = openai_client(pool)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert refused.value.body["message"] == "没有可用的套餐，请先购买或联系管理员分配套餐"  # type: ignore[index]

    started = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    expired = assign(pool, new_package(pool, token_quota=1000), valid_days=2, start_time=started)
    with pytest.raises(openai.PermissionDeniedError):  # an expired package is no package
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert held(pool, expired)["status"] == "expired"
    key, _ = pool.new_key(user_package_id=expired)
    with pytest.raises(openai.PermissionDeniedError) as bound_refusal:
        openai_client(pool, key).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert bound_refusal.value.body["message"] == "套餐已过期"  # type: ignore[index]

    live = assign(pool, new_package(pool, token_quota=1000))
    answer = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert answer.usage is not None
    assert wait_for_usage(pool, live, answer.usage.total_tokens)["used_tokens"] == answer.usage.total_tokens
    statuses = [log["status"] for log in pool.logs(expect=3)]
    assert sorted(statuses) == ["rejected", "rejected", "success"]


def test_daily_limit_counts_from_activation_time(pool: Pool) -> None:
    pool.add_account()
    # Activated a day ago less four seconds: its current day ends in four seconds, not at midnight.
    started = datetime.now(UTC) - timedelta(days=1) + timedelta(seconds=4)
    mine = assign(pool, new_package(pool, daily_limit=2), start_time=started.isoformat())
    ask_claude(pool)
    ask_claude(pool)
    claude_refusal(pool, 429, "已达到套餐每日请求上限")
    time.sleep(max(0.0, (started + timedelta(days=1) - datetime.now(UTC)).total_seconds()) + 0.3)
    day_two = ask_claude(pool)  # a new day of this package
    assert day_two.content
    view = wait_for_usage(pool, mine, 1)
    assert view["token_quota"] == 0 and view["remaining_tokens"] is None  # tokens unlimited


def test_package_rules_bind_its_holder(pool: Pool) -> None:
    pool.add_account()
    pool.add_account("openai")
    assign(pool, new_package(pool, allowed_platforms="claude-official", rate_limit=2))
    with pytest.raises(openai.PermissionDeniedError) as refused:
        openai_client(pool).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert refused.value.body["message"] == "套餐无权访问此平台"  # type: ignore[index]
    ask_claude(pool)
    ask_claude(pool)
    with pytest.raises(anthropic.RateLimitError) as limited:
        ask_claude(pool)
    assert limited.value.body["error"]["message"] == "套餐请求过于频繁，请稍后再试"  # type: ignore[index]
    assert 1 <= int(limited.value.response.headers["retry-after"]) <= 60


def test_dollar_quota(pool: Pool, require_package: None) -> None:
    pool.add_account()
    mine = assign(pool, new_package(pool, cost_quota=0.000001))
    answer = ask_claude(pool)  # room left when it started: served and billed
    claude_refusal(pool, 429, EXHAUSTED)
    view = wait_for_usage(pool, mine, tokens_of(answer))
    assert view["used_cost"] > 0.000001 and view["remaining_cost"] == 0 and view["status"] == "exhausted"
    served = next(log for log in pool.logs(expect=2) if log["status"] == "success")
    assert served["cost"] == pytest.approx(view["used_cost"])
